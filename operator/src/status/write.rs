//! Status I/O: server-side apply of the operator's fields, then the Events.

use super::Update;
use crate::MANAGER;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Client};
use switchboard_crds::{GROUP, VERSION};

/// Applies one status update and publishes its Events. An Event that cannot be published is
/// logged, not returned: retrying the apply would publish the others twice.
pub async fn execute(client: &Client, recorder: &Recorder, update: &Update) -> kube::Result<()> {
    let kind = update.body["kind"].as_str().unwrap_or_default();
    let ar = ApiResource {
        group: GROUP.into(),
        version: VERSION.into(),
        api_version: format!("{GROUP}/{VERSION}"),
        kind: kind.into(),
        plural: update.plural.into(),
    };
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &update.key.namespace, &ar);
    api.patch_status(
        &update.key.name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&update.body),
    )
    .await?;
    for e in &update.events {
        let event = Event {
            type_: if e.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: e.reason.clone(),
            note: Some(e.note.clone()),
            action: "Validate".into(),
            secondary: None,
        };
        if let Err(err) = recorder.publish(&event, &update.reference).await {
            tracing::warn!(object = %update.key, error = %err, reason = %e.reason, "event not published");
        }
    }
    Ok(())
}
