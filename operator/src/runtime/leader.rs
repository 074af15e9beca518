//! Leader election with a `coordination.k8s.io/v1` Lease, as client-go's `leaderelection` does
//! it (kube 5 has no helper), and fenced.
//!
//! Three durations: the lease duration (15 s), the renew deadline (10 s, shorter), the retry
//! period (2 s). Every retry period a replica reads the Lease and, per [`decide`], creates it,
//! renews it, takes it over or follows. A follower counts a holder's lease as expired only a
//! lease duration after it last *saw the record change*, on its own clock, so clocks need not
//! agree. Writes carry the resourceVersion read, so two replicas racing for an expired Lease
//! cannot both win.
//!
//! The leader's [`Fence`] is open until the renew deadline after the last renewal it sent; every
//! write the operator makes checks it first. Since the renew deadline is shorter than the lease
//! duration, a leader that cannot renew (partitioned, or stopped with SIGSTOP) stops writing
//! before any other replica may take over. On shutdown the leader releases the Lease (empty
//! holder), so a successor takes over within one retry period.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, Client};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Lease settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Lease name.
    pub name: String,
    /// Lease namespace.
    pub namespace: String,
    /// This replica's identity (pod name).
    pub identity: String,
    /// How long others wait after the last renewal they saw before taking over.
    pub lease_duration: Duration,
    /// How long the leader keeps writing without a successful renewal.
    pub renew_deadline: Duration,
    /// How often to renew, or to try to acquire.
    pub retry_period: Duration,
}

impl Settings {
    /// client-go's defaults: 15 s, 10 s, 2 s.
    pub fn new(name: String, namespace: String, identity: String) -> Settings {
        Settings {
            name,
            namespace,
            identity,
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// Whether the leader may write now: open until a deadline, shared by every writer.
#[derive(Clone, Debug, Default)]
pub struct Fence(Arc<Mutex<Option<Instant>>>);

impl Fence {
    /// A fence that is always open (tests, or a single replica without election).
    pub fn open() -> Fence {
        Fence(Arc::new(Mutex::new(Some(
            Instant::now() + Duration::from_secs(3600 * 24 * 365),
        ))))
    }

    /// Whether a write may go out now.
    pub fn allows(&self) -> bool {
        self.0
            .lock()
            .expect("fence lock")
            .is_some_and(|until| Instant::now() < until)
    }

    fn open_until(&self, until: Instant) {
        *self.0.lock().expect("fence lock") = Some(until);
    }

    fn close(&self) {
        *self.0.lock().expect("fence lock") = None;
    }
}

/// What to do with the Lease as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// There is none: create it.
    Create,
    /// We hold it: renew.
    Renew,
    /// Another holder let it expire (or released it): take it over.
    TakeOver,
    /// Another holder holds it.
    Follow,
}

/// The part of a Lease that says who holds it; a change of it restarts the expiry clock.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Record {
    holder: String,
    renewed: Option<Timestamp>,
    transitions: Option<i32>,
}

fn record(lease: &Lease) -> Record {
    let spec = lease.spec.clone().unwrap_or_default();
    Record {
        holder: spec.holder_identity.unwrap_or_default(),
        renewed: spec.renew_time.or(spec.acquire_time).map(|t| t.0),
        transitions: spec.lease_transitions,
    }
}

/// The Lease as this replica last saw it change, and when (its own clock).
#[derive(Clone, Debug, Default)]
pub struct Observed {
    record: Option<Record>,
    at: Option<Instant>,
}

impl Observed {
    /// Notes `lease` as read at `now`: the clock restarts only when the record changed.
    pub fn see(&mut self, lease: &Lease, now: Instant) {
        let r = record(lease);
        if self.record.as_ref() != Some(&r) {
            self.record = Some(r);
            self.at = Some(now);
        }
    }
}

/// Decides from the Lease as read (and as observed over time), who we are and the time.
pub fn decide(
    lease: Option<&Lease>,
    observed: &Observed,
    me: &str,
    lease_duration: Duration,
    now: Instant,
) -> Decision {
    let Some(lease) = lease else {
        return Decision::Create;
    };
    let holder = record(lease).holder;
    if holder == me {
        return Decision::Renew;
    }
    if holder.is_empty() {
        return Decision::TakeOver;
    }
    match observed.at {
        Some(at) if at + lease_duration > now => Decision::Follow,
        _ => Decision::TakeOver,
    }
}

fn held(settings: &Settings, now: Timestamp, base: Option<&Lease>, takeover: bool) -> Lease {
    let old = base.and_then(|l| l.spec.clone()).unwrap_or_default();
    let transitions = old.lease_transitions.unwrap_or(0) + i32::from(takeover);
    Lease {
        metadata: ObjectMeta {
            name: Some(settings.name.clone()),
            namespace: Some(settings.namespace.clone()),
            resource_version: base.and_then(|l| l.metadata.resource_version.clone()),
            ..base.map(|l| l.metadata.clone()).unwrap_or_default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(settings.identity.clone()),
            lease_duration_seconds: Some(settings.lease_duration.as_secs() as i32),
            acquire_time: if takeover || base.is_none() {
                Some(MicroTime(now))
            } else {
                old.acquire_time.clone()
            },
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }),
    }
}

/// The Lease given up: no holder, so a follower takes it over at its next try.
fn released(lease: &Lease) -> Lease {
    let mut out = lease.clone();
    let spec = out.spec.get_or_insert_with(LeaseSpec::default);
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    spec.renew_time = Some(MicroTime(Timestamp::now()));
    out
}

/// One try: read, decide, write. Returns whether we hold the Lease now.
pub async fn round(
    api: &Api<Lease>,
    settings: &Settings,
    observed: &mut Observed,
) -> kube::Result<bool> {
    let lease = api.get_opt(&settings.name).await?;
    let now = Instant::now();
    if let Some(l) = &lease {
        observed.see(l, now);
    }
    let decision = decide(
        lease.as_ref(),
        observed,
        &settings.identity,
        settings.lease_duration,
        now,
    );
    let stamp = Timestamp::now();
    let result = match decision {
        Decision::Follow => return Ok(false),
        Decision::Create => {
            let new = held(settings, stamp, None, false);
            api.create(&PostParams::default(), &new).await
        }
        Decision::Renew | Decision::TakeOver => {
            let new = held(
                settings,
                stamp,
                lease.as_ref(),
                decision == Decision::TakeOver,
            );
            api.replace(&settings.name, &PostParams::default(), &new)
                .await
        }
    };
    match result {
        Ok(stored) => {
            observed.see(&stored, now);
            Ok(true)
        }
        // Someone else wrote first.
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Runs elections until `shutdown` fires, then releases the Lease if held. `tx` says whether
/// this replica leads and changes only on a transition, never on a renewal; `fence` is open
/// while it may write.
pub async fn run(
    client: Client,
    settings: Settings,
    tx: watch::Sender<bool>,
    fence: Fence,
    mut shutdown: watch::Receiver<bool>,
) {
    let api: Api<Lease> = Api::namespaced(client, &settings.namespace);
    let mut observed = Observed::default();
    loop {
        let sent = Instant::now();
        let attempt = tokio::time::timeout(
            settings.renew_deadline,
            round(&api, &settings, &mut observed),
        );
        match attempt.await {
            Ok(Ok(true)) => fence.open_until(sent + settings.renew_deadline),
            // Another replica holds it: stop writing at once.
            Ok(Ok(false)) => fence.close(),
            // The API server did not answer: keep leading until the renew deadline.
            Ok(Err(e)) => tracing::warn!(error = %e, lease = %settings.name, "lease round failed"),
            Err(_) => tracing::warn!(lease = %settings.name, "lease round timed out"),
        }
        let still = fence.allows();
        tx.send_if_modified(|now| {
            let changed = *now != still;
            if changed {
                tracing::info!(identity = %settings.identity, lease = %settings.name, leading = still, "leadership changed");
            }
            *now = still;
            changed
        });
        tokio::select! {
            _ = tokio::time::sleep(settings.retry_period) => {}
            _ = shutdown.changed() => break,
        }
    }
    release(&api, &settings, &fence, &tx).await;
}

/// Gives the Lease up if this replica holds it, so a successor need not wait for it to expire.
async fn release(api: &Api<Lease>, settings: &Settings, fence: &Fence, tx: &watch::Sender<bool>) {
    fence.close();
    tx.send_if_modified(|l| std::mem::replace(l, false));
    let Ok(Some(lease)) = api.get_opt(&settings.name).await else {
        return;
    };
    if record(&lease).holder != settings.identity {
        return;
    }
    match api
        .replace(&settings.name, &PostParams::default(), &released(&lease))
        .await
    {
        Ok(_) => tracing::info!(lease = %settings.name, "lease released"),
        Err(e) => tracing::warn!(error = %e, lease = %settings.name, "lease not released"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str, renewed: i64) -> Lease {
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                lease_duration_seconds: Some(15),
                renew_time: Some(MicroTime(Timestamp::from_second(renewed).unwrap())),
                ..LeaseSpec::default()
            }),
        }
    }

    const LEASE: Duration = Duration::from_secs(15);

    #[test]
    fn a_lease_expires_a_lease_duration_after_its_record_was_seen_to_change() {
        let t0 = Instant::now();
        let mut seen = Observed::default();
        assert_eq!(decide(None, &seen, "a", LEASE, t0), Decision::Create);
        let other = lease("b", 100);
        seen.see(&other, t0);
        assert_eq!(
            decide(
                Some(&other),
                &seen,
                "a",
                LEASE,
                t0 + Duration::from_secs(14)
            ),
            Decision::Follow
        );
        // Read again unchanged: the clock does not restart.
        seen.see(&other, t0 + Duration::from_secs(10));
        assert_eq!(
            decide(
                Some(&other),
                &seen,
                "a",
                LEASE,
                t0 + Duration::from_secs(16)
            ),
            Decision::TakeOver
        );
        // A renewal seen restarts it, whatever the holder's clock says.
        let renewed = lease("b", 50);
        seen.see(&renewed, t0 + Duration::from_secs(16));
        assert_eq!(
            decide(
                Some(&renewed),
                &seen,
                "a",
                LEASE,
                t0 + Duration::from_secs(20)
            ),
            Decision::Follow
        );
    }

    #[test]
    fn own_and_released_leases() {
        let t0 = Instant::now();
        let seen = Observed::default();
        assert_eq!(
            decide(Some(&lease("a", 1)), &seen, "a", LEASE, t0),
            Decision::Renew
        );
        assert_eq!(
            decide(Some(&released(&lease("b", 1))), &seen, "a", LEASE, t0),
            Decision::TakeOver
        );
        // Never seen before: expired only if it had been seen a lease duration ago.
        let mut fresh = Observed::default();
        fresh.see(&lease("b", 1), t0);
        assert_eq!(
            decide(Some(&lease("b", 1)), &fresh, "a", LEASE, t0),
            Decision::Follow
        );
    }

    #[test]
    fn takeover_counts_a_transition_and_keeps_the_resource_version() {
        let settings = Settings::new("l".into(), "ns".into(), "me".into());
        let mut old = lease("other", 0);
        old.metadata.resource_version = Some("42".into());
        let now = Timestamp::from_second(100).unwrap();
        let new = held(&settings, now, Some(&old), true);
        assert_eq!(new.metadata.resource_version.as_deref(), Some("42"));
        let spec = new.spec.unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("me"));
        assert_eq!(spec.lease_transitions, Some(1));
    }

    #[tokio::test(start_paused = true)]
    async fn the_fence_closes_at_its_deadline() {
        let fence = Fence::default();
        assert!(!fence.allows());
        fence.open_until(Instant::now() + Duration::from_secs(10));
        assert!(fence.allows());
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(!fence.allows());
    }
}
