//! The status reporter: writes live state back into the resources.
//!
//! - `SipDevice.status.registration` from the location store's binding changes (first
//!   registration, new or removed contact, unregistration, expiry): [`StatusHandle::device_bindings`].
//! - `SipRegistration.status` phase fields from the outbound registrations (`crate::uac`):
//!   [`StatusHandle::registration`].
//!
//! Both go through one writer: a pure coalescing map ([`queue::Coalescer`], the latest desired
//! state per resource; a refresh that only moves an expiry writes nothing) drained by one task
//! at the pace of a token bucket ([`queue::TokenBucket`], `rate` writes/s, `burst`), which does
//! the server-side-apply PATCH of the status subresource under field manager
//! `switchboard-registrar` ([`writer::KubeSink`]). A device's apply also carries its
//! `Registered` condition (`lastTransitionTime` moves only when the state flips); the
//! conditions are a list-map keyed by `type`, so that entry is the registrar's alone and the
//! operator's `Accepted`/`Ready` are never sent. Without a cluster the reporter is not started
//! and the handle is simply absent.

pub mod desired;
pub mod feed;
pub mod queue;
pub mod restart;
pub mod writer;

pub use desired::{Desired, DeviceStatus, Key, Kind};
pub use queue::{Coalescer, Counters, Offer, TokenBucket};
pub use writer::{KubeSink, StatusSink, WriteError, FIELD_MANAGER};

use crate::metrics::Metrics;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;
use switchboard_crds::device::ContactStatus;
use switchboard_crds::registration::SipRegistrationStatus;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Reporter settings.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusSettings {
    /// Sustained API calls per second (status PATCHes and Events together).
    pub rate: f64,
    /// Calls allowed at once after a quiet period.
    pub burst: u32,
    /// This replica's name (pod name), written into contacts and registrations.
    pub replica: Option<String>,
    /// Longest pause after failed writes (the API server is down).
    pub max_retry_delay: Duration,
}

/// Status writes per second by default. Each registration that flips writes twice (a status
/// PATCH and an Event): 20/s made 10 000 phones registering at once take 17 minutes to all show
/// Registered, 100/s about 3 (`benches/status_burst.rs`); on a real API server 1 000 phones at
/// once took 18.7 s at 100/s with the API server's p99 at 50 ms, hence 250/s.
pub const DEFAULT_RATE: f64 = 250.0;
/// Status writes allowed at once after a quiet period, by default.
pub const DEFAULT_BURST: u32 = 500;

impl Default for StatusSettings {
    fn default() -> Self {
        StatusSettings {
            rate: DEFAULT_RATE,
            burst: DEFAULT_BURST,
            replica: None,
            max_retry_delay: Duration::from_secs(30),
        }
    }
}

struct Shared {
    queue: Mutex<Coalescer>,
    wake: Notify,
    replica: Option<String>,
}

/// Where binding changes and registration phases are handed in; cheap to clone, never blocks.
#[derive(Clone)]
pub struct StatusHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for StatusHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusHandle")
            .field("replica", &self.shared.replica)
            .finish()
    }
}

/// The writer task's half.
pub struct Reporter {
    shared: Arc<Shared>,
    settings: StatusSettings,
    metrics: Option<Arc<Metrics>>,
}

/// Makes a handle and the reporter that drains it.
pub fn reporter(settings: StatusSettings) -> (StatusHandle, Reporter) {
    let shared = Arc::new(Shared {
        queue: Mutex::new(Coalescer::new()),
        wake: Notify::new(),
        replica: settings.replica.clone(),
    });
    (
        StatusHandle {
            shared: shared.clone(),
        },
        Reporter {
            shared,
            settings,
            metrics: None,
        },
    )
}

fn now_time() -> Time {
    Time(Timestamp::now())
}

impl StatusHandle {
    /// The device `id` (`namespace/name`) now has exactly these live contacts (empty:
    /// unregistered or expired). Contacts without a replica get this replica's name.
    pub fn device_bindings(&self, id: &str, mut contacts: Vec<ContactStatus>) -> Offer {
        let Some(key) = Key::parse(Kind::Device, id) else {
            tracing::warn!(
                device = id,
                "device id is not namespace/name; status not written"
            );
            return Offer::Unchanged;
        };
        for c in &mut contacts {
            if c.replica.is_none() {
                c.replica = self.shared.replica.clone();
            }
        }
        self.offer(
            key,
            Desired::Device(desired::device_status(contacts, now_time())),
        )
    }

    /// The SipRegistration `id` has this phase status (conditions and observedGeneration
    /// are ignored: they are the operator's). The replica is filled in.
    pub fn registration(&self, id: &str, mut status: SipRegistrationStatus) -> Offer {
        let Some(key) = Key::parse(Kind::Registration, id) else {
            tracing::warn!(
                registration = id,
                "registration id is not namespace/name; status not written"
            );
            return Offer::Unchanged;
        };
        status.conditions.clear();
        status.observed_generation = None;
        if status.replica.is_none() {
            status.replica = self.shared.replica.clone();
        }
        self.offer(key, Desired::Registration(status))
    }

    fn offer(&self, key: Key, desired: Desired) -> Offer {
        let r = self.shared.queue.lock().offer(key, desired);
        if matches!(r, Offer::Queued | Offer::Coalesced) {
            self.shared.wake.notify_one();
        }
        r
    }

    /// Records the status a resource already has in the API (see [`Coalescer::prime`]).
    pub fn prime(&self, key: Key, desired: Desired) {
        self.shared.queue.lock().prime(key, desired);
    }

    /// Reads every SipDevice's and SipRegistration's current registrar-owned status (paged
    /// LISTs) and primes the queue with it: after a restart, phones that come back unchanged
    /// write nothing, Events fire only on real flips, and a `Registered` condition keeps its
    /// transition time. A device whose status lacks that condition (written before the
    /// registrar wrote it) is written once, on its next offer. Returns how many were primed.
    pub async fn prime_from_cluster(&self, client: &kube::Client) -> Result<usize, kube::Error> {
        use kube::api::{Api, ListParams};
        use kube::ResourceExt;
        use switchboard_crds::{SipDevice, SipRegistration};
        let mut n = 0;
        let devices: Api<SipDevice> = Api::all(client.clone());
        let mut lp = ListParams::default().limit(500);
        loop {
            let page = devices.list(&lp).await?;
            for d in &page.items {
                if let (Some(ns), Some(dev)) = (
                    d.namespace(),
                    d.status.as_ref().and_then(DeviceStatus::from_api),
                ) {
                    self.prime(
                        Key {
                            kind: Kind::Device,
                            namespace: ns,
                            name: d.name_any(),
                        },
                        Desired::Device(dev),
                    );
                    n += 1;
                }
            }
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(c) => lp = lp.continue_token(&c),
                None => break,
            }
        }
        let regs: Api<SipRegistration> = Api::all(client.clone());
        for r in regs.list(&ListParams::default()).await?.items {
            if let (Some(ns), Some(st)) = (r.namespace(), r.status.clone()) {
                if st.phase.is_some() {
                    let mut st = st;
                    st.conditions.clear();
                    st.observed_generation = None;
                    self.prime(
                        Key {
                            kind: Kind::Registration,
                            namespace: ns,
                            name: r.name_any(),
                        },
                        Desired::Registration(st),
                    );
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    /// The latest registrar-owned status known of SipRegistration `id` (read from the API at
    /// start, or offered since).
    pub fn registration_status(&self, id: &str) -> Option<SipRegistrationStatus> {
        let key = Key::parse(Kind::Registration, id)?;
        match self.shared.queue.lock().latest(&key)? {
            Desired::Registration(st) => Some(st.clone()),
            Desired::Device(_) => None,
        }
    }

    /// This replica's name, as written into statuses.
    pub fn replica(&self) -> Option<String> {
        self.shared.replica.clone()
    }

    /// Writes waiting.
    pub fn pending(&self) -> usize {
        self.shared.queue.lock().pending_len()
    }

    /// Counters so far.
    pub fn counters(&self) -> Counters {
        self.shared.queue.lock().counters()
    }
}

impl Reporter {
    /// Counts writes and the backlog into `metrics` (`switchboard_status_writes_*`).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Records a write's result, then updates the queue with `update` and records the backlog
    /// left (counted first, so whoever sees the queue's counters move sees this one too).
    fn settle(&self, result: &str, update: impl FnOnce(&mut Coalescer)) {
        if let Some(m) = &self.metrics {
            m.status_writes.with_label_values(&[result]).inc();
        }
        let mut queue = self.shared.queue.lock();
        update(&mut queue);
        if let Some(m) = &self.metrics {
            m.status_pending.set(queue.pending_len() as i64);
        }
    }

    /// Drains the queue into `sink` forever, at the configured rate. Abort the task to stop.
    pub async fn run<S: StatusSink>(self, sink: S) {
        let mut bucket = TokenBucket::new(self.settings.rate, self.settings.burst, Instant::now());
        let mut failures: u32 = 0;
        loop {
            while !self.shared.queue.lock().has_pending() {
                self.shared.wake.notified().await;
            }
            while let Some(wait) = bucket.take(Instant::now()) {
                tokio::time::sleep(wait).await;
            }
            // Popped only now, so whatever arrived while waiting for the token is included.
            let Some((key, desired, previous)) = self.shared.queue.lock().pop() else {
                continue;
            };
            match sink.write(&key, &desired, previous.as_ref()).await {
                Ok(calls) => {
                    failures = 0;
                    if calls > 1 {
                        bucket.charge(Instant::now(), calls - 1);
                    }
                    tracing::debug!(resource = %key, "status written");
                    self.settle("written", |q| q.written(key, desired));
                }
                Err(WriteError::Gone(what)) => {
                    tracing::debug!(resource = %what, "resource gone; status dropped");
                    self.settle("gone", |q| q.forget(&key));
                }
                Err(e @ WriteError::Transient(..)) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(error = %e, "status write failed; will retry");
                    self.settle("failed", |q| q.retry(key, desired));
                    let delay = Duration::from_millis(250)
                        .saturating_mul(1 << failures.min(10))
                        .min(self.settings.max_retry_delay);
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}

/// Starts the reporter against the cluster: primes it with the statuses the API holds (a
/// failure there is logged, not fatal), spawns the writer task and returns the handle.
pub async fn start(
    client: kube::Client,
    settings: StatusSettings,
    metrics: Arc<Metrics>,
) -> (StatusHandle, tokio::task::JoinHandle<()>) {
    let sink = KubeSink::new(client.clone(), settings.replica.clone());
    let (handle, reporter) = reporter(settings);
    let reporter = reporter.with_metrics(metrics);
    match handle.prime_from_cluster(&client).await {
        Ok(n) => tracing::info!(primed = n, "status reporter read the current statuses"),
        Err(e) => tracing::warn!(
            error = %e,
            "could not read current statuses; the first change of each resource will be written"
        ),
    }
    tracing::info!(
        rate = reporter.settings.rate,
        burst = reporter.settings.burst,
        "status reporter started"
    );
    (handle, tokio::spawn(reporter.run(sink)))
}

/// What the runtime calls when it has a cluster: primes from the API, spawns the writer and
/// the feed from the registrar's change events (`Service::subscribe`), which corrects what a
/// restart made stale (`after_start`, then after `settle`), and returns the handle to give the
/// outbound registrations (`uac::follow_config`). Standalone, call nothing: the reporter is
/// simply not there (log it).
pub async fn run_with_cluster(
    client: kube::Client,
    settings: StatusSettings,
    metrics: Arc<Metrics>,
    events: tokio::sync::broadcast::Receiver<crate::registrar::events::RegistrationEvent>,
    store: Arc<dyn crate::location::LocationStore>,
    settle: Duration,
    after_start: feed::AfterStart,
) -> StatusHandle {
    let (handle, _writer) = start(client, settings, metrics).await;
    tokio::spawn(feed::follow(
        handle.clone(),
        events,
        store,
        settle,
        after_start,
    ));
    handle
}
