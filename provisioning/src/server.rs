//! The HTTPS listener: rustls in front of an axum router. There is no plain-HTTP listener:
//! the files hold SIP passwords.

use crate::fetch::{Outcome, Provisioner, Request};
use crate::metrics::Metrics;
use crate::record::Recorder;
use crate::vendor::Vendor;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// What the handlers share.
#[derive(Clone)]
pub struct App {
    /// Answers fetches.
    pub provisioner: Arc<Provisioner>,
    /// Records served files.
    pub recorder: Recorder,
    /// Counts fetches.
    pub metrics: Metrics,
}

/// The peer of a connection.
#[derive(Clone, Copy)]
struct Peer(SocketAddr);

/// The routes: `/provisioning/{vendor}/{file}` and `/healthz`.
pub fn router(app: App) -> Router {
    Router::new()
        .route("/provisioning/{vendor}/{file}", get(provision))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(app)
}

async fn provision(
    State(app): State<App>,
    Extension(Peer(source)): Extension<Peer>,
    Path((vendor, file)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let text = |h| {
        headers
            .get(h)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .map(str::to_string)
    };
    let req = Request {
        vendor,
        file,
        source,
        user_agent: text(header::USER_AGENT),
        authorization: text(header::AUTHORIZATION),
        host: text(header::HOST).map(|h| host_of(&h)),
    };
    let outcome = app.provisioner.fetch(&req).await;
    let vendor = Vendor::from_name(&req.vendor).map_or("unknown", Vendor::name);
    app.metrics
        .fetches
        .with_label_values(&[vendor, outcome.label()])
        .inc();
    match outcome {
        Outcome::Served(file, fetch) => {
            let recorder = app.recorder.clone();
            tokio::spawn(async move { recorder.record(&fetch).await });
            let headers = [
                (header::CONTENT_TYPE, file.content_type),
                (header::CACHE_CONTROL, "no-store"),
            ];
            (headers, file.body).into_response()
        }
        Outcome::NotFound => (StatusCode::NOT_FOUND, "no such file\n").into_response(),
        Outcome::Unauthorized(challenges) => {
            let mut r = (
                StatusCode::UNAUTHORIZED,
                "the site's provisioning credentials are needed\n",
            )
                .into_response();
            for c in challenges {
                if let Ok(v) = HeaderValue::from_str(&c) {
                    r.headers_mut().append(header::WWW_AUTHENTICATE, v);
                }
            }
            r
        }
        Outcome::Blocked(secs) => (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, secs.to_string())],
            "too many failed attempts; try later\n",
        )
            .into_response(),
        Outcome::Unavailable(why) => {
            tracing::warn!(%source, reason = %why, "provisioning fetch could not be answered");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "10")],
                "not available yet\n",
            )
                .into_response()
        }
    }
}

/// The host of a `Host` header (`name`, `name:port`, `[v6]:port`).
fn host_of(h: &str) -> String {
    match h.rsplit_once(':') {
        Some((host, port))
            if port.chars().all(|c| c.is_ascii_digit())
                && (!host.contains(':') || host.ends_with(']')) =>
        {
            host.to_string()
        }
        _ => h.to_string(),
    }
}

/// Accepts TLS connections on `listener` for ever, each served by `router`.
pub async fn serve(listener: TcpListener, tls: TlsAcceptor, app: App) {
    let router = router(app.clone());
    tokio::spawn(prune(app.provisioner.clone()));
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (tls, router) = (tls.clone(), router.clone());
        tokio::spawn(async move {
            // A client that never finishes its handshake does not hold a task for ever.
            let stream = match tokio::time::timeout(Duration::from_secs(10), tls.accept(tcp)).await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
            };
            let service = router.layer(Extension(Peer(peer))).map_request(
                |r: axum::http::Request<hyper::body::Incoming>| r.map(axum::body::Body::new),
            );
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}

/// Forgets stale limiter records once a minute.
async fn prune(p: Arc<Provisioner>) {
    loop {
        tokio::time::sleep(Duration::from_secs(60)).await;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        p.limiter().prune(now);
    }
}
