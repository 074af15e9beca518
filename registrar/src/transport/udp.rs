//! SIP over UDP: one receive task per socket, answering on it. An address has several sockets
//! (`SO_REUSEPORT`, see [`super::bind_udp`]): the kernel hands each datagram to one of them by
//! its source, so no two tasks wake for one datagram (tasks sharing one socket all woke for
//! each, and all but one found it empty: 12-15 % more CPU per registration).
//!
//! The loop reads datagrams as long as there are any (`try_recv_from`) and only then waits for
//! the socket to become readable (or for shutdown): under load a datagram costs one `recvfrom`
//! and one `sendto`, with no future built per message for the wait, and shutdown is noticed
//! between two messages.
//!
//! With the store in memory a message is handled inline: it never waits. With Redis a REGISTER
//! waits two round trips, so each message is handled in a task of its own, at most
//! [`Inflight`] at once per address (then the loop waits for one to finish, and the kernel's
//! buffer holds the rest).

use crate::service::Service;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use switchboard_crds::common::Transport;
use tokio::net::UdpSocket;
use tokio::sync::{watch, Semaphore};

/// Messages of one socket handled concurrently, each in a task of its own (see the module
/// doc); `None` handles each inline.
pub type Inflight = Option<Arc<Semaphore>>;

/// Receives and answers on `socket` until shutdown; the message in hand is finished first.
pub async fn serve(
    socket: Arc<UdpSocket>,
    service: Arc<Service>,
    inflight: Inflight,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 65_536];
    loop {
        if *shutdown.borrow() {
            break;
        }
        match socket.try_recv_from(&mut buf) {
            Ok((n, source)) => match &inflight {
                None => answer(&socket, &service, &buf[..n], source).await,
                Some(limit) => {
                    let Ok(permit) = limit.clone().acquire_owned().await else {
                        break;
                    };
                    let (socket, service) = (socket.clone(), service.clone());
                    let data = buf[..n].to_vec();
                    tokio::spawn(async move {
                        answer(&socket, &service, &data, source).await;
                        drop(permit);
                    });
                }
            },
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                tokio::select! {
                    biased;
                    _ = super::shutdown_requested(&mut shutdown) => break,
                    r = socket.readable() => {
                        if let Err(e) = r {
                            tracing::debug!(error = %e, "UDP readiness error");
                        }
                    }
                }
            }
            // ICMP errors from earlier sends surface here on Linux; nothing to do but go on.
            Err(e) => tracing::debug!(error = %e, "UDP receive error"),
        }
    }
}

async fn answer(socket: &UdpSocket, service: &Service, data: &[u8], source: SocketAddr) {
    let Some(out) = service.handle(data, source, Transport::Udp).await else {
        return;
    };
    // The send buffer is large: waiting for it is the exception.
    let sent = match socket.try_send_to(&out.data, out.target) {
        Err(e) if e.kind() == ErrorKind::WouldBlock => socket.send_to(&out.data, out.target).await,
        other => other,
    };
    if let Err(e) = sent {
        tracing::debug!(target = %out.target, error = %e, "UDP send failed");
    }
}
