//! SIP over WebSocket (RFC 7118), for browser softphones: WS, and WSS with the TLS acceptor of
//! `--tls-cert`/`--tls-key`. A WebSocket connection is a flow like a TCP one (the same accept
//! loop, connection bounds, per-source slots, first-message and idle timeouts, metrics under
//! its transport label, an entry in the proxy's flow table), but needs no stream framing:
//! each WebSocket message carries exactly one SIP message (RFC 7118 §5.1). What we send goes
//! as a text message when it is UTF-8, else binary. A message that is only CRLFs is an RFC
//! 5626 keepalive (SIP.js sends them): a double CRLF is answered with one.

pub mod handshake;

use super::tcp::{accept_loop, closed, tls_handshake, wait_for, ConnectionLimits, StreamLimits};
use crate::message::MAX_MESSAGE_SIZE;
use crate::metrics::Metrics;
use crate::service::Service;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use handshake::{WebSocketPolicy, SUBPROTOCOL};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use switchboard_crds::common::Transport;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

/// Accepts WebSocket connections (WSS when `tls` is given) until shutdown, under the same
/// bounds as TCP/TLS.
#[allow(clippy::too_many_arguments)]
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    policy: Arc<WebSocketPolicy>,
    service: Arc<Service>,
    metrics: Arc<Metrics>,
    admit: ConnectionLimits,
    limits: StreamLimits,
    shutdown: watch::Receiver<bool>,
) {
    let transport = if tls.is_some() {
        Transport::Wss
    } else {
        Transport::Ws
    };
    let (m, down) = (metrics.clone(), shutdown.clone());
    let serve_one = move |stream: TcpStream, peer: SocketAddr| {
        let (service, metrics, shutdown) = (service.clone(), m.clone(), down.clone());
        let (tls, policy) = (tls.clone(), policy.clone());
        async move {
            let conn = Conn {
                peer,
                transport,
                service: &service,
                limits,
            };
            match tls {
                None => conn.open(stream, &policy, shutdown).await,
                Some(acceptor) => {
                    if let Some(s) = tls_handshake(&acceptor, stream, peer, limits, &metrics).await
                    {
                        conn.open(s, &policy, shutdown).await
                    }
                }
            }
        }
    };
    accept_loop(listener, transport, metrics, admit, shutdown, serve_one).await
}

/// One accepted connection.
struct Conn<'a> {
    peer: SocketAddr,
    transport: Transport,
    service: &'a Service,
    limits: StreamLimits,
}

impl Conn<'_> {
    /// The WebSocket handshake (within the handshake timeout), then the connection's life.
    #[allow(clippy::result_large_err)] // the callback's type is tungstenite's
    async fn open<S: AsyncRead + AsyncWrite + Unpin>(
        self,
        stream: S,
        policy: &WebSocketPolicy,
        shutdown: watch::Receiver<bool>,
    ) {
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE_SIZE))
            .max_frame_size(Some(MAX_MESSAGE_SIZE));
        let peer = self.peer;
        let callback = |req: &Request, resp: Response| answer_handshake(req, resp, policy, peer);
        let accept =
            tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config));
        match tokio::time::timeout(self.limits.handshake_timeout, accept).await {
            Ok(Ok(ws)) => self.run(ws, shutdown).await,
            Ok(Err(e)) => tracing::debug!(%peer, error = %e, "WebSocket handshake failed"),
            Err(_) => {
                closed(self.service.metrics(), "handshake_timeout");
                tracing::debug!(%peer, "WebSocket handshake timed out");
            }
        }
    }

    /// Serves the connection until the peer closes it, a timeout, or shutdown: every message
    /// received is handled in order, and what the proxy queues for this flow is sent.
    async fn run<S: AsyncRead + AsyncWrite + Unpin>(
        self,
        mut ws: WebSocketStream<S>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let (peer, transport) = (self.peer, self.transport);
        let (_flow, mut outgoing) = self.service.proxy().flows().open(peer, transport);
        let mut first_by = Some(Instant::now() + self.limits.first_message_timeout);
        loop {
            let (wait, reason) = wait_for(&self.limits, true, first_by, Instant::now());
            let next = tokio::select! {
                biased;
                _ = super::shutdown_requested(&mut shutdown) => break,
                Some(data) = outgoing.recv() => {
                    if ws.send(message(data)).await.is_err() {
                        break;
                    }
                    continue;
                }
                r = tokio::time::timeout(wait, ws.next()) => r,
            };
            let data = match next {
                Err(_) => {
                    closed(self.service.metrics(), reason);
                    tracing::debug!(%peer, reason, "WebSocket connection timed out");
                    break;
                }
                Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => break,
                Ok(Some(Ok(Message::Text(t)))) => Bytes::from(t),
                Ok(Some(Ok(Message::Binary(b)))) => b,
                // Pings are answered by the WebSocket layer itself.
                Ok(Some(Ok(_))) => continue,
            };
            let reply = match content(&data) {
                Content::KeepAlive { pong } => pong.then(|| Bytes::from_static(b"\r\n")),
                Content::Message(sip) => {
                    first_by = None;
                    let out = self.service.handle(sip, peer, transport).await;
                    out.map(|o| Bytes::copy_from_slice(&o.data))
                }
            };
            if let Some(reply) = reply {
                if ws.send(message(reply)).await.is_err() {
                    break;
                }
            }
        }
        let _ = ws.close(None).await;
    }
}

/// What a WebSocket message holds.
#[derive(Debug, PartialEq, Eq)]
enum Content<'a> {
    /// Only CRLFs: an RFC 5626 keepalive, answered with a CRLF when it is a double CRLF.
    KeepAlive { pong: bool },
    /// A SIP message (CRLFs before it dropped, as RFC 3261 §7.5 asks).
    Message(&'a [u8]),
}

fn content(data: &[u8]) -> Content<'_> {
    let start = data
        .iter()
        .position(|b| !matches!(b, b'\r' | b'\n'))
        .unwrap_or(data.len());
    match &data[start..] {
        [] => Content::KeepAlive {
            pong: data.starts_with(b"\r\n\r\n"),
        },
        sip => Content::Message(sip),
    }
}

/// A SIP message as a WebSocket message: text when UTF-8 (RFC 7118 §5.1), else binary.
fn message(data: Bytes) -> Message {
    match Utf8Bytes::try_from(data.clone()) {
        Ok(text) => Message::Text(text),
        Err(_) => Message::Binary(data),
    }
}

/// Accepts a handshake that offers `sip` from an allowed origin, answering with the `sip`
/// subprotocol; refuses any other with the status and reason of [`handshake::check`].
#[allow(clippy::result_large_err)] // tungstenite's callback signature
fn answer_handshake(
    req: &Request,
    mut resp: Response,
    policy: &WebSocketPolicy,
    peer: SocketAddr,
) -> Result<Response, ErrorResponse> {
    let headers = req.headers();
    let protocols = headers
        .get_all("Sec-WebSocket-Protocol")
        .iter()
        .filter_map(|v| v.to_str().ok());
    let origin = headers.get("Origin").and_then(|v| v.to_str().ok());
    match handshake::check(protocols, origin, policy) {
        Ok(()) => {
            resp.headers_mut().insert(
                "Sec-WebSocket-Protocol",
                HeaderValue::from_static(SUBPROTOCOL),
            );
            Ok(resp)
        }
        Err(refusal) => {
            tracing::debug!(%peer, ?refusal, "WebSocket handshake refused");
            let mut err = ErrorResponse::new(Some(refusal.explain()));
            *err.status_mut() =
                StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::BAD_REQUEST);
            Err(err)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crlfs_are_keepalives_and_lead_no_message_astray() {
        assert_eq!(content(b"\r\n\r\n"), Content::KeepAlive { pong: true });
        assert_eq!(content(b"\r\n"), Content::KeepAlive { pong: false });
        assert_eq!(content(b""), Content::KeepAlive { pong: false });
        assert_eq!(
            content(b"\r\nOPTIONS sip:a SIP/2.0\r\n\r\n"),
            Content::Message(b"OPTIONS sip:a SIP/2.0\r\n\r\n")
        );
        assert_eq!(content(b"BYE"), Content::Message(b"BYE"));
    }

    #[test]
    fn text_when_utf8_else_binary() {
        let m = message(Bytes::from_static(b"OPTIONS sip:a SIP/2.0\r\n\r\n"));
        assert!(matches!(m, Message::Text(_)));
        let m = message(Bytes::from_static(b"MESSAGE sip:a SIP/2.0\r\n\r\n\xff\xfe"));
        assert!(matches!(m, Message::Binary(_)));
    }

    #[test]
    fn the_handshake_answer_names_sip_or_says_why_not() {
        let policy = WebSocketPolicy::default();
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let req = |proto: &str| {
            Request::builder()
                .uri("/")
                .header("Sec-WebSocket-Protocol", proto)
                .body(())
                .unwrap()
        };
        let ok = answer_handshake(&req("sip"), Response::new(()), &policy, peer).unwrap();
        assert_eq!(ok.headers()["Sec-WebSocket-Protocol"], "sip");
        let err = answer_handshake(&req("chat"), Response::new(()), &policy, peer).unwrap_err();
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        assert!(err.body().as_deref().unwrap().contains("\"sip\""));
    }
}
