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
//! waits for its round trip, so up to [`InFlight`] messages of the socket are handled at once,
//! all polled by the receiving task (beyond that the loop stops reading, and the kernel's
//! buffer holds the rest). A task per message, as before, cost a task allocation and a
//! hand-over to another worker thread per message; within one task, the messages read in one
//! go also send their commands before the Redis connection's task runs, which then writes them
//! with one `writev` (in 5 s at 5 000 registrations/s: 3 654 `writev` instead of 18 605, and a
//! quarter of the `futex` calls).

use crate::service::Service;
use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use switchboard_crds::common::Transport;
use tokio::net::UdpSocket;
use tokio::sync::watch;

/// Messages of one socket handled at once (see the module doc); 1 handles each inline.
pub type InFlight = usize;

/// Receives and answers on `socket` until shutdown; the messages in hand are finished first.
pub async fn serve(
    socket: Arc<UdpSocket>,
    service: Arc<Service>,
    in_flight: InFlight,
    shutdown: watch::Receiver<bool>,
) {
    if in_flight > 1 {
        serve_concurrently(&socket, &service, in_flight, shutdown).await;
    } else {
        serve_inline(&socket, &service, shutdown).await;
    }
}

/// One message at a time, each answered before the next is read.
async fn serve_inline(socket: &UdpSocket, service: &Service, mut shutdown: watch::Receiver<bool>) {
    let mut buf = vec![0u8; 65_536];
    loop {
        if *shutdown.borrow() {
            break;
        }
        match socket.try_recv_from(&mut buf) {
            Ok((n, source)) => answer(socket, service, &buf[..n], source).await,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if !wait_readable(socket, &mut shutdown).await {
                    break;
                }
            }
            Err(e) => receive_error(&e),
        }
    }
}

/// Up to `limit` messages at once, each polled by this task.
async fn serve_concurrently(
    socket: &UdpSocket,
    service: &Service,
    limit: usize,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 65_536];
    let mut handling = FuturesUnordered::new();
    while !*shutdown.borrow() {
        // Take what has arrived while there is room (no system call once the socket is known
        // to be drained: tokio keeps its readiness).
        while handling.len() < limit {
            match socket.try_recv_from(&mut buf) {
                Ok((n, source)) => {
                    let data = buf[..n].to_vec();
                    handling.push(async move { answer(socket, service, &data, source).await });
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => receive_error(&e),
            }
        }
        tokio::select! {
            biased;
            _ = super::shutdown_requested(&mut shutdown) => break,
            Some(()) = handling.next(), if !handling.is_empty() => {
                // The others answered by now too, before reading again.
                while let Some(Some(())) = handling.next().now_or_never() {}
            }
            r = socket.readable(), if handling.len() < limit => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "UDP readiness error");
                }
            }
        }
    }
    while handling.next().await.is_some() {}
}

/// Waits until `socket` is readable; `false` once shutdown is requested.
async fn wait_readable(socket: &UdpSocket, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        biased;
        _ = super::shutdown_requested(shutdown) => false,
        r = socket.readable() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "UDP readiness error");
            }
            true
        }
    }
}

/// ICMP errors from earlier sends surface on receive on Linux; nothing to do but go on.
fn receive_error(e: &std::io::Error) {
    tracing::debug!(error = %e, "UDP receive error");
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
