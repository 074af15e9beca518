//! Status I/O: server-side apply of the operator's fields, then the Events.

use super::Update;
use crate::events;
use crate::MANAGER;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::events::Recorder;
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
        let (reason, note) = (&e.reason, e.note.clone());
        events::publish(
            recorder,
            &update.reference,
            e.warning,
            reason,
            "Validate",
            note,
        )
        .await;
    }
    Ok(())
}
