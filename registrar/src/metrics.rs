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
    /// `sip_check_sync_total{result}`: check-sync NOTIFYs after a rotation, `sent` or
    /// `unreachable` (a TCP/TLS flow this replica does not hold).
    pub check_sync: IntCounterVec,
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

/// A metric's name and help.
type Spec = (&'static str, &'static str);

/// A labelled metric's name, help and label names.
type VecSpec = (&'static str, &'static str, &'static [&'static str]);

// SIP messages.
const REQUESTS: VecSpec = (
    "sip_requests_total",
    "SIP requests answered, by method and response code",
    &["method", "code"],
);
const DROPPED: VecSpec = (
    "sip_messages_dropped_total",
    "SIP messages dropped unanswered, by reason",
    &["reason"],
);
const RETRANSMISSIONS: Spec = (
    "sip_retransmissions_total",
    "Retransmitted requests answered from the transaction cache",
);

// Authentication.
const AUTH_FAILURES: VecSpec = (
    "sip_auth_failures_total",
    "Requests not authorized, by reason",
    &["reason"],
);
const AUTH_BLOCKS: VecSpec = (
    "sip_auth_blocks_total",
    "Blocks started after too many failed authentications, by scope (pair, source)",
    &["scope"],
);
const AUTH_BLOCKED: VecSpec = (
    "sip_auth_blocked",
    "Keys blocked after too many failed authentications, by scope (pair, source)",
    &["scope"],
);
const AUTH_LOGS_SUPPRESSED: Spec = (
    "sip_auth_log_lines_suppressed_total",
    "Failed-authentication log lines left out by the per-source rate limit",
);

// Registrations.
const ACTIVE_BINDINGS: Spec = ("sip_active_bindings", "Live bindings in the location store");
const DEVICES: VecSpec = (
    "sip_devices",
    "Configured devices by registration state",
    &["state"],
);
const EVENTS: VecSpec = (
    "sip_registration_events_total",
    "Binding changes, by kind",
    &["kind"],
);
const CHECK_SYNC: VecSpec = (
    "sip_check_sync_total",
    "check-sync NOTIFYs to phones whose credentials rotated, by result",
    &["result"],
);
const STORE_ERRORS: VecSpec = (
    "switchboard_location_store_errors_total",
    "Location store operations that failed, by operation",
    &["operation"],
);

// Stream connections.
const CONNECTIONS: VecSpec = (
    "sip_connections",
    "Open stream connections, by transport",
    &["transport"],
);
const CONNECTIONS_REFUSED: VecSpec = (
    "sip_connections_refused_total",
    "Stream connections refused, by the limit reached (limit, source_limit)",
    &["reason"],
);
const CONNECTIONS_CLOSED: VecSpec = (
    "sip_connections_closed_total",
    "Stream connections closed by a timeout, by which",
    &["reason"],
);

// Config.
const CONFIG_GENERATION: Spec = (
    "switchboard_config_generation",
    "Generation of the registrar config in force",
);
const CONFIG_INFO: VecSpec = (
    "switchboard_config_info",
    "The registrar config in force (value 1), by content hash",
    &["hash"],
);
const CONFIG_RELOAD_ERRORS: Spec = (
    "switchboard_config_reload_errors_total",
    "Config reloads refused (the previous config stays)",
);

// Proxy.
const CALLS: VecSpec = (
    "sip_calls_total",
    "Calls (INVITE) and MESSAGEs through the proxy, by outcome",
    &["outcome"],
);
const PROXY_TRANSACTIONS: VecSpec = (
    "sip_proxy_transactions",
    "Live proxy transactions, by side",
    &["side"],
);
const PROXY_CALLS: Spec = (
    "sip_proxy_calls",
    "Calls through the proxy with a branch still open",
);

// Cluster and status reporting.
const CLUSTER_REPLICAS: VecSpec = (
    "switchboard_cluster_replicas",
    "Replicas of this installation as this one sees them, by state",
    &["state"],
);
const REPLICA_INFO: VecSpec = (
    "switchboard_replica_info",
    "Names this replica",
    &["replica"],
);
const STATUS_PENDING: Spec = (
    "switchboard_status_writes_pending",
    "Status writes waiting for the API server",
);
const STATUS_WRITES: VecSpec = (
    "switchboard_status_writes_total",
    "Status writes by result (written, gone, failed)",
    &["result"],
);

/// The registry being filled, and the name of every metric in it (sorted).
#[derive(Default)]
struct Registration {
    registry: Registry,
    names: Vec<String>,
}

impl Registration {
    /// Registers `m`, noting its name.
    fn register<M: prometheus::core::Collector + Clone + 'static>(&mut self, m: M) -> M {
        self.names
            .extend(m.desc().iter().map(|d| d.fq_name.clone()));
        self.names.sort();
        self.registry
            .register(Box::new(m.clone()))
            .expect("unique metric");
        m
    }

    fn counter_vec(&mut self, (name, help, labels): VecSpec) -> IntCounterVec {
        self.register(IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"))
    }

    fn gauge_vec(&mut self, (name, help, labels): VecSpec) -> IntGaugeVec {
        self.register(IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"))
    }

    fn counter(&mut self, (name, help): Spec) -> IntCounter {
        self.register(IntCounter::new(name, help).expect("valid metric"))
    }

    fn gauge(&mut self, (name, help): Spec) -> IntGauge {
        self.register(IntGauge::new(name, help).expect("valid metric"))
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Creates and registers the metrics (their names and help are the `Spec`s above).
    pub fn new() -> Metrics {
        let mut r = Registration::default();
        Metrics {
            requests: r.counter_vec(REQUESTS),
            hot_requests: Default::default(),
            auth_failures: r.counter_vec(AUTH_FAILURES),
            auth_blocks: r.counter_vec(AUTH_BLOCKS),
            auth_blocked: r.gauge_vec(AUTH_BLOCKED),
            auth_logs_suppressed: r.counter(AUTH_LOGS_SUPPRESSED),
            dropped: r.counter_vec(DROPPED),
            retransmissions: r.counter(RETRANSMISSIONS),
            active_bindings: r.gauge(ACTIVE_BINDINGS),
            devices: r.gauge_vec(DEVICES),
            events: r.counter_vec(EVENTS),
            check_sync: r.counter_vec(CHECK_SYNC),
            connections: r.gauge_vec(CONNECTIONS),
            connections_refused: r.counter_vec(CONNECTIONS_REFUSED),
            connections_closed: r.counter_vec(CONNECTIONS_CLOSED),
            config_generation: r.gauge(CONFIG_GENERATION),
            config_info: r.gauge_vec(CONFIG_INFO),
            config_reload_errors: r.counter(CONFIG_RELOAD_ERRORS),
            calls: r.counter_vec(CALLS),
            proxy_transactions: r.gauge_vec(PROXY_TRANSACTIONS),
            proxy_calls: r.gauge(PROXY_CALLS),
            store_errors: r.counter_vec(STORE_ERRORS),
            cluster_replicas: r.gauge_vec(CLUSTER_REPLICAS),
            replica_info: r.gauge_vec(REPLICA_INFO),
            status_pending: r.gauge(STATUS_PENDING),
            status_writes: r.counter_vec(STATUS_WRITES),
            names: r.names,
            registry: r.registry,
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
