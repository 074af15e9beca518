//! The thin runtime: watch streams feed the index; any change schedules one debounced global
//! pass ([`reconcile::pass`]); only the Lease holder runs passes.

pub mod http;
pub mod leader;
pub mod metrics;
pub mod reconcile;
pub mod watch;
pub mod writer;

use crate::index::{Change, Index, Op};
use crate::status;
use futures::StreamExt;
use kube::runtime::events::Recorder;
use kube::Client;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// What a pass needs from the outside world.
#[derive(Clone)]
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Publishes Events.
    pub recorder: Recorder,
    /// Metrics.
    pub metrics: metrics::Metrics,
    /// Open while this replica leads and may write ([`leader::Fence`]).
    pub fence: leader::Fence,
    /// The namespaces whose Secrets the operator reads (the namespaced install mode); empty:
    /// every namespace.
    pub secret_namespaces: Vec<String>,
}

/// Timing of passes.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// Quiet time after a change before the pass runs.
    pub debounce: Duration,
    /// Longest a pass waits while changes keep coming.
    pub max_delay: Duration,
    /// Retry delay after a failed pass.
    pub retry: Duration,
    /// A pass runs at least this often, to heal anything missed.
    pub resync: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            debounce: Duration::from_millis(200),
            max_delay: Duration::from_secs(1),
            retry: Duration::from_secs(5),
            resync: Duration::from_secs(300),
        }
    }
}

/// The loop's state between events.
struct Loop {
    ctx: Context,
    writer: writer::Writer,
    index: Index,
    memory: reconcile::Memory,
    rng: StdRng,
    timing: Timing,
    first_dirty: Option<Instant>,
    due: Instant,
    /// Objects a pass skipped because their write was queued: once it lands, pass again.
    recheck: HashSet<writer::JobKey>,
}

impl Loop {
    /// A change calls for a pass after the debounce, but no later than `max_delay` after the
    /// first change not yet passed over.
    fn dirty(&mut self) {
        let now = Instant::now();
        let first = *self.first_dirty.get_or_insert(now);
        self.due = (now + self.timing.debounce).min(first + self.timing.max_delay);
    }

    fn on_outcome(&mut self, outcome: writer::Outcome) {
        let (key, dirty) = apply_outcome(&mut self.index, outcome);
        if dirty || self.recheck.remove(&key) {
            self.dirty();
        }
    }

    fn on_leadership(&mut self, leading: bool) {
        self.ctx.metrics.leader.set(i64::from(leading));
        if leading {
            // A new leader trusts nothing: re-seed and recompute at once.
            self.memory = reconcile::Memory::default();
            self.due = Instant::now();
        } else {
            self.writer.clear();
            self.ctx.metrics.clear_inventory();
        }
    }

    async fn on_due(&mut self, leader: &mut tokio::sync::watch::Receiver<bool>) {
        self.first_dirty = None;
        self.due = Instant::now() + self.timing.resync;
        if !self.index.is_synced() || !*leader.borrow() {
            return;
        }
        // Leadership lost mid-pass: the pass is dropped where it stands (its writes check the
        // fence too, so one that resumes late writes nothing).
        let outcome = tokio::select! {
            r = reconcile::pass(&self.ctx, &self.writer, &mut self.memory, &mut self.index, &mut self.rng) => Some(r),
            _ = lost(leader) => None,
        };
        match outcome {
            Some(Ok(report)) => {
                tracing::debug!(?report, "pass done");
                self.recheck.extend(report.skipped);
            }
            Some(Err(e)) => {
                self.ctx.metrics.errors.inc();
                tracing::warn!(error = %e, "pass failed; retrying");
                self.due = Instant::now() + self.timing.retry;
            }
            None => {
                tracing::warn!("leadership lost: the pass in flight is cancelled");
                self.on_leadership(false);
            }
        }
    }
}

/// Folds what the writer did into the index: an applied status, a written credentials Secret
/// (the owner can now be compiled: `true`, pass again), a failed credentials write (its
/// condition must say so: `true`). Returns the write's key too.
fn apply_outcome(index: &mut Index, outcome: writer::Outcome) -> (writer::JobKey, bool) {
    use writer::{JobKey, Outcome};
    match outcome {
        Outcome::Status(applied) => {
            let key = JobKey::of_applied(&applied);
            status::merge(index, applied);
            (key, false)
        }
        Outcome::Credentials(owner, secret) => {
            index.credentials_in_writing.remove(&owner);
            index.apply(Change::secret(Op::Apply(*secret)));
            (JobKey::Credentials(owner), true)
        }
        Outcome::Companion(device, stored) => {
            if let Some(d) = stored {
                index.apply(Change::device(Op::Apply(*d)));
            }
            (JobKey::Companion(device), true)
        }
        Outcome::Failed(key, error) => {
            let dirty = if let JobKey::Credentials(owner) = &key {
                index
                    .credentials_in_writing
                    .insert(owner.clone(), Some(error));
                true
            } else {
                false
            };
            (key, dirty)
        }
    }
}

/// Runs the operator loop until the watch streams end.
pub async fn run(
    ctx: Context,
    config_namespace: String,
    mut changes: watch::Changes,
    mut leader: tokio::sync::watch::Receiver<bool>,
    ready: Arc<AtomicBool>,
    timing: Timing,
) -> anyhow::Result<()> {
    let (outcomes_tx, mut outcomes) = tokio::sync::mpsc::unbounded_channel();
    let writer = writer::spawn(
        writer::Io {
            client: ctx.client.clone(),
            recorder: ctx.recorder.clone(),
            metrics: ctx.metrics.clone(),
            fence: ctx.fence.clone(),
        },
        outcomes_tx,
    );
    let index = Index::with_secret_namespaces(config_namespace, ctx.secret_namespaces.clone());
    let mut state = Loop {
        ctx,
        writer,
        index,
        memory: reconcile::Memory::default(),
        rng: StdRng::from_os_rng(),
        timing,
        first_dirty: None,
        due: Instant::now() + timing.resync,
        recheck: HashSet::new(),
    };
    loop {
        tokio::select! {
            change = changes.next() => match change {
                Some(Ok(change)) => {
                    state.index.apply(change);
                    state.dirty();
                    if state.index.is_synced() && !ready.swap(true, Ordering::Relaxed) {
                        tracing::info!("every kind listed; operator ready");
                    }
                }
                Some(Err(e)) => {
                    state.ctx.metrics.errors.inc();
                    tracing::warn!(error = %e, "watch error (retrying with backoff)");
                }
                None => anyhow::bail!("watch streams ended"),
            },
            Some(outcome) = outcomes.recv() => state.on_outcome(outcome),
            changed = leader.changed() => {
                if changed.is_err() {
                    anyhow::bail!("leader election stopped");
                }
                let leading = *leader.borrow_and_update();
                state.on_leadership(leading);
            },
            _ = tokio::time::sleep_until(state.due) => state.on_due(&mut leader).await,
        }
    }
}

/// Resolves once this replica no longer leads.
async fn lost(leader: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = leader.wait_for(|leading| !*leading).await;
}

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod tests;
