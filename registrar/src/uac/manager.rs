//! Supervises one task per outbound registration: diffs each config reload against what
//! runs (added → start, removed → unregister and stop, changed → unregister, then start
//! anew), records every registration's live state in the [`UacIndex`], forwards it to the
//! status reporter (or only to the log, standalone), and hands phase changes to the
//! registration's callback task (`crate::callback`), which runs beside its SIP task.

use super::client::{self, ClientSettings, NotifyReport, Report, ReportFn, Update};
pub use super::index::{RegistrationView, UacIndex};
use crate::callback::payload::{ObjectRef, PhaseChange};
use crate::callback::{self, HttpClient};
use crate::cluster::Cluster;
use crate::status::StatusHandle;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use switchboard_crds::config::OutboundRegistration;
use switchboard_crds::registration::{CallbackStatus, RegistrationPhase, SipRegistrationStatus};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Where each registration's phase changes go, by id (those with a callback).
type CallbackQueues = Arc<Mutex<HashMap<String, mpsc::Sender<PhaseChange>>>>;

/// What the tasks report into: the index, the status reporter, the callback queues.
#[derive(Clone)]
struct Sink {
    index: UacIndex,
    status: Option<StatusHandle>,
    callbacks: CallbackQueues,
    replica: Option<String>,
}

impl Sink {
    fn write(&self, id: &str, st: SipRegistrationStatus) {
        if let Some(s) = &self.status {
            s.registration(id, st);
        }
    }

    fn update(&self, u: Update) {
        match u {
            Update::Outcome(r) => self.outcome(r),
            Update::Notify(n) => self.notify(&n),
        }
    }

    fn outcome(&self, r: Report) {
        let Some((before, st)) = self.index.record(&r) else {
            return;
        };
        let o = &r.outcome;
        if let super::sip::Method::Subscribe(p) = r.method {
            if o.phase == RegistrationPhase::Failed {
                tracing::warn!(registration = %r.id, event = p.event(), reason = %o.reason, "presence subscription failed");
            } else {
                tracing::debug!(registration = %r.id, event = p.event(), reason = %o.reason, "presence subscription");
            }
            return self.write(&r.id, st);
        }
        if before != o.phase {
            match o.phase {
                RegistrationPhase::Failed => {
                    tracing::warn!(registration = %r.id, phase = ?o.phase, code = ?o.code, reason = %o.reason, "outbound registration phase")
                }
                _ => {
                    tracing::info!(registration = %r.id, phase = ?o.phase, code = ?o.code, reason = %o.reason, "outbound registration phase")
                }
            }
            self.phase_changed(&r, before);
        } else {
            tracing::debug!(registration = %r.id, phase = ?o.phase, code = ?o.code, reason = %o.reason, "outbound registration");
        }
        self.write(&r.id, st);
    }

    fn phase_changed(&self, r: &Report, before: RegistrationPhase) {
        let Some(queue) = self.callbacks.lock().get(&r.id).cloned() else {
            return;
        };
        let change = PhaseChange {
            registration: ObjectRef::from_id(&r.id),
            old_phase: Some(before),
            new_phase: r.outcome.phase,
            status_code: r.outcome.code,
            reason: r.outcome.reason.clone(),
            time: super::index::time(SystemTime::now()).0.to_string(),
            replica: self.replica.clone(),
        };
        if queue.try_send(change).is_err() {
            tracing::warn!(registration = %r.id, "callback queue full: this phase change is not delivered");
        }
    }

    fn notify(&self, n: &NotifyReport) {
        tracing::debug!(registration = %n.id, event = n.package.event(), state = ?n.state, entity = ?n.entity, "NOTIFY");
        if let Some(st) = self.index.record_notify(n, SystemTime::now()) {
            self.write(&n.id, st);
        }
    }

    fn callback(&self, id: &str, cb: CallbackStatus) {
        if let Some(st) = self.index.record_callback(id, cb) {
            self.write(id, st);
        }
    }
}

struct Running {
    reg: OutboundRegistration,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    /// Its callback delivery, if it has a callback; aborted with it.
    callback: Option<JoinHandle<()>>,
}

impl Running {
    fn end_callback(&mut self, callbacks: &CallbackQueues) {
        callbacks.lock().remove(&self.reg.id);
        if let Some(t) = self.callback.take() {
            t.abort();
        }
    }
}

/// The supervisor.
pub struct Manager {
    settings: Arc<ClientSettings>,
    cluster: Cluster,
    index: UacIndex,
    sink: Sink,
    report: ReportFn,
    running: HashMap<String, Running>,
    stopping: Vec<JoinHandle<()>>,
    http: Option<HttpClient>,
}

/// Same registration apart from where its calls go and its callback (which need no
/// re-registration).
fn same_upstream(a: &OutboundRegistration, b: &OutboundRegistration) -> bool {
    let mut a = a.clone();
    a.target = b.target.clone();
    a.callback = b.callback.clone();
    &a == b
}

impl Manager {
    /// A manager with nothing running. Reports go to the log, the index, and `status`
    /// when there is a cluster.
    pub fn new(settings: ClientSettings, status: Option<StatusHandle>, index: UacIndex) -> Manager {
        let sink = Sink {
            index: index.clone(),
            replica: status.as_ref().and_then(StatusHandle::replica),
            status,
            callbacks: CallbackQueues::default(),
        };
        let s = sink.clone();
        let report: ReportFn = Arc::new(move |u: Update| s.update(u));
        Manager {
            settings: Arc::new(settings),
            cluster: Cluster::alone("standalone"),
            index,
            sink,
            report,
            running: HashMap::new(),
            stopping: Vec::new(),
            http: None,
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
                let mut r = self.running.remove(&id).expect("running");
                tracing::info!(registration = %id, owner = %self.cluster.owner(&id), "registration handed over to another replica");
                r.task.abort();
                r.end_callback(&self.sink.callbacks);
                self.index.remove(&id);
            } else if !configured.contains_key(id.as_str()) {
                let mut r = self.running.remove(&id).expect("running");
                tracing::info!(registration = %id, "registration removed from config: unregistering");
                r.end_callback(&self.sink.callbacks);
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
                    if r.reg.callback != reg.callback {
                        r.end_callback(&self.sink.callbacks);
                        r.callback = self.start_callback(reg);
                    }
                    r.reg = reg.clone();
                    self.index.upsert(reg);
                    self.running.insert(reg.id.clone(), r);
                }
                Some(mut r) => {
                    tracing::info!(registration = %reg.id, "registration changed: re-registering");
                    r.end_callback(&self.sink.callbacks);
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
        if let Some(known) = self
            .sink
            .status
            .as_ref()
            .and_then(|s| s.registration_status(&reg.id))
            .and_then(|st| st.callback)
        {
            self.index.seed_callback(&reg.id, known);
        }
        // Before the SIP task, so its first phase change finds the queue.
        let callback = self.start_callback(&reg);
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
                callback,
            },
        );
    }

    /// Starts the delivery task of `reg`'s callback, if it has one.
    fn start_callback(&mut self, reg: &OutboundRegistration) -> Option<JoinHandle<()>> {
        let target = reg.callback.clone()?;
        let http = match &self.http {
            Some(c) => c.clone(),
            None => {
                let tls = match &self.settings.tls {
                    Some(t) => t.clone(),
                    None => match super::flow::tls_client_config(&[]) {
                        Ok(t) => t,
                        Err(e) => {
                            tracing::error!(error = %e, "no TLS client for callbacks");
                            return None;
                        }
                    },
                };
                self.http.insert(callback::http_client(tls)).clone()
            }
        };
        let (tx, rx) = mpsc::channel(callback::QUEUE);
        self.sink.callbacks.lock().insert(reg.id.clone(), tx);
        let sink = self.sink.clone();
        let id = reg.id.clone();
        let on_status: callback::StatusFn = Arc::new(move |st, _gave_up| sink.callback(&id, st));
        Some(tokio::spawn(callback::run(
            reg.id.clone(),
            target,
            self.settings.callback.clone(),
            http,
            rx,
            on_status,
        )))
    }

    /// Unregisters everything and waits for it, at most `grace`; with live siblings, hands
    /// everything over instead (they take it within [`crate::cluster::DEAD_AFTER`]).
    pub async fn shutdown(mut self, grace: Duration) {
        if self.cluster.live_replicas().len() > 1 {
            tracing::info!(
                registrations = self.running.len(),
                "shutting down: outbound registrations left to the other replicas"
            );
            for (_, mut r) in self.running.drain() {
                r.task.abort();
                r.end_callback(&self.sink.callbacks);
            }
        }
        for (_, mut r) in self.running.drain() {
            r.end_callback(&self.sink.callbacks);
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
