//! After a restart: which devices the API still shows `Registered` that this replica can no
//! longer vouch for. Pure.
//!
//! A replica that restarts with the in-memory store has lost every binding, so every device
//! whose status it primed as `Registered` but that holds no binding now is stale, and waiting
//! for the settle resync (`feed::follow`) would leave it `Registered` for half a minute. With
//! a shared store (Redis) bindings survive a restart: only a device whose every contact this
//! very replica held and which has no binding left in the store is stale, which is rare (a pod
//! restarted under the same name after its bindings lapsed) but as certain.

use super::desired::{DeviceStatus, Key, Kind};
use std::collections::HashSet;
use switchboard_crds::device::RegistrationState;

/// Whose contacts a restarted replica answers for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// Every contact: the only replica, with its bindings in its own memory.
    AnyReplica,
    /// Contacts recorded as held by this replica (its name).
    Replica(String),
}

impl Holder {
    /// The holder for a replica named `me`: any replica when it is alone with the in-memory
    /// store (no other replica can hold a binding it would not see), else only itself.
    pub fn for_replica(me: &str, memory_store: bool, has_siblings: bool) -> Holder {
        if memory_store && !has_siblings {
            Holder::AnyReplica
        } else {
            Holder::Replica(me.to_string())
        }
    }

    /// Whether this replica vouches for `status`'s contacts: all held by it (a contact with no
    /// recorded replica is not).
    fn covers(&self, status: &DeviceStatus) -> bool {
        match self {
            Holder::AnyReplica => true,
            Holder::Replica(me) => {
                let contacts = &status.registration.contacts;
                !contacts.is_empty()
                    && contacts
                        .iter()
                        .all(|c| c.replica.as_deref() == Some(me.as_str()))
            }
        }
    }
}

/// The devices among `known` (the latest status of each, as primed from the API) that say
/// `Registered`, are covered by `holder`, and have no binding in `live` (device ids
/// `namespace/name` of the store's snapshot). Sorted, each once.
pub fn unvouched<'a>(
    known: impl IntoIterator<Item = (&'a Key, &'a DeviceStatus)>,
    live: &HashSet<&str>,
    holder: &Holder,
) -> Vec<Key> {
    let mut out: Vec<Key> = known
        .into_iter()
        .filter(|(key, status)| {
            key.kind == Kind::Device
                && status.registration.state == RegistrationState::Registered
                && holder.covers(status)
                && !live.contains(format!("{}/{}", key.namespace, key.name).as_str())
        })
        .map(|(key, _)| key.clone())
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::desired::device_status;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;
    use switchboard_crds::common::Transport;
    use switchboard_crds::device::ContactStatus;

    fn key(name: &str) -> Key {
        Key {
            kind: Kind::Device,
            namespace: "acme".into(),
            name: name.into(),
        }
    }

    fn held_by(replicas: &[Option<&str>]) -> DeviceStatus {
        let contacts = replicas
            .iter()
            .enumerate()
            .map(|(i, r)| ContactStatus {
                uri: format!("sip:phone@192.0.2.{i}:5060"),
                transport: Transport::Udp,
                source_address: format!("192.0.2.{i}:5060"),
                user_agent: None,
                expires: Time(Timestamp::from_second(4_000_000_000).unwrap()),
                replica: r.map(str::to_string),
            })
            .collect();
        device_status(contacts, Time(Timestamp::UNIX_EPOCH))
    }

    fn names(keys: Vec<Key>) -> Vec<String> {
        keys.into_iter().map(|k| k.name).collect()
    }

    #[test]
    fn alone_in_memory_every_registered_device_without_a_binding_is_stale() {
        let (a, b, c) = (key("a"), key("b"), key("c"));
        let registered = held_by(&[Some("registrar-old")]);
        let unregistered = held_by(&[]);
        let known = [(&a, &registered), (&b, &registered), (&c, &unregistered)];
        let live = HashSet::from(["acme/b"]);
        // a: no binding any more; b: came back; c: already Unregistered.
        assert_eq!(names(unvouched(known, &live, &Holder::AnyReplica)), ["a"]);
    }

    #[test]
    fn beside_siblings_only_devices_held_wholly_by_this_replica() {
        let me = Holder::Replica("r1".into());
        let (mine, theirs, mixed, unknown) = (key("mine"), key("theirs"), key("mixed"), key("unk"));
        let (s_mine, s_theirs, s_mixed, s_unknown) = (
            held_by(&[Some("r1"), Some("r1")]),
            held_by(&[Some("r2")]),
            held_by(&[Some("r1"), Some("r2")]),
            held_by(&[None]),
        );
        let known = [
            (&mine, &s_mine),
            (&theirs, &s_theirs),
            (&mixed, &s_mixed),
            (&unknown, &s_unknown),
        ];
        assert_eq!(names(unvouched(known, &HashSet::new(), &me)), ["mine"]);
        // With its binding still in the shared store, nothing changes.
        let live = HashSet::from(["acme/mine"]);
        assert!(unvouched(known, &live, &me).is_empty());
    }

    #[test]
    fn registrations_and_repeats_are_left_out() {
        let reg = Key {
            kind: Kind::Registration,
            ..key("trunk")
        };
        let dev = key("a");
        let s = held_by(&[Some("r1")]);
        let known = [(&reg, &s), (&dev, &s), (&dev, &s)];
        assert_eq!(
            names(unvouched(known, &HashSet::new(), &Holder::AnyReplica)),
            ["a"]
        );
    }

    #[test]
    fn the_holder_follows_the_store_and_the_siblings() {
        assert_eq!(Holder::for_replica("r1", true, false), Holder::AnyReplica);
        assert_eq!(
            Holder::for_replica("r1", false, false),
            Holder::Replica("r1".into())
        );
        assert_eq!(
            Holder::for_replica("r1", true, true),
            Holder::Replica("r1".into())
        );
        assert_eq!(
            Holder::for_replica("r1", false, true),
            Holder::Replica("r1".into())
        );
    }
}
