//! What the registrar wants a resource's status to say, and when two such states differ
//! enough to be worth a write. Pure.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use switchboard_crds::device::{ContactStatus, RegistrationState, RegistrationStatus};
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
    /// `SipDevice.status.registration`.
    Device(RegistrationStatus),
    /// `SipRegistration.status` phase fields (conditions and observedGeneration left empty).
    Registration(SipRegistrationStatus),
}

/// A device's live bindings as a desired status. Contacts are sorted so order never counts.
pub fn device_status(mut contacts: Vec<ContactStatus>, changed: Time) -> RegistrationStatus {
    contacts.sort_by(|a, b| (&a.uri, &a.source_address).cmp(&(&b.uri, &b.source_address)));
    RegistrationStatus {
        state: if contacts.is_empty() {
            RegistrationState::Unregistered
        } else {
            RegistrationState::Registered
        },
        contacts,
        last_change_time: Some(changed),
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
    /// change of expiry alone (a steady refresh) does not count, nor does the change time.
    pub fn same_content(&self, other: &Desired) -> bool {
        match (self, other) {
            (Desired::Device(a), Desired::Device(b)) => {
                a.state == b.state
                    && a.contacts.len() == b.contacts.len()
                    && a.contacts
                        .iter()
                        .zip(&b.contacts)
                        .all(|(x, y)| same_contact(x, y))
            }
            (Desired::Registration(a), Desired::Registration(b)) => a == b,
            _ => false,
        }
    }

    /// The state a phase Event is named after, when it changed from `previous`.
    pub fn flip_from(&self, previous: Option<&Desired>) -> Option<&'static str> {
        match (self, previous) {
            (Desired::Device(now), prev) => {
                let before = match prev {
                    Some(Desired::Device(p)) => Some(p.state),
                    _ => None,
                };
                match (before, now.state) {
                    (Some(b), n) if b == n => None,
                    // After a restart nothing is known: only a registration is news.
                    (None, RegistrationState::Unregistered) => None,
                    (_, RegistrationState::Registered) => Some("Registered"),
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
    fn keys_parse_from_ids() {
        let k = Key::parse(Kind::Device, "default/alice").unwrap();
        assert_eq!(
            (k.namespace.as_str(), k.name.as_str()),
            ("default", "alice")
        );
        assert!(Key::parse(Kind::Device, "alice").is_none());
        assert!(Key::parse(Kind::Device, "a/b/c").is_none());
    }
}
