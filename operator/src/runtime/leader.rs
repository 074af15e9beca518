//! Leader election with a `coordination.k8s.io/v1` Lease (kube 5 has no helper for it).
//!
//! Every `renew` period a replica reads the Lease and, per [`decide`], creates it, renews it
//! (it holds it), takes it over (the holder let it expire), or follows. Writes carry the
//! resourceVersion read, so two replicas racing for an expired Lease cannot both win: the
//! loser's replace fails with 409 and it follows. A leader that cannot renew for a whole lease
//! duration steps down by itself before another replica can take over.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::PostParams;
use kube::{Api, Client};
use std::time::Duration;
use tokio::sync::watch;

/// Lease settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Lease name.
    pub name: String,
    /// Lease namespace.
    pub namespace: String,
    /// This replica's identity (pod name).
    pub identity: String,
    /// How long a Lease stays valid without renewal.
    pub duration: Duration,
    /// How often to renew or retry.
    pub renew: Duration,
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

/// Decides from the Lease as read, who we are and the time.
pub fn decide(lease: Option<&Lease>, me: &str, now: Timestamp) -> Decision {
    let Some(spec) = lease.and_then(|l| l.spec.as_ref()) else {
        return if lease.is_none() {
            Decision::Create
        } else {
            Decision::TakeOver
        };
    };
    match spec.holder_identity.as_deref() {
        Some(h) if h == me => Decision::Renew,
        None | Some("") => Decision::TakeOver,
        Some(_) => {
            let secs = i64::from(spec.lease_duration_seconds.unwrap_or(15));
            let expired = spec
                .renew_time
                .as_ref()
                .or(spec.acquire_time.as_ref())
                .is_none_or(|t| t.0 + SignedDuration::from_secs(secs) < now);
            if expired {
                Decision::TakeOver
            } else {
                Decision::Follow
            }
        }
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
            lease_duration_seconds: Some(settings.duration.as_secs() as i32),
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

/// One round: read, decide, write. Returns whether we hold the Lease now.
pub async fn round(api: &Api<Lease>, settings: &Settings) -> kube::Result<bool> {
    let now = Timestamp::now();
    let lease = api.get_opt(&settings.name).await?;
    let result = match decide(lease.as_ref(), &settings.identity, now) {
        Decision::Follow => return Ok(false),
        Decision::Create => {
            api.create(&PostParams::default(), &held(settings, now, None, false))
                .await
        }
        Decision::Renew => {
            api.replace(
                &settings.name,
                &PostParams::default(),
                &held(settings, now, lease.as_ref(), false),
            )
            .await
        }
        Decision::TakeOver => {
            api.replace(
                &settings.name,
                &PostParams::default(),
                &held(settings, now, lease.as_ref(), true),
            )
            .await
        }
    };
    match result {
        Ok(_) => Ok(true),
        // Someone else wrote first.
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Runs elections forever, publishing whether this replica leads.
pub async fn run(client: Client, settings: Settings, tx: watch::Sender<bool>) {
    let api: Api<Lease> = Api::namespaced(client, &settings.namespace);
    let mut last_renewed: Option<tokio::time::Instant> = None;
    loop {
        match round(&api, &settings).await {
            Ok(leading) => {
                if leading {
                    last_renewed = Some(tokio::time::Instant::now());
                }
                if *tx.borrow() != leading {
                    tracing::info!(identity = %settings.identity, lease = %settings.name, leading, "leadership changed");
                }
                tx.send_replace(leading);
            }
            Err(e) => {
                tracing::warn!(error = %e, lease = %settings.name, "lease round failed");
                let stale = last_renewed.is_none_or(|t| t.elapsed() >= settings.duration);
                if *tx.borrow() && stale {
                    tracing::warn!("could not renew the lease in time: stepping down");
                    tx.send_replace(false);
                }
            }
        }
        tokio::time::sleep(settings.renew).await;
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

    #[test]
    fn decisions() {
        let now = Timestamp::from_second(1_000).unwrap();
        assert_eq!(decide(None, "a", now), Decision::Create);
        assert_eq!(decide(Some(&lease("a", 990)), "a", now), Decision::Renew);
        assert_eq!(decide(Some(&lease("b", 990)), "a", now), Decision::Follow);
        assert_eq!(decide(Some(&lease("b", 980)), "a", now), Decision::TakeOver);
        assert_eq!(decide(Some(&lease("", 999)), "a", now), Decision::TakeOver);
    }

    #[test]
    fn takeover_counts_a_transition_and_keeps_the_resource_version() {
        let settings = Settings {
            name: "l".into(),
            namespace: "ns".into(),
            identity: "me".into(),
            duration: Duration::from_secs(15),
            renew: Duration::from_secs(5),
        };
        let mut old = lease("other", 0);
        old.metadata.resource_version = Some("42".into());
        let now = Timestamp::from_second(100).unwrap();
        let new = held(&settings, now, Some(&old), true);
        assert_eq!(new.metadata.resource_version.as_deref(), Some("42"));
        let spec = new.spec.unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("me"));
        assert_eq!(spec.lease_transitions, Some(1));
    }
}
