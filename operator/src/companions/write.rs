//! Makes one [`CompanionWrite`]: a server-side apply or a delete of the SipDevice, and an Event
//! on the Site that keeps it.

use super::CompanionWrite;
use crate::events;
use crate::MANAGER;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::events::Recorder;
use kube::{Api, Client, ResourceExt};
use switchboard_crds::SipDevice;

/// Applies or deletes the device; returns the device as stored after an apply. A conflict is
/// not written: only its Warning Event is.
pub async fn execute(
    client: &Client,
    recorder: &Recorder,
    w: &CompanionWrite,
    site: Option<&ObjectReference>,
) -> Result<Option<SipDevice>, kube::Error> {
    let key = w.device();
    let api: Api<SipDevice> = Api::namespaced(client.clone(), &key.namespace);
    let (stored, warning, reason, note) = match w {
        CompanionWrite::Apply { device, .. } => {
            let stored = api
                .patch(
                    &key.name,
                    &PatchParams::apply(MANAGER).force(),
                    &Patch::Apply(&**device),
                )
                .await?;
            let user = user_of(&stored);
            let note = format!("companion device {} applied for user {user}", key.name);
            (Some(stored), false, "CompanionDeviceApplied", note)
        }
        CompanionWrite::Delete { .. } => {
            api.delete(&key.name, &DeleteParams::default()).await?;
            let note = format!(
                "companion device {} deleted: its user left spec.users, opted out, or the site \
                 no longer keeps companion devices",
                key.name
            );
            (None, false, "CompanionDeviceDeleted", note)
        }
        CompanionWrite::Conflict { user, .. } => {
            let note = format!(
                "user {user} gets no companion device: SipDevice {} exists and is not this \
                 site's (no {} label); rename or delete it",
                key.name,
                switchboard_crds::device::COMPANION_OF_LABEL
            );
            (None, true, "CompanionDeviceConflict", note)
        }
    };
    if let Some(site) = site {
        events::publish(recorder, site, warning, reason, "CompanionDevices", note).await;
    }
    Ok(stored)
}

fn user_of(d: &SipDevice) -> String {
    d.spec
        .assignment
        .as_ref()
        .and_then(|a| a.user.as_ref())
        .map_or_else(|| d.name_any(), |u| u.user.clone())
}
