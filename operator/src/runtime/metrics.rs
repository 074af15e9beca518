//! Prometheus metrics.

use crate::compile::Compiled;
use crate::index::Index;
use prometheus::core::Collector;
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use switchboard_crds::registration::RegistrationPhase;

/// The operator's metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    names: Vec<String>,
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
    /// `switchboard_site_devices{site}`: devices naming each site (`namespace/name`; leader
    /// only). Not a `namespace` label: Prometheus would rename it `exported_namespace`, as the
    /// scrape target's own `namespace` label comes first.
    pub site_devices: IntGaugeVec,
    /// `switchboard_site_devices_registered{site}`: of those, registered.
    pub site_registered: IntGaugeVec,
    /// `switchboard_sip_registration_phase{registration,phase}`: 1 for each upstream
    /// registration's (`namespace/name`) current phase, as the registrar wrote it into its
    /// status, 0 for the others.
    pub registration_phase: IntGaugeVec,
}

/// A registry being filled: each metric made is registered and its name noted.
struct Filling {
    registry: Registry,
    names: Vec<String>,
}

impl Filling {
    /// Registers `m` (a metric's handles share its values, so a clone is registered).
    fn add<M: Collector + Clone + 'static>(&mut self, m: M) -> M {
        self.names
            .extend(m.desc().iter().map(|d| d.fq_name.clone()));
        self.registry
            .register(Box::new(m.clone()))
            .expect("unique metric");
        m
    }

    fn counter(&mut self, name: &str, help: &str) -> IntCounter {
        self.add(IntCounter::new(name, help).expect("valid metric"))
    }

    fn gauge(&mut self, name: &str, help: &str) -> IntGauge {
        self.add(IntGauge::new(name, help).expect("valid metric"))
    }

    fn counter_vec(&mut self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.add(IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"))
    }

    fn gauge_vec(&mut self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        self.add(IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"))
    }

    fn histogram(&mut self, name: &str, help: &str, buckets: &[f64]) -> Histogram {
        let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
        self.add(Histogram::with_opts(opts).expect("valid metric"))
    }

    /// The names noted so far, sorted.
    fn sorted_names(&mut self) -> Vec<String> {
        let mut names = std::mem::take(&mut self.names);
        names.sort();
        names
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> Self {
        let mut f = Filling {
            registry: Registry::new(),
            names: Vec::new(),
        };
        Metrics {
            compile_seconds: f.histogram(
                "switchboard_operator_compile_duration_seconds",
                "Time to validate and compile the registrar config",
                &[0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0],
            ),
            write_failures: f.counter_vec(
                "switchboard_operator_write_failures_total",
                "Failed status and credentials writes (each retried with backoff), by namespace",
                &["namespace"],
            ),
            site_devices: f.gauge_vec(
                "switchboard_site_devices",
                "Devices naming each site",
                &["site"],
            ),
            site_registered: f.gauge_vec(
                "switchboard_site_devices_registered",
                "Devices of each site the registrar reports registered",
                &["site"],
            ),
            registration_phase: f.gauge_vec(
                "switchboard_sip_registration_phase",
                "1 for each SipRegistration's current phase, 0 for the others",
                &["registration", "phase"],
            ),
            reconciles: f.counter(
                "switchboard_operator_reconciles_total",
                "Reconcile passes run",
            ),
            errors: f.counter(
                "switchboard_operator_reconcile_errors_total",
                "Failed reconcile passes and failed writes",
            ),
            config_generation: f.gauge(
                "switchboard_operator_config_generation",
                "Registrar configs published since start",
            ),
            config_bytes: f.gauge(
                "switchboard_operator_config_bytes",
                "Size of the published registrar config",
            ),
            config_shards: f.gauge(
                "switchboard_operator_config_shards",
                "Shard Secrets of the published registrar config",
            ),
            config_devices: f.gauge(
                "switchboard_operator_config_devices",
                "Devices in the compiled registrar config",
            ),
            status_writes: f.counter(
                "switchboard_operator_status_writes_total",
                "Status writes made",
            ),
            fenced_writes: f.counter(
                "switchboard_operator_fenced_writes_total",
                "Writes not made because this replica's Lease renew deadline had passed",
            ),
            leader: f.gauge(
                "switchboard_operator_leader",
                "1 while this replica holds the leader Lease",
            ),
            names: f.sorted_names(),
            registry: f.registry,
        }
    }

    /// The name of every metric registered (also those with no series yet), sorted.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Sets the per-site and per-registration gauges from a pass's outcome (the leader's view;
    /// the series of objects gone since are removed).
    pub fn set_inventory(&self, index: &Index, compiled: &Compiled) {
        self.clear_inventory();
        for (key, site) in &compiled.sites {
            let labels = [key.to_string()];
            self.site_devices
                .with_label_values(&labels)
                .set(i64::from(site.devices));
            self.site_registered
                .with_label_values(&labels)
                .set(i64::from(site.registered));
        }
        for (key, reg) in &index.registrations {
            let now = reg.status.as_ref().and_then(|s| s.phase);
            let key = key.to_string();
            for phase in [
                RegistrationPhase::InProgress,
                RegistrationPhase::Successful,
                RegistrationPhase::Failed,
            ] {
                self.registration_phase
                    .with_label_values(&[key.as_str(), phase_name(phase)])
                    .set(i64::from(now == Some(phase)));
            }
        }
    }

    /// Drops the per-site and per-registration series (a replica that stops leading no longer
    /// knows them).
    pub fn clear_inventory(&self) {
        self.site_devices.reset();
        self.site_registered.reset();
        self.registration_phase.reset();
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

fn phase_name(p: RegistrationPhase) -> &'static str {
    match p {
        RegistrationPhase::InProgress => "InProgress",
        RegistrationPhase::Successful => "Successful",
        RegistrationPhase::Failed => "Failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::{compile, LastGood};
    use crate::index::{Change, Op};
    use crate::samples::*;
    use crate::validate::validate;
    use switchboard_crds::registration::SipRegistrationStatus;

    #[test]
    fn inventory_gauges_follow_sites_and_registration_phases() {
        let mut index = Index::synced("switchboard");
        let hq = site("acme", "hq", "hq.acme.test", "1000-1999");
        index.apply(Change::Site(Op::Apply(hq)));
        let lobby = at_site(
            device("acme", "lobby", "00:1a:2b:3c:4d:5e", "lobby", 1),
            "hq",
            "1000",
        );
        index.apply(Change::secret(Op::Apply(generated_secret(&lobby, "pw"))));
        index.apply(Change::device(Op::Apply(lobby)));
        let mut trunk = registration("acme", "trunk", "sip:t@upstream.test", "trunk-pw");
        trunk.status = Some(SipRegistrationStatus {
            phase: Some(RegistrationPhase::Failed),
            ..Default::default()
        });
        index.apply(Change::Registration(Op::Apply(trunk)));
        let verdicts = validate(&index);
        let compiled = compile(&index, &verdicts, &LastGood::new(), None);

        let m = Metrics::new();
        m.set_inventory(&index, &compiled);
        let text = m.render();
        for line in [
            r#"switchboard_site_devices{site="acme/hq"} 1"#,
            r#"switchboard_site_devices_registered{site="acme/hq"} 0"#,
            r#"switchboard_sip_registration_phase{phase="Failed",registration="acme/trunk"} 1"#,
            r#"switchboard_sip_registration_phase{phase="Successful",registration="acme/trunk"} 0"#,
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        // A replica that stops leading drops them.
        m.clear_inventory();
        assert!(!m.render().contains("switchboard_site_devices{"));
    }
}
