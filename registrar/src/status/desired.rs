//! What the registrar wants a resource's status to say, and when two such states differ
//! enough to be worth a write. Pure.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use switchboard_crds::common::{condition, find_condition};
use switchboard_crds::device::{
    ContactStatus, RegistrationState, RegistrationStatus, SipDeviceStatus,
};
use switchboard_crds::registration::{RegistrationPhase, SipRegistrationStatus};

/// Which kind of resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `SipDevice`: `status.registration`.
    Device,
    /// `SipRegistration`: the phase fields.
    Registration,
}

/// A resource whose status the registrar writes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// Its kind.
    pub kind: Kind,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl Key {
    /// From a config id `namespace/name`.
    pub fn parse(kind: Kind, id: &str) -> Option<Key> {
        let (ns, name) = id.split_once('/')?;
        if ns.is_empty() || name.is_empty() || name.contains('/') {
            return None;
        }
        Some(Key {
            kind,
            namespace: ns.to_string(),
            name: name.to_string(),
        })
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let k = match self.kind {
            Kind::Device => "sipdevice",
            Kind::Registration => "sipregistration",
        };
        write!(f, "{k}/{}/{}", self.namespace, self.name)
    }
}

/// The registrar-owned part of a status.
#[derive(Debug, Clone, PartialEq)]
pub enum Desired {
    /// `SipDevice.status.registration` and the `Registered` condition.
    Device(DeviceStatus),
    /// `SipRegistration.status` phase fields (conditions and observedGeneration left empty).
    Registration(SipRegistrationStatus),
}

/// What the registrar writes of a `SipDevice`'s status.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceStatus {
    /// `status.registration`.
    pub registration: RegistrationStatus,
    /// The `Registered` entry of `status.conditions`. Always set on what the registrar
    /// writes; `None` only for a status read from the API without it (written by a registrar
    /// that did not write the condition yet), so that the next offer writes it.
    pub registered: Option<Condition>,
}

impl DeviceStatus {
    /// The registrar-owned part of a status read from the API, if it has a registration.
    pub fn from_api(status: &SipDeviceStatus) -> Option<DeviceStatus> {
        Some(DeviceStatus {
            registration: status.registration.clone()?,
            registered: find_condition(&status.conditions, condition::REGISTERED).cloned(),
        })
    }

    /// Since when the state has been what it is, as far as this status tells: its
    /// condition's transition time, else (read from the API without the condition) the
    /// registration's last change, the best bound known.
    fn since(&self) -> Option<&Time> {
        match &self.registered {
            Some(c) => Some(&c.last_transition_time),
            None => self.registration.last_change_time.as_ref(),
        }
    }

    /// Keeps `last`'s transition time when the state did not flip since it. The change time
    /// of a new status is when it was offered, and a contact that comes, goes or moves is a
    /// change too: only a flip may move `lastTransitionTime`.
    pub fn carry_transition(&mut self, last: &DeviceStatus) {
        if last.registration.state != self.registration.state {
            return;
        }
        if let (Some(cond), Some(since)) = (self.registered.as_mut(), last.since()) {
            cond.last_transition_time = since.clone();
        }
    }
}

/// A device's live bindings as a desired status, with a `Registered` condition that
/// transitioned at `changed` (see [`DeviceStatus::carry_transition`] for keeping an older
/// one). Contacts are sorted so order never counts.
pub fn device_status(mut contacts: Vec<ContactStatus>, changed: Time) -> DeviceStatus {
    contacts.sort_by(|a, b| (&a.uri, &a.source_address).cmp(&(&b.uri, &b.source_address)));
    let registration = RegistrationStatus {
        state: if contacts.is_empty() {
            RegistrationState::Unregistered
        } else {
            RegistrationState::Registered
        },
        contacts,
        last_change_time: Some(changed.clone()),
    };
    DeviceStatus {
        registered: Some(registered_condition(&registration, changed)),
        registration,
    }
}

/// The `Registered` condition's reason (and the Event's) when the registrar dropped a device's
/// bindings because its credentials changed.
pub const CREDENTIALS_CHANGED: &str = "CredentialsChanged";

/// What a device's status says once its bindings were dropped because its credentials changed
/// (rotated, or its SIP user or domain changed): `Unregistered`, with a condition saying why.
pub fn credentials_changed_status(changed: Time) -> DeviceStatus {
    let mut status = device_status(Vec::new(), changed);
    if let Some(c) = status.registered.as_mut() {
        c.reason = CREDENTIALS_CHANGED.into();
        c.message = "bindings dropped: the device's credentials changed; \
                     it registers again with the new ones"
            .into();
    }
    status
}

/// One line about a device's bindings: how many, and the first one's URI, transport, source
/// and user agent. The `Registered` condition's message and the Events' note.
pub fn summary(reg: &RegistrationStatus) -> String {
    match reg.contacts.first() {
        Some(c) => format!(
            "{} contact(s); {} over {} from {}{}",
            reg.contacts.len(),
            c.uri,
            c.transport,
            c.source_address,
            c.user_agent
                .as_deref()
                .map(|u| format!(" ({u})"))
                .unwrap_or_default()
        ),
        None => "no live binding".to_string(),
    }
}

/// The `Registered` condition a registration calls for, transitioned at `since`. It says
/// nothing of the spec, so it carries no `observedGeneration`.
pub fn registered_condition(reg: &RegistrationStatus, since: Time) -> Condition {
    let (status, reason) = match reg.state {
        RegistrationState::Registered => ("True", "Registered"),
        RegistrationState::Unregistered => ("False", "Unregistered"),
    };
    Condition {
        type_: condition::REGISTERED.into(),
        status: status.into(),
        reason: reason.into(),
        message: summary(reg),
        observed_generation: None,
        last_transition_time: since,
    }
}

/// Whether two `Registered` conditions say the same, transition time aside.
fn same_condition(a: Option<&Condition>, b: Option<&Condition>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => {
            (&a.status, &a.reason, &a.message, a.observed_generation)
                == (&b.status, &b.reason, &b.message, b.observed_generation)
        }
        (None, None) => true,
        _ => false,
    }
}

fn same_contact(a: &ContactStatus, b: &ContactStatus) -> bool {
    // Everything but `expires`: a refresh moves the expiry and nothing else.
    a.uri == b.uri
        && a.transport == b.transport
        && a.source_address == b.source_address
        && a.user_agent == b.user_agent
        && a.replica == b.replica
}

impl Desired {
    /// Whether writing `other` after `self` would tell a reader anything new. For devices a
    /// change of expiry alone (a steady refresh) does not count, nor do the change and
    /// transition times; a status without the `Registered` condition differs from one with it.
    pub fn same_content(&self, other: &Desired) -> bool {
        match (self, other) {
            (Desired::Device(a), Desired::Device(b)) => {
                let (ra, rb) = (&a.registration, &b.registration);
                ra.state == rb.state
                    && ra.contacts.len() == rb.contacts.len()
                    && ra
                        .contacts
                        .iter()
                        .zip(&rb.contacts)
                        .all(|(x, y)| same_contact(x, y))
                    && same_condition(a.registered.as_ref(), b.registered.as_ref())
            }
            (Desired::Registration(a), Desired::Registration(b)) => a == b,
            _ => false,
        }
    }

    /// Before `self` replaces `last` (the latest state known of the same resource): a
    /// device's `Registered` condition keeps `last`'s transition time unless the state flipped.
    pub fn carry_transition(&mut self, last: Option<&Desired>) {
        if let (Desired::Device(now), Some(Desired::Device(last))) = (self, last) {
            now.carry_transition(last);
        }
    }

    /// The note of a `CallbackFailed` Warning Event, when a registration's callback gave a
    /// phase change up since `previous`.
    pub fn callback_given_up(&self, previous: Option<&Desired>) -> Option<String> {
        let Desired::Registration(now) = self else {
            return None;
        };
        let cb = now.callback.as_ref()?;
        let before = match previous {
            Some(Desired::Registration(p)) => {
                p.callback.as_ref().and_then(|c| c.gave_up_time.as_ref())
            }
            _ => None,
        };
        if cb.gave_up_time.is_none() || cb.gave_up_time.as_ref() == before {
            return None;
        }
        Some(format!(
            "callback for phase {:?} given up after {} attempt(s): {}",
            cb.gave_up_phase.unwrap_or_default(),
            cb.attempts,
            cb.last_error.as_deref().unwrap_or("no answer")
        ))
    }

    /// The state a phase Event is named after, when it changed from `previous`.
    pub fn flip_from(&self, previous: Option<&Desired>) -> Option<&'static str> {
        match (self, previous) {
            (Desired::Device(now), prev) => {
                let before = match prev {
                    Some(Desired::Device(p)) => Some(p.registration.state),
                    _ => None,
                };
                match (before, now.registration.state) {
                    (Some(b), n) if b == n => None,
                    // After a restart nothing is known: only a registration is news.
                    (None, RegistrationState::Unregistered) => None,
                    (_, RegistrationState::Registered) => Some("Registered"),
                    (_, RegistrationState::Unregistered)
                        if now
                            .registered
                            .as_ref()
                            .is_some_and(|c| c.reason == CREDENTIALS_CHANGED) =>
                    {
                        Some(CREDENTIALS_CHANGED)
                    }
                    (_, RegistrationState::Unregistered) => Some("Unregistered"),
                }
            }
            (Desired::Registration(now), prev) => {
                let before = match prev {
                    Some(Desired::Registration(p)) => p.phase,
                    _ => None,
                };
                if before == now.phase {
                    return None;
                }
                now.phase.map(|p| match p {
                    RegistrationPhase::InProgress => "InProgress",
                    RegistrationPhase::Successful => "Successful",
                    RegistrationPhase::Failed => "Failed",
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;
    use switchboard_crds::common::Transport;

    fn t(secs: i64) -> Time {
        Time(Timestamp::from_second(1_700_000_000 + secs).unwrap())
    }

    fn contact(uri: &str, expires: i64) -> ContactStatus {
        ContactStatus {
            uri: uri.into(),
            transport: Transport::Udp,
            source_address: "192.0.2.1:5060".into(),
            user_agent: Some("phone".into()),
            expires: t(expires),
            replica: Some("r0".into()),
        }
    }

    #[test]
    fn refresh_is_not_a_change_but_a_new_contact_is() {
        let a = Desired::Device(device_status(vec![contact("sip:a@x", 60)], t(0)));
        let b = Desired::Device(device_status(vec![contact("sip:a@x", 3600)], t(30)));
        assert!(a.same_content(&b));
        let c = Desired::Device(device_status(
            vec![contact("sip:b@x", 60), contact("sip:a@x", 60)],
            t(30),
        ));
        assert!(!a.same_content(&c));
        let d = Desired::Device(device_status(
            vec![contact("sip:a@x", 1), contact("sip:b@x", 9)],
            t(40),
        ));
        assert!(c.same_content(&d), "order does not count");
    }

    #[test]
    fn a_browser_phones_contact_shows_its_websocket_transport() {
        let mut c = contact("sip:k3l2@df7jal23ls0d.invalid;transport=ws", 60);
        c.transport = Transport::Wss;
        c.source_address = "203.0.113.7:51234".into();
        let status = device_status(vec![c.clone()], t(0));
        let reg = &status.registration;
        assert_eq!(
            summary(reg),
            "1 contact(s); sip:k3l2@df7jal23ls0d.invalid;transport=ws over WSS from \
             203.0.113.7:51234 (phone)"
        );
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["transport"], "WSS");
    }

    #[test]
    fn flips_name_the_event() {
        let reg = Desired::Device(device_status(vec![contact("sip:a@x", 60)], t(0)));
        let unreg = Desired::Device(device_status(vec![], t(1)));
        assert_eq!(reg.flip_from(None), Some("Registered"));
        assert_eq!(unreg.flip_from(None), None);
        assert_eq!(unreg.flip_from(Some(&reg)), Some("Unregistered"));
        assert_eq!(reg.flip_from(Some(&reg)), None);
        let ok = Desired::Registration(SipRegistrationStatus {
            phase: Some(RegistrationPhase::Successful),
            ..Default::default()
        });
        let failed = Desired::Registration(SipRegistrationStatus {
            phase: Some(RegistrationPhase::Failed),
            ..Default::default()
        });
        assert_eq!(failed.flip_from(Some(&ok)), Some("Failed"));
        assert_eq!(failed.flip_from(Some(&failed)), None);
    }

    #[test]
    fn a_callback_given_up_makes_one_event() {
        use switchboard_crds::registration::CallbackStatus;
        let with = |cb: CallbackStatus| {
            Desired::Registration(SipRegistrationStatus {
                phase: Some(RegistrationPhase::Failed),
                callback: Some(cb),
                ..Default::default()
            })
        };
        let trying = with(CallbackStatus {
            attempts: 2,
            last_error: Some("HTTP 503".into()),
            ..Default::default()
        });
        let gave_up = with(CallbackStatus {
            attempts: 8,
            last_error: Some("HTTP 503".into()),
            gave_up_phase: Some(RegistrationPhase::Failed),
            gave_up_time: Some(t(5)),
            ..Default::default()
        });
        assert_eq!(trying.callback_given_up(None), None);
        assert_eq!(
            gave_up.callback_given_up(Some(&trying)).as_deref(),
            Some("callback for phase Failed given up after 8 attempt(s): HTTP 503")
        );
        assert_eq!(gave_up.callback_given_up(Some(&gave_up)), None);
    }

    fn registered(d: &Desired) -> &Condition {
        match d {
            Desired::Device(dev) => dev.registered.as_ref().unwrap(),
            Desired::Registration(_) => panic!("not a device"),
        }
    }

    #[test]
    fn registered_condition_follows_the_state() {
        let reg = device_status(vec![contact("sip:a@x", 60), contact("sip:b@x", 60)], t(5));
        let c = registered_condition(&reg.registration, t(5));
        assert_eq!(
            (c.type_.as_str(), c.status.as_str(), c.reason.as_str()),
            ("Registered", "True", "Registered")
        );
        assert_eq!(
            c.message,
            "2 contact(s); sip:a@x over UDP from 192.0.2.1:5060 (phone)"
        );
        assert_eq!(
            (&c.last_transition_time, c.observed_generation),
            (&t(5), None)
        );
        assert_eq!(reg.registered.as_ref(), Some(&c));

        let unreg = device_status(vec![], t(9)).registered.unwrap();
        assert_eq!(
            (
                unreg.status.as_str(),
                unreg.reason.as_str(),
                unreg.message.as_str()
            ),
            ("False", "Unregistered", "no live binding")
        );
        assert_eq!(unreg.last_transition_time, t(9));
    }

    #[test]
    fn transition_time_moves_only_when_the_state_flips() {
        let first = Desired::Device(device_status(vec![contact("sip:a@x", 60)], t(0)));
        // A second contact is a change (written, change time moves) but not a flip.
        let mut more = Desired::Device(device_status(
            vec![contact("sip:a@x", 60), contact("sip:b@x", 60)],
            t(10),
        ));
        more.carry_transition(Some(&first));
        assert_eq!(registered(&more).last_transition_time, t(0));
        assert!(registered(&more).message.starts_with("2 contact(s)"));
        let Desired::Device(dev) = &more else {
            unreachable!()
        };
        assert_eq!(dev.registration.last_change_time, Some(t(10)));

        let mut gone = Desired::Device(device_status(vec![], t(20)));
        gone.carry_transition(Some(&more));
        assert_eq!(registered(&gone).last_transition_time, t(20));
        let mut back = Desired::Device(device_status(vec![contact("sip:a@x", 60)], t(30)));
        back.carry_transition(Some(&gone));
        assert_eq!(registered(&back).last_transition_time, t(30));
        let mut fresh = Desired::Device(device_status(vec![contact("sip:a@x", 60)], t(40)));
        fresh.carry_transition(None);
        assert_eq!(registered(&fresh).last_transition_time, t(40));
    }

    #[test]
    fn a_status_read_without_the_condition_is_rewritten_once() {
        let live = device_status(vec![contact("sip:a@x", 60)], t(100));
        let api = SipDeviceStatus {
            registration: Some(RegistrationStatus {
                last_change_time: Some(t(3)),
                ..live.registration.clone()
            }),
            ..Default::default()
        };
        let old = Desired::Device(DeviceStatus::from_api(&api).unwrap());
        let mut new = Desired::Device(live);
        assert!(!old.same_content(&new), "the condition is missing");
        assert_eq!(new.flip_from(Some(&old)), None, "no Event: nothing flipped");
        // Best bound known: the registration's last change.
        new.carry_transition(Some(&old));
        assert_eq!(registered(&new).last_transition_time, t(3));

        // Once written, the API's status carries it: the same state again is no change.
        let Desired::Device(written) = &new else {
            unreachable!()
        };
        let api = SipDeviceStatus {
            registration: Some(written.registration.clone()),
            conditions: vec![written.registered.clone().unwrap()],
            ..Default::default()
        };
        let primed = Desired::Device(DeviceStatus::from_api(&api).unwrap());
        let mut again = Desired::Device(device_status(vec![contact("sip:a@x", 900)], t(200)));
        assert!(primed.same_content(&again));
        again.carry_transition(Some(&primed));
        assert_eq!(registered(&again).last_transition_time, t(3));
        assert!(DeviceStatus::from_api(&SipDeviceStatus::default()).is_none());
    }

    #[test]
    fn keys_parse_from_ids() {
        let k = Key::parse(Kind::Device, "default/alice").unwrap();
        assert_eq!(
            (k.namespace.as_str(), k.name.as_str()),
            ("default", "alice")
        );
        assert!(Key::parse(Kind::Device, "alice").is_none());
        assert!(Key::parse(Kind::Device, "a/b/c").is_none());
    }

    #[test]
    fn dropped_for_new_credentials_says_so_and_names_its_event() {
        let registered = Desired::Device(device_status(vec![contact("sip:a@192.0.2.1", 60)], t(0)));
        let dropped = Desired::Device(credentials_changed_status(t(5)));
        let Desired::Device(d) = &dropped else {
            panic!()
        };
        let c = d.registered.as_ref().unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", CREDENTIALS_CHANGED)
        );
        assert!(c.message.contains("credentials changed"), "{}", c.message);
        assert_eq!(d.registration.state, RegistrationState::Unregistered);
        assert_eq!(
            dropped.flip_from(Some(&registered)),
            Some(CREDENTIALS_CHANGED)
        );
        // Not the same content as a plain unregistration: written, then replaced by one.
        let plain = Desired::Device(device_status(vec![], t(6)));
        assert!(!dropped.same_content(&plain));
        assert_eq!(plain.flip_from(Some(&dropped)), None);
    }
}
