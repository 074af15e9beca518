//! The live state of every outbound registration this replica runs: phase, presence
//! subscriptions and watched entities, callback delivery. One [`RegistrationView`] per
//! registration is the single source of `/debug/registrations`, of the routing of calls that
//! arrive through a registration, and of the `SipRegistration.status` the registrar writes
//! (every write carries all the registrar's fields, as a server-side apply must).

use super::client::{NotifyReport, Report};
use super::presence::{Package, SubState};
use super::sip::Method;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use parking_lot::RwLock;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use switchboard_crds::common::Transport;
use switchboard_crds::config::OutboundRegistration;
use switchboard_crds::registration::{
    CallbackStatus, EntityStatus, PresenceStatus, RegistrationPhase, RegistrationTarget,
    SipRegistrationStatus, SubscriptionState, SubscriptionStatus,
};

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
    /// Presence/BLF, when subscribing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence: Option<PresenceStatus>,
    /// Callback delivery, when there is a callback.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback: Option<CallbackStatus>,
    /// Last attempt and expiry as written to the status.
    #[serde(skip)]
    times: (Option<Time>, Option<Time>),
}

/// The live state of every outbound registration; cheap to clone.
#[derive(Clone, Default, Debug)]
pub struct UacIndex {
    inner: Arc<RwLock<BTreeMap<String, RegistrationView>>>,
}

pub(crate) fn time(t: SystemTime) -> Time {
    Time(Timestamp::try_from(t).unwrap_or(Timestamp::UNIX_EPOCH))
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

    pub(crate) fn upsert(&self, reg: &OutboundRegistration) {
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
            presence: None,
            callback: None,
            times: (None, None),
        });
        view.aor = reg.aor.clone();
        view.username = reg.username.clone();
        view.upstream = format!("{}:{}", reg.host, reg.port);
        view.transport = reg.transport;
        view.target = reg.target.clone();
        view.presence = reg
            .subscribe
            .then(|| view.presence.take().unwrap_or_default());
        view.callback = reg
            .callback
            .as_ref()
            .map(|_| view.callback.take().unwrap_or_default());
    }

    /// Starts the callback delivery state of `id` from what its status already says (after a
    /// restart or a handover), so the first write does not wipe the last delivery or give-up;
    /// the attempts count belongs to the change being delivered and starts at 0.
    pub(crate) fn seed_callback(&self, id: &str, known: CallbackStatus) {
        if let Some(v) = self.inner.write().get_mut(id) {
            if let Some(cb) = v.callback.as_mut() {
                if *cb == CallbackStatus::default() {
                    *cb = CallbackStatus {
                        attempts: 0,
                        ..known
                    };
                }
            }
        }
    }

    pub(crate) fn remove(&self, id: &str) {
        self.inner.write().remove(id);
    }

    /// Applies a leg's outcome; returns the phase before (REGISTER) and the status to write.
    pub(crate) fn record(&self, r: &Report) -> Option<(RegistrationPhase, SipRegistrationStatus)> {
        let mut m = self.inner.write();
        let v = m.get_mut(&r.id)?;
        let before = v.phase;
        match r.method {
            Method::Subscribe(p) => {
                let presence = v.presence.get_or_insert_with(Default::default);
                fold_subscription_outcome(presence, p, r);
            }
            Method::Register => {
                v.phase = r.outcome.phase;
                v.last_status_code = r.outcome.code;
                v.last_reason = Some(r.outcome.reason.clone());
                v.last_attempt_time = Some(time(r.attempt_time).0.to_string());
                v.expires_time = r.expires_time.map(|t| time(t).0.to_string());
                v.times = (Some(time(r.attempt_time)), r.expires_time.map(time));
                if r.contact.is_some() {
                    v.contact = r.contact.clone();
                }
            }
        }
        Some((before, status_of(v)))
    }

    /// Applies a NOTIFY; returns the status to write.
    pub(crate) fn record_notify(
        &self,
        n: &NotifyReport,
        now: SystemTime,
    ) -> Option<SipRegistrationStatus> {
        let mut m = self.inner.write();
        let v = m.get_mut(&n.id)?;
        let presence = v.presence.get_or_insert_with(Default::default);
        fold_notify(presence, n, now);
        Some(status_of(v))
    }

    /// Applies a callback delivery state; returns the status to write.
    pub(crate) fn record_callback(
        &self,
        id: &str,
        cb: CallbackStatus,
    ) -> Option<SipRegistrationStatus> {
        let mut m = self.inner.write();
        let v = m.get_mut(id)?;
        v.callback = Some(cb);
        Some(status_of(v))
    }
}

/// The registrar-owned status fields of a registration.
fn status_of(v: &RegistrationView) -> SipRegistrationStatus {
    SipRegistrationStatus {
        phase: Some(v.phase),
        last_status_code: v.last_status_code,
        last_reason: v.last_reason.clone(),
        last_attempt_time: v.times.0.clone(),
        expires_time: v.times.1.clone(),
        presence: v.presence.clone(),
        callback: v.callback.clone(),
        ..Default::default()
    }
}

fn subscription(presence: &mut PresenceStatus, p: Package) -> &mut SubscriptionStatus {
    if !presence.subscriptions.iter().any(|s| s.event == p.event()) {
        presence.subscriptions.push(SubscriptionStatus {
            event: p.event().to_string(),
            state: SubscriptionState::Subscribing,
            last_status_code: None,
            reason: None,
            expires_time: None,
        });
        presence.subscriptions.sort_by(|a, b| a.event.cmp(&b.event));
    }
    presence
        .subscriptions
        .iter_mut()
        .find(|s| s.event == p.event())
        .expect("just made sure it is there")
}

/// A SUBSCRIBE's answer: subscribing, active (a 2xx; `pending` stays until a NOTIFY says
/// otherwise) or failed. A failed subscription's entities are dropped: their state is no
/// longer known.
pub fn fold_subscription_outcome(presence: &mut PresenceStatus, p: Package, r: &Report) {
    let s = subscription(presence, p);
    s.last_status_code = r.outcome.code;
    s.reason = Some(r.outcome.reason.clone());
    s.state = match (r.outcome.phase, s.state) {
        (RegistrationPhase::InProgress, _) => SubscriptionState::Subscribing,
        (RegistrationPhase::Successful, SubscriptionState::Pending) => SubscriptionState::Pending,
        (RegistrationPhase::Successful, _) => SubscriptionState::Active,
        (RegistrationPhase::Failed, _) => SubscriptionState::Failed,
    };
    s.expires_time = r.expires_time.map(time);
    if s.state == SubscriptionState::Failed {
        presence.entities.retain(|e| e.event != p.event());
    }
}

/// A NOTIFY: its `Subscription-State` and the entity it tells of. An entity's `since` moves
/// only when its state changes, so a NOTIFY that repeats what is known writes nothing.
pub fn fold_notify(presence: &mut PresenceStatus, n: &NotifyReport, now: SystemTime) {
    let event = n.package.event();
    let s = subscription(presence, n.package);
    match &n.state {
        Some(SubState::Active { expires }) | Some(SubState::Pending { expires }) => {
            s.state = if matches!(n.state, Some(SubState::Active { .. })) {
                SubscriptionState::Active
            } else {
                SubscriptionState::Pending
            };
            if let Some(e) = expires {
                s.expires_time = Some(time(now + Duration::from_secs((*e).into())));
            }
        }
        Some(SubState::Terminated { reason, .. }) => {
            s.state = SubscriptionState::Terminated;
            s.reason = Some(format!(
                "terminated by the notifier{}",
                reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            ));
            s.expires_time = None;
        }
        None => {}
    }
    if let Some(e) = &n.body_error {
        s.reason = Some(format!("NOTIFY body not understood: {e}"));
    }
    if s.state == SubscriptionState::Terminated {
        presence.entities.retain(|e| e.event != event);
        return;
    }
    let Some(told) = &n.entity else {
        return;
    };
    match presence
        .entities
        .iter_mut()
        .find(|e| e.event == event && e.entity == told.entity)
    {
        Some(e) => {
            if e.state != told.state {
                e.state = told.state;
                e.since = Some(time(now));
            }
            e.note.clone_from(&told.note);
        }
        None => {
            presence.entities.push(EntityStatus {
                entity: told.entity.clone(),
                event: event.to_string(),
                state: told.state,
                note: told.note.clone(),
                since: Some(time(now)),
            });
            presence
                .entities
                .sort_by(|a, b| (&a.entity, &a.event).cmp(&(&b.entity, &b.event)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uac::machine::Outcome;
    use crate::uac::presence::Notified;
    use switchboard_crds::registration::EntityState;

    fn outcome(p: Package, phase: RegistrationPhase, code: u16, reason: &str) -> Report {
        Report {
            id: "ns/r".into(),
            method: Method::Subscribe(p),
            outcome: Outcome {
                phase,
                code: Some(code),
                reason: reason.into(),
                granted: None,
            },
            attempt_time: SystemTime::UNIX_EPOCH,
            expires_time: None,
            contact: None,
        }
    }

    fn notify(
        p: Package,
        state: Option<SubState>,
        entity: Option<(&str, EntityState)>,
    ) -> NotifyReport {
        NotifyReport {
            id: "ns/r".into(),
            package: p,
            state,
            entity: entity.map(|(e, s)| Notified {
                entity: e.into(),
                state: s,
                note: None,
            }),
            body_error: None,
        }
    }

    #[test]
    fn one_package_refused_leaves_the_other_working() {
        let mut p = PresenceStatus::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        fold_subscription_outcome(
            &mut p,
            Package::Dialog,
            &outcome(
                Package::Dialog,
                RegistrationPhase::Failed,
                489,
                "489 Bad Event",
            ),
        );
        fold_subscription_outcome(
            &mut p,
            Package::Presence,
            &outcome(
                Package::Presence,
                RegistrationPhase::Successful,
                200,
                "200 OK",
            ),
        );
        fold_notify(
            &mut p,
            &notify(
                Package::Presence,
                Some(SubState::Active { expires: Some(600) }),
                Some(("sip:1001@x", EntityState::Idle)),
            ),
            t0,
        );
        assert_eq!(
            p.subscriptions
                .iter()
                .map(|s| (s.event.as_str(), s.state, s.last_status_code))
                .collect::<Vec<_>>(),
            vec![
                ("dialog", SubscriptionState::Failed, Some(489)),
                ("presence", SubscriptionState::Active, Some(200))
            ]
        );
        assert_eq!(p.entities.len(), 1);
        assert_eq!(
            (p.entities[0].event.as_str(), p.entities[0].state),
            ("presence", EntityState::Idle)
        );
    }

    #[test]
    fn since_moves_only_on_a_change_and_termination_forgets_entities() {
        let mut p = PresenceStatus::default();
        let t = |s: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s);
        let busy = notify(
            Package::Dialog,
            Some(SubState::Active { expires: None }),
            Some(("sip:1001@x", EntityState::Busy)),
        );
        fold_notify(&mut p, &busy, t(0));
        fold_notify(&mut p, &busy, t(5));
        assert_eq!(p.entities[0].since, Some(time(t(0))));
        let ring = notify(
            Package::Dialog,
            None,
            Some(("sip:1001@x", EntityState::Ringing)),
        );
        fold_notify(&mut p, &ring, t(9));
        assert_eq!(
            (p.entities[0].state, p.entities[0].since.clone()),
            (EntityState::Ringing, Some(time(t(9))))
        );
        let end = notify(
            Package::Dialog,
            Some(SubState::Terminated {
                reason: Some("timeout".into()),
                retry_after: None,
            }),
            None,
        );
        fold_notify(&mut p, &end, t(10));
        assert!(p.entities.is_empty());
        assert_eq!(p.subscriptions[0].state, SubscriptionState::Terminated);
        assert_eq!(
            p.subscriptions[0].reason.as_deref(),
            Some("terminated by the notifier (timeout)")
        );
        // Subscribing again, then a 200: active.
        fold_subscription_outcome(
            &mut p,
            Package::Dialog,
            &outcome(
                Package::Dialog,
                RegistrationPhase::Successful,
                200,
                "200 OK",
            ),
        );
        assert_eq!(p.subscriptions[0].state, SubscriptionState::Active);
    }
}
