//! SIP over UDP: several receive tasks share one socket (the kernel hands each datagram to one
//! of them), each answering on the same socket.
//!
//! The loop reads datagrams as long as there are any (`try_recv_from`) and only then waits for
//! the socket to become readable (or for shutdown): under load a datagram costs one `recvfrom`
//! and one `sendto`, with no future built per message for the wait, and shutdown is noticed
//! between two messages.

use crate::service::Service;
use std::io::ErrorKind;
use std::sync::Arc;
use switchboard_crds::common::Transport;
use tokio::net::UdpSocket;
use tokio::sync::watch;

/// Receives and answers on `socket` until shutdown; the message in hand is finished first.
pub async fn serve(
    socket: Arc<UdpSocket>,
    service: Arc<Service>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 65_536];
    loop {
        if *shutdown.borrow() {
            break;
        }
        match socket.try_recv_from(&mut buf) {
            Ok((n, source)) => {
                if let Some(out) = service.handle(&buf[..n], source, Transport::Udp).await {
                    // The send buffer is large: waiting for it is the exception.
                    let sent = match socket.try_send_to(&out.data, out.target) {
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            socket.send_to(&out.data, out.target).await
                        }
                        other => other,
                    };
                    if let Err(e) = sent {
                        tracing::debug!(target = %out.target, error = %e, "UDP send failed");
                    }
                }
            }
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
