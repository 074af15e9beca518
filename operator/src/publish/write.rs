//! Publishing I/O: apply shards, then delete stale ones.

use super::Plan;
use crate::MANAGER;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::core::Status;
use kube::{Api, Client, ResourceExt};
use switchboard_crds::shards;

/// Applies a plan, handing each Secret as the API server stored it to `stored` (for the index)
/// as soon as it is written; each shard is dropped once written, so the plan's bytes and the
/// stored copies are not all held at once. A plan of more shards than registrars read is
/// refused before anything is written (413, the config in force stays).
pub async fn execute(
    client: &Client,
    namespace: &str,
    plan: Plan,
    mut stored: impl FnMut(Secret),
) -> kube::Result<()> {
    if let Err(e) = shards::check_count(plan.writes.len(), plan.bytes) {
        let status = Status::failure(&e.to_string(), "RequestEntityTooLarge").with_code(413);
        return Err(kube::Error::Api(status.boxed()));
    }
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let params = PatchParams::apply(MANAGER).force();
    for secret in plan.writes {
        let name = secret.name_any();
        let written = api.patch(&name, &params, &Patch::Apply(&secret)).await?;
        drop(secret);
        stored(written);
    }
    for name in &plan.deletes {
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
