//! The writer task: the pass plans writes, this task makes them, so that one object or one
//! namespace that cannot be written never holds up the others or the config.
//!
//! Jobs are kept per object: a newer job for an object replaces the one waiting (a status is
//! coalesced to its latest); a job for an object whose write is in flight waits behind it. A
//! few writes run at once. A failed write is retried with its own exponential backoff (1 s, up
//! to a minute), counted per namespace, and reported back once per distinct error; a 404 drops
//! it (the object is gone). Nothing is written while the [`Fence`] is shut: the writer waits
//! for leadership instead of dropping its queue, and the next leader plans afresh anyway.

use super::leader::Fence;
use super::metrics::Metrics;
use crate::companions::{self, CompanionWrite};
use crate::credentials::plan::SecretWrite;
use crate::events;
use crate::key::ObjectKey;
use crate::status::{self, Update};
use crate::MANAGER;
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use kube::api::{Patch, PatchParams};
use kube::runtime::events::Recorder;
use kube::{Api, Client, ResourceExt};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchboard_crds::SipDevice;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Writes made at once.
const IN_FLIGHT: usize = 8;
/// First retry delay; doubles per failure.
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// Longest retry delay.
const MAX_RETRY: Duration = Duration::from_secs(60);

/// One write the pass wants made.
#[derive(Clone, Debug)]
pub enum Job {
    /// A status apply (and its Events).
    Status(Update),
    /// A generated credentials Secret, with the owner's reference for its Event.
    Credentials(Box<SecretWrite>, Option<ObjectReference>),
    /// A Site's companion device, with the Site's reference for its Event.
    Companion(Box<CompanionWrite>, Option<ObjectReference>),
}

/// Which object a job writes: at most one job per key waits, at most one runs.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JobKey {
    /// An object's status.
    Status(&'static str, ObjectKey),
    /// The credentials Secret of an owner.
    Credentials(ObjectKey),
    /// A companion device.
    Companion(ObjectKey),
}

impl JobKey {
    /// The key of the write an applied status came from.
    pub fn of_applied(applied: &status::Applied) -> JobKey {
        match applied {
            status::Applied::Device(key, _) => JobKey::Status("sipdevices", key.clone()),
            status::Applied::Object(u) => JobKey::Status(u.plural, u.key.clone()),
        }
    }
}

impl Job {
    /// The object it writes.
    pub fn key(&self) -> JobKey {
        match self {
            Job::Status(u) => JobKey::Status(u.plural, u.key.clone()),
            Job::Credentials(w, _) => JobKey::Credentials(w.owner.clone()),
            Job::Companion(w, _) => JobKey::Companion(w.device()),
        }
    }

    fn namespace(&self) -> &str {
        match self {
            Job::Status(u) => &u.key.namespace,
            Job::Credentials(w, _) => &w.owner.namespace,
            Job::Companion(w, _) => &w.site().namespace,
        }
    }
}

/// What the writer tells the runtime.
#[derive(Debug)]
pub enum Outcome {
    /// A status was applied: fold it into the index.
    Status(status::Applied),
    /// A credentials Secret was written (as stored): fold it into the index.
    Credentials(ObjectKey, Box<Secret>),
    /// A companion device was written (as stored after an apply): fold it into the index.
    Companion(ObjectKey, Option<Box<SipDevice>>),
    /// A write failed (it is retried); `error` says why, in words for a condition.
    Failed(JobKey, String),
}

/// What the runtime sends the task.
enum Msg {
    Job(Box<Job>),
    /// Forget every waiting job (leadership lost: a later leader plans afresh).
    Clear,
}

/// The handle the runtime keeps.
#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::UnboundedSender<Msg>,
    queued: Arc<Mutex<HashSet<JobKey>>>,
}

impl Writer {
    /// Queues `job` (replacing a waiting job for the same object).
    pub fn submit(&self, job: Job) {
        self.queued.lock().expect("writer lock").insert(job.key());
        // The task ends only with the runtime; a send after that changes nothing.
        let _ = self.jobs.send(Msg::Job(Box::new(job)));
    }

    /// Drops every waiting job; writes under way finish (they are fenced anyway).
    pub fn clear(&self) {
        let _ = self.jobs.send(Msg::Clear);
    }

    /// Whether nothing waits or runs.
    pub fn is_idle(&self) -> bool {
        self.queued.lock().expect("writer lock").is_empty()
    }

    /// Whether a write of `key` waits or runs.
    pub fn is_queued(&self, key: &JobKey) -> bool {
        self.queued.lock().expect("writer lock").contains(key)
    }
}

/// What the task needs to write.
pub struct Io {
    /// The API client.
    pub client: Client,
    /// Publishes Events.
    pub recorder: Recorder,
    /// Metrics (writes, failures per namespace).
    pub metrics: Metrics,
    /// Open while writes are allowed.
    pub fence: Fence,
}

/// Starts the writer task; outcomes go to `outcomes`.
pub fn spawn(io: Io, outcomes: mpsc::UnboundedSender<Outcome>) -> Writer {
    let (jobs, rx) = mpsc::unbounded_channel();
    let queued = Arc::new(Mutex::new(HashSet::new()));
    let task = Task {
        io: Arc::new(io),
        outcomes,
        queued: queued.clone(),
        waiting: BTreeMap::new(),
        running: HashMap::new(),
        errors: HashMap::new(),
    };
    tokio::spawn(task.run(rx));
    Writer { jobs, queued }
}

struct Waiting {
    job: Job,
    failures: u32,
    not_before: Instant,
}

struct Task {
    io: Arc<Io>,
    outcomes: mpsc::UnboundedSender<Outcome>,
    queued: Arc<Mutex<HashSet<JobKey>>>,
    waiting: BTreeMap<JobKey, Waiting>,
    /// Keys being written, with the job that arrived meanwhile.
    running: HashMap<JobKey, Option<Job>>,
    /// The last error reported per key, so each distinct one is reported once.
    errors: HashMap<JobKey, String>,
}

type Done = (Job, u32, Result<Outcome, WriteError>);
type Inflight = FuturesUnordered<BoxFuture<'static, Done>>;

/// Why a write was not made.
#[derive(Debug)]
enum WriteError {
    /// The object is gone (404): nothing to retry.
    Gone,
    /// Not the leader any more: kept, unchanged, for when leadership returns.
    Fenced,
    /// Anything else: retried with backoff.
    Failed(String),
}

fn backoff(failures: u32) -> Duration {
    FIRST_RETRY
        .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
        .min(MAX_RETRY)
}

impl Task {
    async fn run(mut self, mut jobs: mpsc::UnboundedReceiver<Msg>) {
        let mut inflight: Inflight = FuturesUnordered::new();
        loop {
            self.dispatch(&mut inflight);
            let wake = self.next_wake();
            tokio::select! {
                msg = jobs.recv() => match msg {
                    Some(Msg::Job(job)) => self.accept(*job, 0, Instant::now()),
                    Some(Msg::Clear) => self.clear(),
                    None => return,
                },
                Some(done) = inflight.next(), if !inflight.is_empty() => self.finish(done),
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    fn clear(&mut self) {
        let mut queued = self.queued.lock().expect("writer lock");
        for key in std::mem::take(&mut self.waiting).into_keys() {
            queued.remove(&key);
        }
        for next in self.running.values_mut() {
            *next = None;
        }
        self.errors.clear();
    }

    /// Queues `job` to run from `not_before`, unless the same object's write runs now.
    fn accept(&mut self, job: Job, failures: u32, not_before: Instant) {
        let key = job.key();
        if let Some(next) = self.running.get_mut(&key) {
            *next = Some(job);
            return;
        }
        // A replaced job keeps its backoff, so a failing object is not hammered.
        let (failures, not_before) = match self.waiting.get(&key) {
            Some(w) => (w.failures.max(failures), w.not_before.max(not_before)),
            None => (failures, not_before),
        };
        self.waiting.insert(
            key,
            Waiting {
                job,
                failures,
                not_before,
            },
        );
    }

    fn finish(&mut self, (job, failures, result): Done) {
        let key = job.key();
        let next = self.running.remove(&key).flatten();
        match result {
            Ok(outcome) => {
                self.errors.remove(&key);
                let _ = self.outcomes.send(outcome);
                if let Some(n) = next {
                    self.accept(n, 0, Instant::now());
                }
            }
            Err(WriteError::Gone) => {
                self.errors.remove(&key);
                if let Some(n) = next {
                    self.accept(n, 0, Instant::now());
                }
            }
            Err(WriteError::Fenced) => self.accept(next.unwrap_or(job), failures, Instant::now()),
            Err(WriteError::Failed(error)) => {
                let namespace = job.namespace().to_string();
                self.io
                    .metrics
                    .write_failures
                    .with_label_values(&[&namespace])
                    .inc();
                if self.errors.get(&key) != Some(&error) {
                    tracing::warn!(object = ?key, %error, "write failed; retrying with backoff");
                    self.errors.insert(key.clone(), error.clone());
                    if let Job::Credentials(w, Some(reference)) = &job {
                        failure_event(&self.io, reference.clone(), w, &error);
                    }
                    let _ = self.outcomes.send(Outcome::Failed(key.clone(), error));
                }
                let failures = failures + 1;
                self.accept(
                    next.unwrap_or(job),
                    failures,
                    Instant::now() + backoff(failures),
                );
            }
        }
        if !self.waiting.contains_key(&key) && !self.running.contains_key(&key) {
            self.queued.lock().expect("writer lock").remove(&key);
        }
    }

    fn next_wake(&self) -> Instant {
        let later = Instant::now() + Duration::from_secs(1);
        if !self.io.fence.allows() {
            return later; // Look again shortly: leadership may come back.
        }
        self.waiting
            .values()
            .map(|w| w.not_before)
            .min()
            .unwrap_or(later)
            .min(later)
    }

    fn dispatch(&mut self, inflight: &mut Inflight) {
        let now = Instant::now();
        while self.running.len() < IN_FLIGHT && self.io.fence.allows() {
            let Some(key) = self
                .waiting
                .iter()
                .find(|(_, w)| w.not_before <= now)
                .map(|(k, _)| k.clone())
            else {
                return;
            };
            let w = self.waiting.remove(&key).expect("just found");
            self.running.insert(key, None);
            let io = self.io.clone();
            inflight.push(Box::pin(async move {
                let result = write(&io, &w.job).await;
                (w.job, w.failures, result)
            }));
        }
    }
}

/// Makes one write.
async fn write(io: &Io, job: &Job) -> Result<Outcome, WriteError> {
    if !io.fence.allows() {
        io.metrics.fenced_writes.inc();
        return Err(WriteError::Fenced);
    }
    match job {
        Job::Status(update) => {
            status::execute(&io.client, &io.recorder, update)
                .await
                .map_err(classify)?;
            io.metrics.status_writes.inc();
            Ok(Outcome::Status(status::Applied::of(update.clone())))
        }
        Job::Credentials(w, reference) => {
            let api: Api<Secret> = Api::namespaced(io.client.clone(), &w.owner.namespace);
            let name = w.secret.name_any();
            let stored = api
                .patch(
                    &name,
                    &PatchParams::apply(MANAGER).force(),
                    &Patch::Apply(&w.secret),
                )
                .await
                .map_err(classify)?;
            tracing::info!(owner = %w.owner, secret = %name, reason = w.reason.as_str(), "credentials written");
            if let Some(reference) = reference {
                credentials_event(&io.recorder, reference, w, &name).await;
            }
            Ok(Outcome::Credentials(w.owner.clone(), Box::new(stored)))
        }
        Job::Companion(w, site) => {
            let stored = companions::write::execute(&io.client, &io.recorder, w, site.as_ref())
                .await
                .map_err(classify)?;
            Ok(Outcome::Companion(w.device(), stored.map(Box::new)))
        }
    }
}

fn classify(e: kube::Error) -> WriteError {
    match e {
        kube::Error::Api(s) if s.code == 404 => WriteError::Gone,
        kube::Error::Api(s) => {
            WriteError::Failed(format!("{} ({} {})", s.message, s.code, s.reason))
        }
        other => WriteError::Failed(other.to_string()),
    }
}

/// The Event of a credentials write; best effort (the Secret is what matters).
async fn credentials_event(
    recorder: &Recorder,
    reference: &ObjectReference,
    w: &SecretWrite,
    name: &str,
) {
    use crate::credentials::plan::Reason;
    let note = match w.reason {
        Reason::Generated => format!("generated SIP credentials in Secret {name}"),
        Reason::Rotated => format!("new password in Secret {name}"),
        Reason::Renamed => format!("SIP user name updated in Secret {name}"),
    };
    events::publish(
        recorder,
        reference,
        false,
        w.reason.as_str(),
        "Credentials",
        note,
    )
    .await;
}

/// A Warning Event on the owner of a credentials Secret that cannot be written; best effort (the
/// namespace that refuses the Secret may refuse the Event too), in the background.
fn failure_event(io: &Arc<Io>, reference: ObjectReference, w: &SecretWrite, error: &str) {
    let note = format!(
        "cannot write Secret {} (retrying): {error}",
        w.secret.name_any()
    );
    let io = io.clone();
    tokio::spawn(async move {
        let reason = "CredentialsNotWritten";
        events::publish(&io.recorder, &reference, true, reason, "Credentials", note).await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_a_second_up_to_a_minute() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(4), Duration::from_secs(8));
        assert_eq!(backoff(7), Duration::from_secs(60));
        assert_eq!(backoff(40), Duration::from_secs(60));
    }
}
