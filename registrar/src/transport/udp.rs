//! SIP over UDP: several receive tasks share one socket (the kernel hands each datagram to one
//! of them), each answering on the same socket.

use crate::service::Service;
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
        let received = tokio::select! {
            biased;
            _ = super::shutdown_requested(&mut shutdown) => break,
            r = socket.recv_from(&mut buf) => r,
        };
        match received {
            Ok((n, source)) => {
                if let Some(out) = service.handle(&buf[..n], source, Transport::Udp).await {
                    if let Err(e) = socket.send_to(&out.data, out.target).await {
                        tracing::debug!(target = %out.target, error = %e, "UDP send failed");
                    }
                }
            }
            // ICMP errors from earlier sends surface here on Linux; nothing to do but go on.
            Err(e) => tracing::debug!(error = %e, "UDP receive error"),
        }
    }
}
