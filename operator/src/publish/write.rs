//! Publishing I/O: apply shards, then delete stale ones.

use super::Plan;
use crate::MANAGER;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};

/// Applies a plan; returns the Secrets as the API server stored them, for the index.
pub async fn execute(client: &Client, namespace: &str, plan: &Plan) -> kube::Result<Vec<Secret>> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let params = PatchParams::apply(MANAGER).force();
    let mut stored = Vec::with_capacity(plan.writes.len());
    for secret in &plan.writes {
        let name = secret.name_any();
        stored.push(api.patch(&name, &params, &Patch::Apply(secret)).await?);
    }
    for name in &plan.deletes {
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(stored)
}
