//! SIP over TCP and TLS: an accept loop with a bound on connections, and per connection a read
//! loop that frames messages ([`super::framing`]), answers keepalives, and closes idle,
//! oversized or slow connections. Messages on one connection are handled in order.

use super::framing::{next_frame, Frame};
use crate::message::MAX_MESSAGE_SIZE;
use crate::metrics::Metrics;
use crate::proxy::{FlowGuard, StreamReader};
use crate::service::Service;
use bytes::{Bytes, BytesMut};
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;
use switchboard_crds::common::Transport;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_rustls::TlsAcceptor;

/// Limits on stream connections.
#[derive(Clone, Copy, Debug)]
pub struct StreamLimits {
    /// A connection with no traffic for this long is closed (keepalives count as traffic).
    pub idle_timeout: Duration,
    /// A message begun must be complete within this (slow senders are cut off).
    pub message_timeout: Duration,
    /// The TLS handshake must be done within this.
    pub handshake_timeout: Duration,
}

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits {
            idle_timeout: Duration::from_secs(900),
            message_timeout: Duration::from_secs(32),
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// Accepts connections until shutdown. `permits` bounds the open connections across all
/// listeners; a connection over the bound is closed at once.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    service: Arc<Service>,
    metrics: Arc<Metrics>,
    permits: Arc<Semaphore>,
    limits: StreamLimits,
    mut shutdown: watch::Receiver<bool>,
) {
    let transport = if tls.is_some() {
        Transport::Tls
    } else {
        Transport::Tcp
    };
    loop {
        let accepted = tokio::select! {
            biased;
            _ = super::shutdown_requested(&mut shutdown) => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            metrics.connections_refused.inc();
            tracing::warn!(%peer, "connection limit reached; closing");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = service.clone();
        let metrics = metrics.clone();
        let shutdown = shutdown.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let gauge = metrics
                .connections
                .with_label_values(&[transport.as_sip_param()]);
            gauge.inc();
            match tls {
                None => connection(stream, peer, transport, &service, limits, shutdown).await,
                Some(acceptor) => {
                    match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(tls_stream)) => {
                            connection(tls_stream, peer, transport, &service, limits, shutdown)
                                .await
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
            gauge.dec();
        });
    }
}

/// Serves one connection until the peer closes, a limit is hit, or shutdown (after the message
/// in hand is answered).
pub async fn connection<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    peer: SocketAddr,
    transport: Transport,
    service: &Service,
    limits: StreamLimits,
    shutdown: watch::Receiver<bool>,
) {
    // What the proxy sends into this connection (requests to a phone registered over it,
    // responses to a caller on it) arrives here.
    let flow = service.proxy().flows().open(peer, transport);
    let buf = BytesMut::with_capacity(8192);
    run(
        stream, peer, transport, service, limits, shutdown, flow, buf,
    )
    .await
}

/// Serves a connection we opened (to a trunk), already registered as `flow` in the proxy's
/// flow table, exactly like an accepted one; `buf` holds bytes already read from it.
#[allow(clippy::too_many_arguments)]
pub async fn outbound<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    peer: SocketAddr,
    transport: Transport,
    service: &Service,
    limits: StreamLimits,
    shutdown: watch::Receiver<bool>,
    flow: (FlowGuard, mpsc::Receiver<Bytes>),
    buf: BytesMut,
) {
    run(
        stream, peer, transport, service, limits, shutdown, flow, buf,
    )
    .await
}

/// The proxy's [`crate::proxy::StreamReader`]: serves each connection it opens with
/// [`outbound`] on its own task, while the service lives.
pub fn outbound_reader(
    service: Weak<Service>,
    metrics: Arc<Metrics>,
    limits: StreamLimits,
    shutdown: watch::Receiver<bool>,
) -> StreamReader {
    Arc::new(move |stream, buf, peer, transport, flow| {
        let Some(service) = service.upgrade() else {
            return;
        };
        let shutdown = shutdown.clone();
        let gauge = metrics
            .connections
            .with_label_values(&[transport.as_sip_param()]);
        tokio::spawn(async move {
            gauge.inc();
            outbound(
                stream, peer, transport, &service, limits, shutdown, flow, buf,
            )
            .await;
            gauge.dec();
        });
    })
}

#[allow(clippy::too_many_arguments)]
async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    peer: SocketAddr,
    transport: Transport,
    service: &Service,
    limits: StreamLimits,
    mut shutdown: watch::Receiver<bool>,
    (_flow, mut outgoing): (FlowGuard, mpsc::Receiver<Bytes>),
    mut buf: BytesMut,
) {
    'conn: loop {
        // Answer every whole message already buffered.
        loop {
            match next_frame(&buf, MAX_MESSAGE_SIZE) {
                Frame::Incomplete => break,
                Frame::KeepAlive { consumed, pong } => {
                    let _ = buf.split_to(consumed);
                    if pong && stream.write_all(b"\r\n").await.is_err() {
                        break 'conn;
                    }
                }
                Frame::Message { len } => {
                    let message = buf.split_to(len);
                    if let Some(out) = service.handle(&message, peer, transport).await {
                        if stream.write_all(&out.data).await.is_err() {
                            break 'conn;
                        }
                    }
                }
                Frame::Error(e) => {
                    tracing::debug!(%peer, error = ?e, "unframeable stream; closing");
                    break 'conn;
                }
            }
        }
        if *shutdown.borrow() {
            break;
        }
        let wait = if buf.is_empty() {
            limits.idle_timeout
        } else {
            limits.message_timeout
        };
        buf.reserve(4096);
        let read = tokio::select! {
            biased;
            _ = super::shutdown_requested(&mut shutdown), if buf.is_empty() => break,
            Some(data) = outgoing.recv() => {
                if stream.write_all(&data).await.is_err() {
                    break;
                }
                continue;
            }
            r = tokio::time::timeout(wait, stream.read_buf(&mut buf)) => r,
        };
        match read {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(_)) => {}
            Err(_) => {
                tracing::debug!(%peer, "connection timed out");
                break;
            }
        }
    }
    let _ = stream.shutdown().await;
}
