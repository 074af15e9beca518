//! The thin runtime: watch streams feed the index; any change schedules one debounced global
//! pass ([`reconcile::pass`]); only the Lease holder runs passes.

pub mod http;
pub mod leader;
pub mod metrics;
pub mod reconcile;
pub mod watch;

use crate::index::Index;
use futures::StreamExt;
use kube::runtime::events::Recorder;
use kube::Client;
use rand::rngs::StdRng;
use rand::SeedableRng;
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

/// Runs the operator loop until the watch streams end.
pub async fn run(
    ctx: Context,
    config_namespace: String,
    mut changes: watch::Changes,
    mut leader: tokio::sync::watch::Receiver<bool>,
    ready: Arc<AtomicBool>,
    timing: Timing,
) -> anyhow::Result<()> {
    let mut index = Index::new(config_namespace);
    let mut memory = reconcile::Memory::default();
    let mut rng = StdRng::from_os_rng();
    let mut first_dirty: Option<Instant> = None;
    let mut due = Instant::now() + timing.resync;
    loop {
        tokio::select! {
            change = changes.next() => match change {
                Some(Ok(change)) => {
                    index.apply(change);
                    let now = Instant::now();
                    let first = *first_dirty.get_or_insert(now);
                    due = (now + timing.debounce).min(first + timing.max_delay);
                    if index.is_synced() && !ready.swap(true, Ordering::Relaxed) {
                        tracing::info!("every kind listed; operator ready");
                    }
                }
                Some(Err(e)) => {
                    ctx.metrics.errors.inc();
                    tracing::warn!(error = %e, "watch error (retrying with backoff)");
                }
                None => anyhow::bail!("watch streams ended"),
            },
            changed = leader.changed() => {
                if changed.is_err() {
                    anyhow::bail!("leader election stopped");
                }
                ctx.metrics.leader.set(i64::from(*leader.borrow()));
                if *leader.borrow() {
                    // A new leader trusts nothing: re-seed and recompute at once.
                    memory = reconcile::Memory::default();
                    due = Instant::now();
                }
            },
            _ = tokio::time::sleep_until(due) => {
                first_dirty = None;
                due = Instant::now() + timing.resync;
                if !index.is_synced() || !*leader.borrow() {
                    continue;
                }
                match reconcile::pass(&ctx, &mut memory, &mut index, &mut rng).await {
                    Ok(report) => {
                        tracing::debug!(?report, "pass done");
                        if report.failures > 0 {
                            due = Instant::now() + timing.retry;
                        }
                    }
                    Err(e) => {
                        ctx.metrics.errors.inc();
                        tracing::warn!(error = %e, "pass failed; retrying");
                        due = Instant::now() + timing.retry;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod tests;
