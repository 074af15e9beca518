//! Prometheus metrics, in a registry of their own (served at `/metrics`).

use prometheus::{
    Encoder, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::sync::OnceLock;

/// The `sip_requests_total` series counted on every REGISTER round trip and keepalive,
/// resolved once: a label lookup (hashing, a lock, a status formatted into a string) per
/// request was a measurable share of a registration's CPU time.
const HOT_REQUESTS: [(&str, u16); 6] = [
    ("REGISTER", 401),
    ("REGISTER", 200),
    ("REGISTER", 403),
    ("REGISTER", 423),
    ("OPTIONS", 200),
    ("NOTIFY", 200),
];

/// Every metric the registrar exports.
pub struct Metrics {
    registry: Registry,
    names: Vec<String>,
    /// `sip_requests_total{method,code}`: requests answered (count with
    /// [`Metrics::count_request`]).
    pub requests: IntCounterVec,
    /// Children of `requests` for [`HOT_REQUESTS`], created on first use (so the exposition
    /// lists only series that were counted).
    hot_requests: [OnceLock<IntCounter>; HOT_REQUESTS.len()],
    /// `sip_auth_failures_total{reason}`: requests not authorized, by reason.
    pub auth_failures: IntCounterVec,
    /// `sip_auth_blocks_total{scope}`: blocks this replica started, on a (source, user) `pair`
    /// or a whole `source`.
    pub auth_blocks: IntCounterVec,
    /// `sip_auth_blocked{scope}`: `pair`s and `source`s blocked now (every replica's, with Redis).
    pub auth_blocked: IntGaugeVec,
    /// `sip_auth_log_lines_suppressed_total`: failed-authentication log lines left out by the
    /// per-source rate limit.
    pub auth_logs_suppressed: IntCounter,
    /// `sip_messages_dropped_total{reason}`: messages not answered.
    pub dropped: IntCounterVec,
    /// `sip_retransmissions_total`: retransmissions answered from the transaction cache.
    pub retransmissions: IntCounter,
    /// `sip_active_bindings`: live bindings.
    pub active_bindings: IntGauge,
    /// `sip_devices{state}`: devices by registration state (`registered`, `unregistered`).
    pub devices: IntGaugeVec,
    /// `sip_registration_events_total{kind}`: binding changes.
    pub events: IntCounterVec,
    /// `sip_connections{transport}`: open TCP/TLS connections.
    pub connections: IntGaugeVec,
    /// `sip_connections_refused_total{reason}`: connections refused at the total `limit` or
    /// the `source_limit` (per source address).
    pub connections_refused: IntCounterVec,
    /// `sip_connections_closed_total{reason}`: connections closed by a timeout
    /// (`first_message_timeout`, `idle_timeout`, `message_timeout`, `handshake_timeout`).
    pub connections_closed: IntCounterVec,
    /// `switchboard_config_generation`: generation of the config in force.
    pub config_generation: IntGauge,
    /// `switchboard_config_info{hash}`: 1 for the config in force.
    pub config_info: IntGaugeVec,
    /// `switchboard_config_reload_errors_total`: configs refused on reload.
    pub config_reload_errors: IntCounter,
    /// `sip_calls_total{outcome}`: calls through the proxy by outcome (`answered`, `failed`,
    /// `cancelled`, `no_answer`, `unavailable`, `refused`, `not_found`, `message_delivered`,
    /// `message_failed`).
    pub calls: IntCounterVec,
    /// `sip_proxy_transactions{side}`: live proxy transactions (`server`, `client`).
    pub proxy_transactions: IntGaugeVec,
    /// `sip_proxy_calls`: calls (forked INVITEs and MESSAGEs) with a branch still open.
    pub proxy_calls: IntGauge,
    /// `switchboard_location_store_errors_total{operation}`: location store operations that
    /// failed (`lookup`, `update`, `expire`, ...; a networked store can fail).
    pub store_errors: IntCounterVec,
    /// `switchboard_cluster_replicas{state}`: replicas of this installation as this one sees
    /// them (`live`, `dead`), itself included.
    pub cluster_replicas: IntGaugeVec,
    /// `switchboard_replica_info{replica}`: 1, naming this replica.
    pub replica_info: IntGaugeVec,
    /// `switchboard_status_writes_pending`: status writes waiting for the API server (the
    /// backlog the write rate drains).
    pub status_pending: IntGauge,
    /// `switchboard_status_writes_total{result}`: status writes by result (`written`, `gone`:
    /// the resource was deleted, `failed`: retried later).
    pub status_writes: IntCounterVec,
}

/// Registers `m`, noting its name in `names`.
fn register(
    registry: &Registry,
    names: &std::cell::RefCell<Vec<String>>,
    m: Box<dyn prometheus::core::Collector>,
) {
    let mut names = names.borrow_mut();
    names.extend(m.desc().iter().map(|d| d.fq_name.clone()));
    names.sort();
    registry.register(m).expect("unique metric");
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Creates and registers the metrics.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let names = std::cell::RefCell::new(Vec::new());
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let m = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            register(&registry, &names, Box::new(m.clone()));
            m
        };
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            let m = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            register(&registry, &names, Box::new(m.clone()));
            m
        };
        let counter = |name: &str, help: &str| {
            let m = IntCounter::new(name, help).expect("valid metric");
            register(&registry, &names, Box::new(m.clone()));
            m
        };
        let gauge = |name: &str, help: &str| {
            let m = IntGauge::new(name, help).expect("valid metric");
            register(&registry, &names, Box::new(m.clone()));
            m
        };
        Metrics {
            requests: counter_vec(
                "sip_requests_total",
                "SIP requests answered, by method and response code",
                &["method", "code"],
            ),
            hot_requests: Default::default(),
            auth_failures: counter_vec(
                "sip_auth_failures_total",
                "Requests not authorized, by reason",
                &["reason"],
            ),
            auth_blocks: counter_vec(
                "sip_auth_blocks_total",
                "Blocks started after too many failed authentications, by scope (pair, source)",
                &["scope"],
            ),
            auth_blocked: gauge_vec(
                "sip_auth_blocked",
                "Keys blocked after too many failed authentications, by scope (pair, source)",
                &["scope"],
            ),
            auth_logs_suppressed: counter(
                "sip_auth_log_lines_suppressed_total",
                "Failed-authentication log lines left out by the per-source rate limit",
            ),
            dropped: counter_vec(
                "sip_messages_dropped_total",
                "SIP messages dropped unanswered, by reason",
                &["reason"],
            ),
            retransmissions: counter(
                "sip_retransmissions_total",
                "Retransmitted requests answered from the transaction cache",
            ),
            active_bindings: gauge("sip_active_bindings", "Live bindings in the location store"),
            devices: gauge_vec(
                "sip_devices",
                "Configured devices by registration state",
                &["state"],
            ),
            events: counter_vec(
                "sip_registration_events_total",
                "Binding changes, by kind",
                &["kind"],
            ),
            connections: gauge_vec(
                "sip_connections",
                "Open stream connections, by transport",
                &["transport"],
            ),
            connections_refused: counter_vec(
                "sip_connections_refused_total",
                "Stream connections refused, by the limit reached (limit, source_limit)",
                &["reason"],
            ),
            connections_closed: counter_vec(
                "sip_connections_closed_total",
                "Stream connections closed by a timeout, by which",
                &["reason"],
            ),
            config_generation: gauge(
                "switchboard_config_generation",
                "Generation of the registrar config in force",
            ),
            config_info: gauge_vec(
                "switchboard_config_info",
                "The registrar config in force (value 1), by content hash",
                &["hash"],
            ),
            config_reload_errors: counter(
                "switchboard_config_reload_errors_total",
                "Config reloads refused (the previous config stays)",
            ),
            calls: counter_vec(
                "sip_calls_total",
                "Calls (INVITE) and MESSAGEs through the proxy, by outcome",
                &["outcome"],
            ),
            proxy_transactions: gauge_vec(
                "sip_proxy_transactions",
                "Live proxy transactions, by side",
                &["side"],
            ),
            proxy_calls: gauge(
                "sip_proxy_calls",
                "Calls through the proxy with a branch still open",
            ),
            store_errors: counter_vec(
                "switchboard_location_store_errors_total",
                "Location store operations that failed, by operation",
                &["operation"],
            ),
            cluster_replicas: gauge_vec(
                "switchboard_cluster_replicas",
                "Replicas of this installation as this one sees them, by state",
                &["state"],
            ),
            replica_info: gauge_vec(
                "switchboard_replica_info",
                "Names this replica",
                &["replica"],
            ),
            status_pending: gauge(
                "switchboard_status_writes_pending",
                "Status writes waiting for the API server",
            ),
            status_writes: counter_vec(
                "switchboard_status_writes_total",
                "Status writes by result (written, gone, failed)",
                &["result"],
            ),
            names: names.into_inner(),
            registry,
        }
    }

    /// The name of every metric registered (also those with no series yet), sorted.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Sets `switchboard_cluster_replicas` from `live` of `total` replicas.
    pub fn set_cluster(&self, live: usize, total: usize) {
        self.cluster_replicas
            .with_label_values(&["live"])
            .set(live as i64);
        self.cluster_replicas
            .with_label_values(&["dead"])
            .set(total.saturating_sub(live) as i64);
    }

    /// Counts a request answered with `status` in `sip_requests_total`.
    pub fn count_request(&self, method: &str, status: u16) {
        if let Some(i) = HOT_REQUESTS
            .iter()
            .position(|&(m, s)| s == status && m == method)
        {
            self.hot_requests[i]
                .get_or_init(|| {
                    self.requests
                        .with_label_values(&[method, &status.to_string()])
                })
                .inc();
        } else {
            self.requests
                .with_label_values(&[method, &status.to_string()])
                .inc();
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }

    /// Records the config in force.
    pub fn set_config(&self, generation: u64, hash: &str) {
        self.config_generation.set(generation as i64);
        self.config_info.reset();
        self.config_info.with_label_values(&[hash]).set(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_the_documented_names() {
        let m = Metrics::new();
        m.count_request("REGISTER", 200);
        m.count_request("REGISTER", 200);
        m.count_request("REGISTER", 500);
        assert!(
            !m.encode().contains("code=\"401\""),
            "no series before its first use"
        );
        assert_eq!(m.requests.with_label_values(&["REGISTER", "200"]).get(), 2);
        m.auth_failures.with_label_values(&["wrong_password"]).inc();
        m.set_config(3, "abc123");
        m.devices.with_label_values(&["registered"]).set(1);
        m.store_errors.with_label_values(&["update"]).inc();
        let text = m.encode();
        for name in [
            "sip_requests_total{code=\"200\",method=\"REGISTER\"} 2",
            "sip_requests_total{code=\"500\",method=\"REGISTER\"} 1",
            "sip_auth_failures_total{reason=\"wrong_password\"} 1",
            "switchboard_config_generation 3",
            "switchboard_config_info{hash=\"abc123\"} 1",
            "sip_devices{state=\"registered\"} 1",
            "sip_active_bindings 0",
            "switchboard_location_store_errors_total{operation=\"update\"} 1",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
    }
}
