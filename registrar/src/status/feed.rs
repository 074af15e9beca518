//! Feeds the reporter from the registrar's change events (`crate::registrar::events`): each
//! event carries the device's live bindings after the change, which become the desired
//! `status.registration`. If the event channel overflows (a burst larger than its buffer), the
//! reporter resynchronises from a snapshot of the location store, so no final state is lost.
//!
//! After a restart, two corrections of what the API still says: as soon as the first config is
//! in force, devices whose bindings this replica certainly lost ([`super::restart`]); and after
//! the settle pause, every device shown registered that holds no binding.

use super::restart::{self, Holder};
use super::{Desired, Key, Kind, Offer, StatusHandle};
use crate::config::ConfigHandle;
use crate::location::{Binding, LocationStore};
use crate::registrar::events::{ChangeKind, RegistrationEvent};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::SystemTime;
use switchboard_crds::device::ContactStatus;
use tokio::sync::broadcast::{self, error::RecvError};

/// A binding as a status contact.
pub fn contact_status(b: &Binding) -> ContactStatus {
    ContactStatus {
        uri: b.contact.clone(),
        transport: b.transport,
        source_address: b.source.to_string(),
        user_agent: b.user_agent.clone(),
        expires: Time(Timestamp::try_from(b.expires_at).unwrap_or(Timestamp::UNIX_EPOCH)),
        replica: (!b.replica.is_empty()).then(|| b.replica.clone()),
    }
}

impl StatusHandle {
    /// Hands in one change event.
    pub fn device_event(&self, ev: &RegistrationEvent) -> Offer {
        if ev.kind == ChangeKind::CredentialsChanged {
            return self.device_credentials_changed(&ev.device_id);
        }
        self.device_bindings(
            &ev.device_id,
            ev.bindings.iter().map(contact_status).collect(),
        )
    }

    /// The device `id` lost its bindings because its credentials changed: `Unregistered`,
    /// the condition and the Event saying why.
    fn device_credentials_changed(&self, id: &str) -> Offer {
        let Some(key) = Key::parse(Kind::Device, id) else {
            return Offer::Unchanged;
        };
        let status = super::desired::credentials_changed_status(super::now_time());
        self.offer(key, super::Desired::Device(status))
    }

    /// Offers every device of a store snapshot, and `Unregistered` for devices last known as
    /// registered that the snapshot no longer holds.
    pub fn resync(&self, snapshot: &[(String, Vec<Binding>)]) {
        let live: HashSet<&str> = snapshot.iter().map(|(id, _)| id.as_str()).collect();
        for (id, bindings) in snapshot {
            self.device_bindings(id, bindings.iter().map(contact_status).collect());
        }
        for key in self.registered_devices() {
            let id = format!("{}/{}", key.namespace, key.name);
            if !live.contains(id.as_str()) {
                self.device_bindings(&id, vec![]);
            }
        }
    }

    /// Offers `Unregistered` for every device this replica can no longer vouch for after a
    /// restart: primed as registered, covered by `holder`, absent from `snapshot`. Returns
    /// how many.
    pub fn correct_after_restart(
        &self,
        snapshot: &[(String, Vec<Binding>)],
        holder: &Holder,
    ) -> usize {
        let live: HashSet<&str> = snapshot.iter().map(|(id, _)| id.as_str()).collect();
        let stale = {
            let queue = self.shared.queue.lock();
            let known = queue.registered().filter_map(|k| match queue.latest(k) {
                Some(Desired::Device(d)) => Some((k, d)),
                _ => None,
            });
            restart::unvouched(known, &live, holder)
        };
        for key in &stale {
            self.device_bindings(&format!("{}/{}", key.namespace, key.name), vec![]);
        }
        stale.len()
    }

    fn registered_devices(&self) -> Vec<Key> {
        self.shared
            .queue
            .lock()
            .registered()
            .filter(|k| k.kind == Kind::Device)
            .cloned()
            .collect()
    }
}

async fn resync_from(handle: &StatusHandle, store: &Arc<dyn LocationStore>) {
    match store.snapshot(SystemTime::now()).await {
        Ok(snap) => handle.resync(&snap),
        Err(e) => {
            tracing::warn!(error = %e, "location snapshot failed; status may lag until the next change")
        }
    }
}

/// What a replica corrects once its first config is in force after a (re)start.
pub struct AfterStart {
    /// The config; the correction waits until one is loaded.
    pub config: Arc<ConfigHandle>,
    /// Whose contacts this replica answers for.
    pub holder: Holder,
}

async fn config_loaded(config: &ConfigHandle) {
    let mut changes = config.subscribe();
    while !config.is_loaded() {
        if changes.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

async fn correct_from(handle: &StatusHandle, store: &Arc<dyn LocationStore>, holder: &Holder) {
    match store.snapshot(SystemTime::now()).await {
        Ok(snap) => {
            let n = handle.correct_after_restart(&snap, holder);
            tracing::info!(
                devices = n,
                ?holder,
                "status of devices whose bindings were lost with the restart set Unregistered"
            );
        }
        Err(e) => {
            tracing::warn!(error = %e, "location snapshot failed; stale statuses wait for the settle resync")
        }
    }
}

/// Follows `events` until the channel closes. Once the first config is in force it corrects
/// the devices `after_start` says this replica certainly lost. `settle` after starting, it
/// resynchronises once from the location store, so devices the API shows as registered but
/// that hold no binding here (their binding was lost with a restart and they have not come
/// back) turn `Unregistered`; the pause lets phones that do come back re-register first.
pub async fn follow(
    handle: StatusHandle,
    mut events: broadcast::Receiver<RegistrationEvent>,
    store: Arc<dyn LocationStore>,
    settle: std::time::Duration,
    after_start: AfterStart,
) {
    let settled = tokio::time::sleep(settle);
    tokio::pin!(settled);
    let loaded = config_loaded(&after_start.config);
    tokio::pin!(loaded);
    let (mut resynced, mut corrected) = (false, false);
    loop {
        let ev = tokio::select! {
            ev = events.recv() => ev,
            _ = &mut loaded, if !corrected => {
                corrected = true;
                correct_from(&handle, &store, &after_start.holder).await;
                continue;
            }
            _ = &mut settled, if !resynced => {
                resynced = true;
                resync_from(&handle, &store).await;
                continue;
            }
        };
        match ev {
            Ok(ev) => {
                handle.device_event(&ev);
            }
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "status reporter fell behind the change events; resynchronising from the location store");
                match store.snapshot(SystemTime::now()).await {
                    Ok(snap) => handle.resync(&snap),
                    Err(e) => {
                        tracing::warn!(error = %e, "location snapshot failed; status may lag until the next change")
                    }
                }
            }
            Err(RecvError::Closed) => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::location::MemoryStore;
    use crate::status::{desired, reporter, StatusSettings};
    use std::time::Duration;
    use switchboard_crds::common::Transport;
    use switchboard_crds::config::RegistrarConfig;
    use switchboard_crds::device::RegistrationState;

    fn key(name: &str) -> Key {
        Key {
            kind: Kind::Device,
            namespace: "acme".into(),
            name: name.into(),
        }
    }

    /// What the API said before the restart: registered through `replica`.
    fn registered_through(replica: &str) -> Desired {
        let contact = ContactStatus {
            uri: "sip:phone@192.0.2.1:5060".into(),
            transport: Transport::Udp,
            source_address: "192.0.2.1:5060".into(),
            user_agent: None,
            expires: Time(Timestamp::from_second(4_000_000_000).unwrap()),
            replica: Some(replica.into()),
        };
        Desired::Device(desired::device_status(
            vec![contact],
            Time(Timestamp::UNIX_EPOCH),
        ))
    }

    fn state(handle: &StatusHandle, name: &str) -> Option<RegistrationState> {
        match handle.shared.queue.lock().latest(&key(name)) {
            Some(Desired::Device(d)) => Some(d.registration.state),
            _ => None,
        }
    }

    #[test]
    fn devices_without_a_binding_are_offered_unregistered_once() {
        let (handle, _reporter) = reporter(StatusSettings::default());
        handle.prime(key("gone"), registered_through("old-pod"));
        handle.prime(key("back"), registered_through("old-pod"));
        let binding = Binding {
            contact: "sip:phone@192.0.2.2:5060".into(),
            q: None,
            expires_at: SystemTime::now() + Duration::from_secs(60),
            registered_at: SystemTime::now(),
            updated_at: SystemTime::now(),
            call_id: "c".into(),
            cseq: 1,
            source: "192.0.2.2:5060".parse().unwrap(),
            transport: Transport::Udp,
            user_agent: None,
            replica: "new-pod".into(),
        };
        let snapshot = vec![("acme/back".to_string(), vec![binding])];
        assert_eq!(
            handle.correct_after_restart(&snapshot, &Holder::AnyReplica),
            1
        );
        assert_eq!(
            state(&handle, "gone"),
            Some(RegistrationState::Unregistered)
        );
        assert_eq!(state(&handle, "back"), Some(RegistrationState::Registered));
        assert_eq!(handle.pending(), 1);
        // Another replica's device is not this one's to correct.
        let (other, _r) = reporter(StatusSettings::default());
        other.prime(key("theirs"), registered_through("r2"));
        assert_eq!(
            other.correct_after_restart(&[], &Holder::Replica("r1".into())),
            0
        );
        assert_eq!(other.pending(), 0);
    }

    /// The correction waits for the first config, then comes long before the settle resync.
    #[tokio::test]
    async fn the_correction_follows_the_first_config_not_the_settle() {
        let (handle, _reporter) = reporter(StatusSettings::default());
        handle.prime(key("gone"), registered_through("old-pod"));
        let config = Arc::new(ConfigHandle::new());
        let (_tx, events) = broadcast::channel(16);
        let store: Arc<dyn LocationStore> = Arc::new(MemoryStore::new());
        let feed = tokio::spawn(follow(
            handle.clone(),
            events,
            store,
            Duration::from_secs(3600),
            AfterStart {
                config: config.clone(),
                holder: Holder::AnyReplica,
            },
        ));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(handle.pending(), 0, "nothing before a config is in force");
        config.replace(RegistrarConfig::default().seal());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while state(&handle, "gone") != Some(RegistrationState::Unregistered) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "not corrected in 5 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        feed.abort();
    }
}
