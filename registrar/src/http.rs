//! The HTTP side, on two listeners.
//!
//! - Public ([`router`], `--http`, where Prometheus and the kubelet look): `/metrics`,
//!   `/healthz` (the process runs), `/readyz` (a config is loaded and the process is not
//!   shutting down).
//! - Debug ([`debug_router`], `--debug-http`, loopback by default): `/debug/bindings` (the
//!   location store as JSON — every replica's bindings when they share Redis;
//!   `?device=namespace/name` for one device, with the way this replica reaches each binding),
//!   `/debug/registrations` (the outbound registrations this replica runs), `/debug/cluster`
//!   (the sibling replicas, their liveness, and who owns each outbound registration). These
//!   show phones' addresses and user agents, so they are not served next to `/metrics`.

use crate::cluster::reach::Reach;
use crate::cluster::{Cluster, MemberView};
use crate::config::ConfigHandle;
use crate::location::{Binding, LocationStore};
use crate::metrics::Metrics;
use crate::uac::UacIndex;
use axum::extract::{Query, State};
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
    /// This replica and its siblings (debug endpoints).
    pub cluster: Cluster,
    /// Set when shutdown begins, so readiness drops first.
    pub shutting_down: AtomicBool,
}

/// The public router: metrics and probes, nothing under `/debug`.
pub fn router(state: Arc<HttpState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

/// The debug router: `/debug/*`, for the loopback (or otherwise private) listener.
pub fn debug_router(state: Arc<HttpState>) -> Router {
    Router::new()
        .route("/debug/bindings", get(bindings))
        .route("/debug/cluster", get(cluster))
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
    /// How this replica reaches it: `local`, `through <replica>`, `direct` (its replica is
    /// gone; UDP), `stale` (its replica is gone with its connection).
    reach: String,
}

fn reach_label(cluster: &Cluster, b: &Binding) -> String {
    match cluster.reach(&b.replica, b.transport) {
        Reach::Local => "local".into(),
        Reach::Through(_) => format!("through {}", b.replica),
        Reach::Direct => "direct".into(),
        Reach::Stale => "stale".into(),
    }
}

/// `/debug/bindings` query.
#[derive(serde::Deserialize)]
struct BindingsQuery {
    /// One device, `namespace/name`.
    device: Option<String>,
}

async fn bindings(
    State(s): State<Arc<HttpState>>,
    Query(q): Query<BindingsQuery>,
) -> impl IntoResponse {
    let now = SystemTime::now();
    let (generation, config_hash) = s
        .config
        .current()
        .map(|c| (c.generation, c.config.hash.clone()))
        .unwrap_or_default();
    let snapshot = match &q.device {
        Some(id) => s.store.lookup(id, now).await.map(|b| vec![(id.clone(), b)]),
        None => s.store.snapshot(now).await,
    };
    match snapshot {
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
                            reach: reach_label(&s.cluster, &b),
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

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ClusterView {
    replica: String,
    settled: bool,
    live: Vec<String>,
    members: Vec<MemberView>,
    /// Every configured outbound registration and the replica that owns it.
    owners: std::collections::BTreeMap<String, String>,
}

async fn cluster(State(s): State<Arc<HttpState>>) -> impl IntoResponse {
    let c = &s.cluster;
    let owners = s
        .config
        .current()
        .map(|l| {
            l.config
                .registrations
                .iter()
                .map(|r| (r.id.clone(), c.owner(&r.id)))
                .collect()
        })
        .unwrap_or_default();
    Json(ClusterView {
        replica: c.me().to_string(),
        settled: c.is_settled(),
        live: c.live_replicas(),
        members: c.members(),
        owners,
    })
}
