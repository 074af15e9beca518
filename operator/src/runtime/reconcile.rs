//! One global reconcile pass: credentials → validate → compile → publish → statuses.
//!
//! The pure steps do the thinking; this file only performs their plans, in an order that keeps
//! the registrar safe: credentials exist before the config that needs them, the config is
//! published before statuses say `Ready`, and every write is folded back into the index at
//! once so the next pass does not repeat it.

use super::writer::{Job, JobKey, Writer};
use super::Context;
use crate::companions;
use crate::compile::{compile, Compiled, LastGood};
use crate::credentials::plan::{self as creds, OwnerKind};
use crate::events;
use crate::index::{Change, Index, Op};
use crate::key::ObjectKey;
use crate::validate::validate;
use crate::{publish, status};
use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::Resource;
use rand::Rng;
use std::time::Instant;
use switchboard_crds::shards;

/// What the operator remembers between passes.
#[derive(Debug, Default)]
pub struct Memory {
    /// Last accepted version of each pattern.
    pub last_good: LastGood,
    /// The digest nonce key every config carries.
    pub nonce_key: Option<String>,
    /// Whether memory was seeded from the published config.
    pub seeded: bool,
    /// Whether this leadership has labelled the Secrets generated before the label existed.
    pub labelled: bool,
}

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Credential Secrets written.
    pub credentials: usize,
    /// Whether a new config was published.
    pub published: bool,
    /// The config hash.
    pub hash: String,
    /// Status writes handed to the writer.
    pub statuses: usize,
    /// Writes not planned because the same object's write was still queued: the runtime runs
    /// another pass once they are done.
    pub skipped: Vec<JobKey>,
}

fn seed(memory: &mut Memory, index: &Index, rng: &mut impl Rng) {
    if memory.seeded {
        return;
    }
    if let Some(published) = &index.published {
        memory.nonce_key = published.nonce_key.clone();
        memory.last_good = published
            .patterns
            .iter()
            .map(|p| (p.id.clone(), p.clone()))
            .collect();
    }
    if memory.nonce_key.is_none() {
        let mut key = [0u8; 32];
        rng.fill_bytes(&mut key);
        memory.nonce_key = Some(hex::encode(key));
    }
    memory.seeded = true;
}

fn owner_ref(index: &Index, w: &creds::SecretWrite) -> Option<ObjectReference> {
    match w.owner_kind {
        OwnerKind::Device => index.devices.get(&w.owner).map(|d| d.object_ref()),
        OwnerKind::Registration => index.registrations.get(&w.owner).map(|o| o.object_ref(&())),
    }
}

/// Why a pass stopped early.
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    /// The API refused or failed a write.
    #[error(transparent)]
    Api(#[from] kube::Error),
    /// The renew deadline passed without a renewal: no more writes from this replica.
    #[error("not the leader any more: the Lease was not renewed within its renew deadline")]
    NotLeader,
}

/// Every write checks this first: only the leader, within its renew deadline, writes.
fn fenced(ctx: &Context) -> Result<(), PassError> {
    if ctx.fence.allows() {
        Ok(())
    } else {
        ctx.metrics.fenced_writes.inc();
        Err(PassError::NotLeader)
    }
}

/// Runs one pass. Only the leader calls this.
pub async fn pass(
    ctx: &Context,
    writer: &Writer,
    memory: &mut Memory,
    index: &mut Index,
    rng: &mut (impl Rng + Send),
) -> Result<Report, PassError> {
    ctx.metrics.reconciles.inc();
    let mut report = Report::default();
    seed(memory, index, rng);
    label_once(ctx, memory).await?;
    // 0. Companion devices the Sites keep for their users; each lands through the watch (or
    // the writer's outcome) and gets its credentials in a later pass.
    submit_companions(index, writer);
    // 1. Credentials: planned here, written by the writer; until then the owner is "being
    // written" (not ready, not invalid).
    report.credentials = submit_credentials(index, writer, rng);

    // 2-3. Validate and compile.
    let started = Instant::now();
    let verdicts = validate(index);
    let mut compiled = compile(
        index,
        &verdicts,
        &memory.last_good,
        memory.nonce_key.clone(),
    );
    ctx.metrics
        .compile_seconds
        .observe(started.elapsed().as_secs_f64());
    ctx.metrics.set_inventory(index, &compiled);
    report.hash = compiled.config.hash.clone();

    // 4. Publish.
    report.published = publish_config(ctx, index, &mut compiled).await?;
    for p in &compiled.config.patterns {
        memory.last_good.insert(p.id.clone(), p.clone());
    }
    memory
        .last_good
        .retain(|id, _| index.patterns.keys().any(|k| &k.to_string() == id));

    // 5. Statuses and Events, handed to the writer; each is folded into the index when it
    // lands. An object whose previous write is still queued is planned again after it.
    for update in status::plan(index, &verdicts, &compiled, Timestamp::now()) {
        let key = JobKey::Status(update.plural, update.key.clone());
        if writer.is_queued(&key) {
            report.skipped.push(key);
            continue;
        }
        // Its credentials are being written: its status is planned once they are.
        if matches!(index.credentials_in_writing.get(&update.key), Some(None)) {
            continue;
        }
        writer.submit(Job::Status(update));
        report.statuses += 1;
    }
    Ok(report)
}

/// Labels the Secrets generated before the operator watched by label, once per leadership.
async fn label_once(ctx: &Context, memory: &mut Memory) -> Result<(), PassError> {
    if memory.labelled {
        return Ok(());
    }
    fenced(ctx)?;
    let n = super::watch::label_generated_secrets(&ctx.client, &ctx.secret_namespaces).await?;
    if n > 0 {
        tracing::info!(
            secrets = n,
            "labelled generated credentials Secrets for the label-selected watch"
        );
    }
    memory.labelled = true;
    Ok(())
}

/// Hands the companion devices to write to the writer (one waiting or running per device).
fn submit_companions(index: &Index, writer: &Writer) {
    for w in companions::plan(index) {
        let key = JobKey::Companion(w.device());
        if writer.is_queued(&key) {
            continue;
        }
        let site = index.sites.get(w.site()).map(|s| s.object_ref(&()));
        writer.submit(Job::Companion(Box::new(w), site));
    }
}

/// Hands the credentials Secrets to write to the writer, marking their owners as being
/// written; forgets owners that are gone. Returns how many were submitted.
fn submit_credentials(index: &mut Index, writer: &Writer, rng: &mut impl Rng) -> usize {
    let mut submitted = 0;
    for w in creds::plan(index, rng) {
        let key = JobKey::Credentials(w.owner.clone());
        if writer.is_queued(&key) {
            continue;
        }
        index
            .credentials_in_writing
            .entry(w.owner.clone())
            .or_insert(None);
        let reference = owner_ref(index, &w);
        writer.submit(Job::Credentials(Box::new(w), reference));
        submitted += 1;
    }
    let owners_gone: Vec<ObjectKey> = index
        .credentials_in_writing
        .keys()
        .filter(|k| !index.devices.contains_key(*k) && !index.registrations.contains_key(*k))
        .cloned()
        .collect();
    for k in owners_gone {
        index.credentials_in_writing.remove(&k);
    }
    submitted
}

/// Publishes the compiled config when its hash changed (shard Secrets, stale ones deleted,
/// metrics, an Event); whether it did.
async fn publish_config(
    ctx: &Context,
    index: &mut Index,
    compiled: &mut Compiled,
) -> Result<bool, PassError> {
    let devices: usize = compiled
        .config
        .domains
        .iter()
        .map(|d| d.devices.len())
        .sum();
    ctx.metrics.config_devices.set(devices as i64);
    let Some(plan) = publish::plan(&mut compiled.config, index) else {
        return Ok(false);
    };
    let (bytes, count, deletes) = (plan.bytes, plan.writes.len(), plan.deletes.clone());
    let namespace = index.config_namespace.clone();
    fenced(ctx)?;
    publish::execute(&ctx.client, &namespace, plan, |s| {
        index.apply(Change::secret(Op::Apply(s)))
    })
    .await?;
    for name in &deletes {
        index.apply(Change::secret(Op::Delete(Secret {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            ..Secret::default()
        })));
    }
    ctx.metrics.config_generation.inc();
    ctx.metrics.config_bytes.set(bytes as i64);
    ctx.metrics.config_shards.set(count as i64);
    let hash = compiled.config.short_hash();
    tracing::info!(%hash, devices, bytes, shards = count, "config published");
    let reference = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Secret".into()),
        name: Some(shards::secret_name(0)),
        namespace: Some(namespace),
        ..ObjectReference::default()
    };
    let note = format!(
        "registrar config {hash} published: {devices} devices, {bytes} bytes in {count} shards"
    );
    events::publish(
        &ctx.recorder,
        &reference,
        false,
        "ConfigPublished",
        "Publish",
        note,
    )
    .await;
    Ok(true)
}
