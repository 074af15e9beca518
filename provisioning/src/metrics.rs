//! Prometheus metrics and the plain-HTTP `/metrics`, `/healthz`, `/readyz` (no phone data
//! there: the files are served over HTTPS only).

use crate::inventory::Source;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use prometheus::{Encoder, IntCounterVec, Opts, Registry, TextEncoder};
use std::sync::Arc;

/// The service's metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Fetches by vendor (`unknown` for a path naming none) and outcome (`served`,
    /// `unassigned`, `not_found`, `unauthorized`, `blocked`, `unavailable`).
    pub fetches: IntCounterVec,
}

impl Default for Metrics {
    fn default() -> Self {
        let registry = Registry::new();
        let fetches = IntCounterVec::new(
            Opts::new(
                "switchboard_provisioning_fetches_total",
                "Provisioning fetches by vendor and outcome",
            ),
            &["vendor", "outcome"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(fetches.clone()))
            .expect("unique metric");
        Metrics { registry, fetches }
    }
}

impl Metrics {
    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding");
        String::from_utf8(out).expect("UTF-8 metrics")
    }
}

/// What the endpoints read.
#[derive(Clone)]
pub struct Health {
    /// Metrics to expose.
    pub metrics: Metrics,
    /// Ready once it has listed what it serves.
    pub source: Arc<dyn Source>,
}

/// `/metrics`, `/healthz`, `/readyz`.
pub fn router(health: Health) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(h): State<Health>| async move { h.metrics.render() }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(health)
}

async fn readyz(State(h): State<Health>) -> (StatusCode, &'static str) {
    if h.source.listed() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "listing devices and sites")
    }
}

/// Serves until the listener fails.
pub async fn serve(addr: std::net::SocketAddr, health: Health) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving /metrics /healthz /readyz");
    axum::serve(listener, router(health)).await
}
