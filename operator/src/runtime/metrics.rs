//! Prometheus metrics.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

/// The operator's metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Reconcile passes run.
    pub reconciles: IntCounter,
    /// Reconcile passes (or single writes in them) that failed.
    pub errors: IntCounter,
    /// Configs published since start.
    pub config_generation: IntGauge,
    /// Bytes of the published config.
    pub config_bytes: IntGauge,
    /// Shards of the published config.
    pub config_shards: IntGauge,
    /// Devices in the published config.
    pub config_devices: IntGauge,
    /// Seconds spent validating and compiling.
    pub compile_seconds: Histogram,
    /// Status writes made.
    pub status_writes: IntCounter,
    /// 1 while this replica holds the Lease.
    pub leader: IntGauge,
    /// Writes not made because the Lease's renew deadline had passed.
    pub fenced_writes: IntCounter,
    /// Failed writes (retried with backoff), by namespace.
    pub write_failures: IntCounterVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let compile_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "switchboard_operator_compile_duration_seconds",
                "Time to validate and compile the registrar config",
            )
            .buckets(vec![0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
        )
        .expect("valid metric");
        registry
            .register(Box::new(compile_seconds.clone()))
            .expect("unique metric");
        let write_failures = IntCounterVec::new(
            Opts::new(
                "switchboard_operator_write_failures_total",
                "Failed status and credentials writes (each retried with backoff), by namespace",
            ),
            &["namespace"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(write_failures.clone()))
            .expect("unique metric");
        Metrics {
            write_failures,
            reconciles: counter(
                "switchboard_operator_reconciles_total",
                "Reconcile passes run",
            ),
            errors: counter(
                "switchboard_operator_reconcile_errors_total",
                "Failed reconcile passes and failed writes",
            ),
            config_generation: gauge(
                "switchboard_operator_config_generation",
                "Registrar configs published since start",
            ),
            config_bytes: gauge(
                "switchboard_operator_config_bytes",
                "Size of the published registrar config",
            ),
            config_shards: gauge(
                "switchboard_operator_config_shards",
                "Shard Secrets of the published registrar config",
            ),
            config_devices: gauge(
                "switchboard_operator_config_devices",
                "Devices in the compiled registrar config",
            ),
            status_writes: counter(
                "switchboard_operator_status_writes_total",
                "Status writes made",
            ),
            fenced_writes: counter(
                "switchboard_operator_fenced_writes_total",
                "Writes not made because this replica's Lease renew deadline had passed",
            ),
            leader: gauge(
                "switchboard_operator_leader",
                "1 while this replica holds the leader Lease",
            ),
            compile_seconds,
            registry,
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding");
        String::from_utf8(buf).expect("utf-8 metrics")
    }
}
