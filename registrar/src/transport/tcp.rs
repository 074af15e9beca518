//! SIP over TCP and TLS: an accept loop with a bound on connections, in total and per source
//! address ([`super::per_source`]), and per connection a read loop that frames messages
//! ([`crate::message::framing`]), answers keepalives, and closes idle, oversized or slow connections.
//! A connection accepted here must deliver its first whole message soon after it opens (after
//! its TLS handshake): until then its silence is not a phone resting between refreshes but a
//! socket held. Messages on one connection are handled in order.

use super::per_source::{PerSource, Slot};
use crate::message::framing::{next_frame, Frame};
use crate::message::MAX_MESSAGE_SIZE;
use crate::metrics::Metrics;
use crate::proxy::{FlowGuard, StreamReader};
use crate::service::Service;
use bytes::{Bytes, BytesMut};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use switchboard_crds::common::Transport;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
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
    /// An accepted connection's first whole message must arrive within this (after the TLS
    /// handshake); connections the proxy opens are exempt.
    pub first_message_timeout: Duration,
}

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits {
            idle_timeout: Duration::from_secs(900),
            message_timeout: Duration::from_secs(32),
            handshake_timeout: Duration::from_secs(10),
            first_message_timeout: Duration::from_secs(10),
        }
    }
}

/// What bounds the connections accepted: a total across listeners (each open connection holds
/// a permit) and a count per source address.
#[derive(Clone)]
pub struct ConnectionLimits {
    /// Permits, one per open connection.
    pub total: Arc<Semaphore>,
    /// Open connections per source address.
    pub per_source: Arc<PerSource>,
}

/// Accepts connections until shutdown. A connection over either bound of `admit` is closed at
/// once.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    service: Arc<Service>,
    metrics: Arc<Metrics>,
    admit: ConnectionLimits,
    limits: StreamLimits,
    shutdown: watch::Receiver<bool>,
) {
    let transport = if tls.is_some() {
        Transport::Tls
    } else {
        Transport::Tcp
    };
    let (m, down) = (metrics.clone(), shutdown.clone());
    let serve_one = move |stream: TcpStream, peer: SocketAddr| {
        let (service, metrics, shutdown, tls) =
            (service.clone(), m.clone(), down.clone(), tls.clone());
        async move {
            match tls {
                None => connection(stream, peer, transport, &service, limits, shutdown).await,
                Some(acceptor) => {
                    if let Some(s) = tls_handshake(&acceptor, stream, peer, limits, &metrics).await
                    {
                        connection(s, peer, transport, &service, limits, shutdown).await
                    }
                }
            }
        }
    };
    accept_loop(listener, transport, metrics, admit, shutdown, serve_one).await
}

/// Accepts connections until shutdown and serves each admitted one with `serve_one` on a task
/// of its own, counted in `sip_connections{transport}` while it lasts (every stream transport
/// shares this: the bounds of `admit` hold across TCP, TLS, WS and WSS).
pub(super) async fn accept_loop<F, Fut>(
    listener: TcpListener,
    transport: Transport,
    metrics: Arc<Metrics>,
    admit: ConnectionLimits,
    mut shutdown: watch::Receiver<bool>,
    serve_one: F,
) where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
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
        let Some(held) = admitted(&admit, peer, &metrics) else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let gauge = metrics
            .connections
            .with_label_values(&[transport.as_sip_param()]);
        let serving = serve_one(stream, peer);
        tokio::spawn(async move {
            let _held = held;
            gauge.inc();
            serving.await;
            gauge.dec();
        });
    }
}

/// The TLS handshake of an accepted connection, within the handshake timeout (counted when
/// it runs out); `None` when it fails.
pub(super) async fn tls_handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    limits: StreamLimits,
    metrics: &Metrics,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls_stream)) => Some(tls_stream),
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            closed(metrics, "handshake_timeout");
            tracing::debug!(%peer, "TLS handshake timed out");
            None
        }
    }
}

/// A permit and a per-source slot for a new connection from `peer`, or `None` (counted) when
/// either bound is reached. The log line for a refusal is at debug level: a source over its
/// bound keeps trying, and each try would be a line.
fn admitted(
    admit: &ConnectionLimits,
    peer: SocketAddr,
    metrics: &Metrics,
) -> Option<(tokio::sync::OwnedSemaphorePermit, Slot)> {
    let Some(slot) = admit.per_source.acquire(peer.ip()) else {
        metrics
            .connections_refused
            .with_label_values(&["source_limit"])
            .inc();
        tracing::debug!(%peer, "connection limit per source reached; closing");
        return None;
    };
    let Ok(permit) = admit.total.clone().try_acquire_owned() else {
        metrics
            .connections_refused
            .with_label_values(&["limit"])
            .inc();
        // Worth a warning (the registrar is full), but not one per refused connection.
        static WARNED_AT: AtomicU64 = AtomicU64::new(0);
        if once_every(&WARNED_AT, 10, unix_secs()) {
            tracing::warn!(%peer, "connection limit reached; closing (at most one line per 10 s)");
        }
        return None;
    };
    Some((permit, slot))
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Whether something done at most once every `every` seconds (`last`: unix seconds of the
/// last time) is due at `now`; if so, `now` becomes the last time.
fn once_every(last: &AtomicU64, every: u64, now: u64) -> bool {
    let before = last.load(Ordering::Relaxed);
    now >= before + every
        && last
            .compare_exchange(before, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
}

/// Counts a connection closed for `reason` (a timeout's name).
pub(super) fn closed(metrics: &Metrics, reason: &str) {
    metrics
        .connections_closed
        .with_label_values(&[reason])
        .inc();
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
    let first = Some(limits.first_message_timeout);
    run(
        stream, peer, transport, service, limits, first, shutdown, flow, buf,
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
        stream, peer, transport, service, limits, None, shutdown, flow, buf,
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

/// Serves a connection: `first_message` bounds the wait for its first whole message.
#[allow(clippy::too_many_arguments)]
async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    peer: SocketAddr,
    transport: Transport,
    service: &Service,
    limits: StreamLimits,
    first_message: Option<Duration>,
    mut shutdown: watch::Receiver<bool>,
    (_flow, mut outgoing): (FlowGuard, mpsc::Receiver<Bytes>),
    mut buf: BytesMut,
) {
    let mut first_by = first_message.map(|d| Instant::now() + d);
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
                    first_by = None;
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
        let (wait, reason) = wait_for(&limits, buf.is_empty(), first_by, Instant::now());
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
                service
                    .metrics()
                    .connections_closed
                    .with_label_values(&[reason])
                    .inc();
                tracing::debug!(%peer, reason, "connection timed out");
                break;
            }
        }
    }
    let _ = stream.shutdown().await;
}

/// How long a connection's next read may wait, and what its timing out is called: until the
/// first message, what is left of its deadline; then the idle timeout between messages and the
/// message timeout inside one.
pub(super) fn wait_for(
    limits: &StreamLimits,
    between_messages: bool,
    first_by: Option<Instant>,
    now: Instant,
) -> (Duration, &'static str) {
    let (wait, reason) = if between_messages {
        (limits.idle_timeout, "idle_timeout")
    } else {
        (limits.message_timeout, "message_timeout")
    };
    match first_by {
        Some(by) if by.saturating_duration_since(now) <= wait => {
            (by.saturating_duration_since(now), "first_message_timeout")
        }
        _ => (wait, reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_warning_at_most_once_per_interval() {
        let last = AtomicU64::new(0);
        let t = 1_000_000;
        assert!(once_every(&last, 10, t));
        assert!(!once_every(&last, 10, t + 9), "a steady flood stays quiet");
        assert!(once_every(&last, 10, t + 10));
        assert!(!once_every(&last, 10, t + 11));
    }

    #[test]
    fn the_first_message_has_a_short_deadline_then_the_idle_timeout_applies() {
        let limits = StreamLimits::default();
        let t = Instant::now();
        let first = Some(t + limits.first_message_timeout);
        assert_eq!(
            wait_for(&limits, true, first, t),
            (limits.first_message_timeout, "first_message_timeout")
        );
        assert_eq!(
            wait_for(&limits, true, first, t + Duration::from_secs(4)),
            (Duration::from_secs(6), "first_message_timeout")
        );
        assert_eq!(
            wait_for(&limits, true, None, t),
            (limits.idle_timeout, "idle_timeout")
        );
        assert_eq!(
            wait_for(&limits, false, None, t),
            (limits.message_timeout, "message_timeout")
        );
        // A deadline beyond the idle timeout (a long first-message timeout) does not extend it.
        let far = Some(t + limits.idle_timeout * 2);
        assert_eq!(wait_for(&limits, true, far, t).1, "idle_timeout");
    }
}
