//! Supervises one task per outbound registration: diffs each config reload against what
//! runs (added → start, removed → unregister and stop, changed → unregister, then start
//! anew), keeps an index of every registration's live state (for `/debug/registrations` and
//! for routing calls that arrive through a registration to its target), and forwards phase
//! changes to the status reporter (or only to the log, standalone).

use super::client::{self, ClientSettings, Report, ReportFn};
use super::sip::Method;
use crate::cluster::Cluster;
use crate::status::StatusHandle;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use parking_lot::RwLock;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use switchboard_crds::common::Transport;
use switchboard_crds::config::OutboundRegistration;
use switchboard_crds::registration::{
    RegistrationPhase, RegistrationTarget, SipRegistrationStatus,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// One registration as seen from outside.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RegistrationView {
    /// `namespace/name`.
    pub id: String,
    /// Address of record.
    pub aor: String,
    /// User part registered (and of the Contact).
    pub username: String,
    /// `host:port`.
    pub upstream: String,
    /// Transport.
    pub transport: Transport,
    /// Where calls arriving through it go.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<RegistrationTarget>,
    /// Phase.
    pub phase: RegistrationPhase,
    /// Last status code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_status_code: Option<u16>,
    /// Last reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_reason: Option<String>,
    /// Last attempt (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_attempt_time: Option<String>,
    /// Expiry of the upstream binding (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_time: Option<String>,
    /// Contact registered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contact: Option<String>,
    /// Presence subscription state (`"200 OK"`, `"489 Bad Event"`…), when subscribing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscription: Option<String>,
}

/// The live state of every outbound registration; cheap to clone.
#[derive(Clone, Default, Debug)]
pub struct UacIndex {
    inner: Arc<RwLock<BTreeMap<String, RegistrationView>>>,
}

impl UacIndex {
    /// Every registration, by id.
    pub fn snapshot(&self) -> Vec<RegistrationView> {
        self.inner.read().values().cloned().collect()
    }

    /// One registration.
    pub fn get(&self, id: &str) -> Option<RegistrationView> {
        self.inner.read().get(id).cloned()
    }

    /// The `/debug/registrations` document.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "registrations": self.snapshot() })
    }

    /// The registration whose Contact user is `user` (a call from upstream is addressed to
    /// it), with its target: how the proxy routes calls that arrive through a registration.
    pub fn target_for_user(&self, user: &str) -> Option<(String, Option<RegistrationTarget>)> {
        self.inner
            .read()
            .values()
            .find(|v| v.username == user)
            .map(|v| (v.id.clone(), v.target.clone()))
    }

    fn upsert(&self, reg: &OutboundRegistration) {
        let mut m = self.inner.write();
        let view = m.entry(reg.id.clone()).or_insert_with(|| RegistrationView {
            id: reg.id.clone(),
            aor: String::new(),
            username: String::new(),
            upstream: String::new(),
            transport: reg.transport,
            target: None,
            phase: RegistrationPhase::InProgress,
            last_status_code: None,
            last_reason: None,
            last_attempt_time: None,
            expires_time: None,
            contact: None,
            subscription: None,
        });
        view.aor = reg.aor.clone();
        view.username = reg.username.clone();
        view.upstream = format!("{}:{}", reg.host, reg.port);
        view.transport = reg.transport;
        view.target = reg.target.clone();
    }

    fn remove(&self, id: &str) {
        self.inner.write().remove(id);
    }

    /// Applies a report; returns the previous phase.
    fn record(&self, r: &Report) -> Option<RegistrationPhase> {
        let mut m = self.inner.write();
        let v = m.get_mut(&r.id)?;
        if r.method == Method::Subscribe {
            v.subscription = Some(r.outcome.reason.clone());
            return Some(v.phase);
        }
        let before = v.phase;
        v.phase = r.outcome.phase;
        v.last_status_code = r.outcome.code;
        v.last_reason = Some(r.outcome.reason.clone());
        v.last_attempt_time = Some(rfc3339(r.attempt_time));
        v.expires_time = r.expires_time.map(rfc3339);
        if r.contact.is_some() {
            v.contact = r.contact.clone();
        }
        Some(before)
    }
}

fn timestamp(t: SystemTime) -> Timestamp {
    Timestamp::try_from(t).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn rfc3339(t: SystemTime) -> String {
    timestamp(t).to_string()
}

/// The SipRegistration status fields a report stands for.
pub fn status_of(r: &Report) -> SipRegistrationStatus {
    SipRegistrationStatus {
        phase: Some(r.outcome.phase),
        last_status_code: r.outcome.code,
        last_reason: Some(r.outcome.reason.clone()),
        last_attempt_time: Some(Time(timestamp(r.attempt_time))),
        expires_time: r.expires_time.map(|t| Time(timestamp(t))),
        ..Default::default()
    }
}

struct Running {
    reg: OutboundRegistration,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// The supervisor.
pub struct Manager {
    settings: Arc<ClientSettings>,
    cluster: Cluster,
    index: UacIndex,
    report: ReportFn,
    running: HashMap<String, Running>,
    stopping: Vec<JoinHandle<()>>,
}

/// Same registration apart from where its calls go (which needs no re-registration).
fn same_upstream(a: &OutboundRegistration, b: &OutboundRegistration) -> bool {
    let mut a = a.clone();
    a.target = b.target.clone();
    &a == b
}

impl Manager {
    /// A manager with nothing running. Reports go to the log, the index, and `status`
    /// when there is a cluster.
    pub fn new(settings: ClientSettings, status: Option<StatusHandle>, index: UacIndex) -> Manager {
        let idx = index.clone();
        let report: ReportFn = Arc::new(move |r: Report| {
            let before = idx.record(&r);
            let o = &r.outcome;
            if r.method == Method::Subscribe {
                if o.phase == RegistrationPhase::Failed {
                    tracing::warn!(registration = %r.id, reason = %o.reason, "presence subscription failed");
                } else {
                    tracing::debug!(registration = %r.id, reason = %o.reason, "presence subscription");
                }
                return;
            }
            if before != Some(o.phase) {
                match o.phase {
                    RegistrationPhase::Failed => {
                        tracing::warn!(registration = %r.id, phase = ?o.phase, code = ?o.code, reason = %o.reason, "outbound registration phase")
                    }
                    _ => {
                        tracing::info!(registration = %r.id, phase = ?o.phase, code = ?o.code, reason = %o.reason, "outbound registration phase")
                    }
                }
            } else {
                tracing::debug!(registration = %r.id, phase = ?o.phase, code = ?o.code, reason = %o.reason, "outbound registration");
            }
            if let Some(s) = &status {
                s.registration(&r.id, status_of(&r));
            }
        });
        Manager {
            settings: Arc::new(settings),
            cluster: Cluster::alone("standalone"),
            index,
            report,
            running: HashMap::new(),
            stopping: Vec::new(),
        }
    }

    /// Runs only the registrations `cluster` says this replica owns; the others are left to
    /// their owners (by default, alone, it owns them all).
    pub fn owned_by(mut self, cluster: Cluster) -> Manager {
        self.cluster = cluster;
        self
    }

    /// The index of live state.
    pub fn index(&self) -> &UacIndex {
        &self.index
    }

    /// Ids running now.
    pub fn running(&self) -> Vec<String> {
        let mut v: Vec<_> = self.running.keys().cloned().collect();
        v.sort();
        v
    }

    /// Makes the running set match the registrations of `regs` this replica owns.
    pub fn apply(&mut self, regs: &[OutboundRegistration]) {
        self.stopping.retain(|h| !h.is_finished());
        let configured: HashMap<&str, &OutboundRegistration> =
            regs.iter().map(|r| (r.id.as_str(), r)).collect();
        let regs: Vec<&OutboundRegistration> =
            regs.iter().filter(|r| self.cluster.owns(&r.id)).collect();
        let ids: Vec<String> = self.running.keys().cloned().collect();
        for id in ids {
            if configured.contains_key(id.as_str()) && !self.cluster.owns(&id) {
                // Another replica owns it now; its first REGISTER replaces our Contact, so
                // ours is not removed (that would leave a gap, or race its REGISTER).
                let r = self.running.remove(&id).expect("running");
                tracing::info!(registration = %id, owner = %self.cluster.owner(&id), "registration handed over to another replica");
                r.task.abort();
                self.index.remove(&id);
            } else if !configured.contains_key(id.as_str()) {
                let r = self.running.remove(&id).expect("running");
                tracing::info!(registration = %id, "registration removed from config: unregistering");
                let _ = r.stop.send(true);
                self.stopping.push(r.task);
                self.index.remove(&id);
            }
        }
        for reg in regs {
            match self.running.remove(&reg.id) {
                None => self.start(reg.clone(), None),
                Some(r) if r.reg == *reg => {
                    self.running.insert(reg.id.clone(), r);
                }
                Some(mut r) if same_upstream(&r.reg, reg) => {
                    r.reg = reg.clone();
                    self.index.upsert(reg);
                    self.running.insert(reg.id.clone(), r);
                }
                Some(r) => {
                    tracing::info!(registration = %reg.id, "registration changed: re-registering");
                    let _ = r.stop.send(true);
                    // The new one starts once the old one has unregistered, or its Expires: 0
                    // could land after the new binding and remove it.
                    self.start(reg.clone(), Some(r.task));
                }
            }
        }
    }

    fn start(&mut self, reg: OutboundRegistration, previous: Option<JoinHandle<()>>) {
        self.index.upsert(&reg);
        let (stop_tx, stop_rx) = watch::channel(false);
        let settings = self.settings.clone();
        let report = self.report.clone();
        let grace = settings.transaction_timeout * 2 + Duration::from_secs(1);
        let r = reg.clone();
        let task = tokio::spawn(async move {
            if let Some(prev) = previous {
                let _ = tokio::time::timeout(grace, prev).await;
            }
            client::run(r, settings, report, stop_rx).await;
        });
        self.running.insert(
            reg.id.clone(),
            Running {
                reg,
                stop: stop_tx,
                task,
            },
        );
    }

    /// Unregisters everything and waits for it, at most `grace`; with live siblings, hands
    /// everything over instead (they take it within [`crate::cluster::DEAD_AFTER`]).
    pub async fn shutdown(mut self, grace: Duration) {
        if self.cluster.live_replicas().len() > 1 {
            tracing::info!(
                registrations = self.running.len(),
                "shutting down: outbound registrations left to the other replicas"
            );
            for (_, r) in self.running.drain() {
                r.task.abort();
            }
        }
        for (_, r) in self.running.drain() {
            let _ = r.stop.send(true);
            self.stopping.push(r.task);
        }
        let all = futures::future::join_all(self.stopping.drain(..));
        if tokio::time::timeout(grace, all).await.is_err() {
            tracing::warn!("some outbound registrations did not unregister in time");
        }
    }
}

/// Runs the outbound registrations: applies every value of `config` (the registrations of
/// the current registrar config) until `shutdown` turns true, then unregisters them all.
pub async fn run(
    settings: ClientSettings,
    status: Option<StatusHandle>,
    index: UacIndex,
    cluster: Cluster,
    mut config: watch::Receiver<Vec<OutboundRegistration>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let grace = settings.transaction_timeout + Duration::from_secs(1);
    let mut members = cluster.subscribe();
    let mut m = Manager::new(settings, status, index).owned_by(cluster);
    m.apply(&config.borrow_and_update().clone());
    loop {
        tokio::select! {
            changed = config.changed() => {
                if changed.is_err() { break; }
                let regs = config.borrow_and_update().clone();
                m.apply(&regs);
            }
            changed = members.changed() => {
                if changed.is_err() { break; }
                members.borrow_and_update();
                let regs = config.borrow().clone();
                m.apply(&regs);
            }
            r = shutdown.wait_for(|s| *s) => { let _ = r; break; }
        }
    }
    m.shutdown(grace).await;
}

/// Runs the outbound registrations of whatever config `config` holds, following every
/// reload (the registrar's hot-swapped [`crate::config::ConfigHandle`]), until `shutdown`.
pub async fn follow_config(
    settings: ClientSettings,
    status: Option<StatusHandle>,
    index: UacIndex,
    cluster: Cluster,
    config: Arc<crate::config::ConfigHandle>,
    shutdown: watch::Receiver<bool>,
) {
    let current = |c: &crate::config::ConfigHandle| {
        c.current()
            .map(|l| l.config.registrations.clone())
            .unwrap_or_default()
    };
    let mut versions = config.subscribe();
    let (tx, rx) = watch::channel(current(&config));
    let bridge = tokio::spawn(async move {
        while versions.changed().await.is_ok() {
            let regs = current(&config);
            tx.send_if_modified(|old| {
                let changed = *old != regs;
                *old = regs;
                changed
            });
        }
    });
    run(settings, status, index, cluster, rx, shutdown).await;
    bridge.abort();
}
