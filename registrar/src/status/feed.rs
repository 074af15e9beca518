//! Feeds the reporter from the registrar's change events (`crate::registrar::events`): each
//! event carries the device's live bindings after the change, which become the desired
//! `status.registration`. If the event channel overflows (a burst larger than its buffer), the
//! reporter resynchronises from a snapshot of the location store, so no final state is lost.

use super::{Key, Kind, Offer, StatusHandle};
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

/// Follows `events` until the channel closes. `settle` after starting, it resynchronises once
/// from the location store, so devices the API shows as registered but that hold no binding
/// here (their binding was lost with a restart and they have not come back) turn
/// `Unregistered`; the pause lets phones that do come back re-register first.
pub async fn follow(
    handle: StatusHandle,
    mut events: broadcast::Receiver<RegistrationEvent>,
    store: Arc<dyn LocationStore>,
    settle: std::time::Duration,
) {
    let settled = tokio::time::sleep(settle);
    tokio::pin!(settled);
    let mut resynced = false;
    loop {
        let ev = tokio::select! {
            ev = events.recv() => ev,
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
