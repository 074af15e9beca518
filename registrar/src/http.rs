//! The HTTP side: `/metrics` (Prometheus), `/healthz` (the process runs), `/readyz` (a config
//! is loaded and the process is not shutting down), `/debug/bindings` (the location store as
//! JSON), `/debug/registrations` (the outbound registrations' live state as JSON).

use crate::config::ConfigHandle;
use crate::location::{Binding, LocationStore};
use crate::metrics::Metrics;
use crate::uac::UacIndex;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

/// What the handlers read.
pub struct HttpState {
    /// Metrics to expose.
    pub metrics: Arc<Metrics>,
    /// The config (readiness, generation).
    pub config: Arc<ConfigHandle>,
    /// The store (debug endpoint).
    pub store: Arc<dyn LocationStore>,
    /// The outbound registrations (debug endpoint).
    pub uac: UacIndex,
    /// Set when shutdown begins, so readiness drops first.
    pub shutting_down: AtomicBool,
}

/// The router.
pub fn router(state: Arc<HttpState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/debug/bindings", get(bindings))
        .route(
            "/debug/registrations",
            get(|State(s): State<Arc<HttpState>>| async move { Json(s.uac.to_json()) }),
        )
        .with_state(state)
}

async fn metrics(State(s): State<Arc<HttpState>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.encode(),
    )
}

async fn readyz(State(s): State<Arc<HttpState>>) -> impl IntoResponse {
    if s.shutting_down.load(Ordering::SeqCst) {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
    } else if s.config.is_loaded() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "no config loaded\n")
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BindingsView {
    generation: u64,
    config_hash: String,
    devices: Vec<DeviceView>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DeviceView {
    id: String,
    bindings: Vec<BindingView>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BindingView {
    #[serde(flatten)]
    binding: Binding,
    expires_in: u32,
}

async fn bindings(State(s): State<Arc<HttpState>>) -> impl IntoResponse {
    let now = SystemTime::now();
    let (generation, config_hash) = s
        .config
        .current()
        .map(|c| (c.generation, c.config.hash.clone()))
        .unwrap_or_default();
    match s.store.snapshot(now).await {
        Ok(snapshot) => Json(BindingsView {
            generation,
            config_hash,
            devices: snapshot
                .into_iter()
                .map(|(id, bindings)| DeviceView {
                    id,
                    bindings: bindings
                        .into_iter()
                        .map(|b| BindingView {
                            expires_in: b.remaining(now),
                            binding: b,
                        })
                        .collect(),
                })
                .collect(),
        })
        .into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}
