//! One global reconcile pass: credentials → validate → compile → publish → statuses.
//!
//! The pure steps do the thinking; this file only performs their plans, in an order that keeps
//! the registrar safe: credentials exist before the config that needs them, the config is
//! published before statuses say `Ready`, and every write is folded back into the index at
//! once so the next pass does not repeat it.

use super::Context;
use crate::compile::{compile, LastGood};
use crate::credentials::plan::{self as creds, OwnerKind};
use crate::index::{Change, Index, Op};
use crate::validate::validate;
use crate::{publish, status, MANAGER};
use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};
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
    /// Status writes made.
    pub statuses: usize,
    /// Writes that failed (the pass is retried).
    pub failures: usize,
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

async fn publish_event(
    ctx: &Context,
    reference: &ObjectReference,
    warning: bool,
    reason: &str,
    action: &str,
    note: String,
) {
    let event = Event {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason.into(),
        note: Some(note),
        action: action.into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, reference).await {
        tracing::warn!(error = %e, object = ?reference.name, reason, "event not published");
    }
}

/// Runs one pass. Only the leader calls this.
pub async fn pass(
    ctx: &Context,
    memory: &mut Memory,
    index: &mut Index,
    rng: &mut (impl Rng + Send),
) -> Result<Report, kube::Error> {
    ctx.metrics.reconciles.inc();
    let mut report = Report::default();
    seed(memory, index, rng);

    // 1. Credentials.
    for w in creds::plan(index, rng) {
        let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &w.owner.namespace);
        let name = w.secret.name_any();
        let stored = api
            .patch(
                &name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&w.secret),
            )
            .await?;
        tracing::info!(owner = %w.owner, secret = %name, reason = w.reason.as_str(), "credentials written");
        report.credentials += 1;
        if let Some(reference) = owner_ref(index, &w) {
            let note = match w.reason {
                creds::Reason::Generated => format!("generated SIP credentials in Secret {name}"),
                creds::Reason::Rotated => format!("new password in Secret {name}"),
                creds::Reason::Renamed => format!("SIP user name updated in Secret {name}"),
            };
            publish_event(
                ctx,
                &reference,
                false,
                w.reason.as_str(),
                "Credentials",
                note,
            )
            .await;
        }
        index.apply(Change::secret(Op::Apply(stored)));
    }

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
    let devices: usize = compiled
        .config
        .domains
        .iter()
        .map(|d| d.devices.len())
        .sum();
    ctx.metrics.config_devices.set(devices as i64);
    report.hash = compiled.config.hash.clone();

    // 4. Publish.
    if let Some(plan) = publish::plan(&mut compiled.config, index) {
        let (bytes, count, deletes) = (plan.bytes, plan.writes.len(), plan.deletes.clone());
        let namespace = index.config_namespace.clone();
        publish::execute(&ctx.client, &namespace, plan, |s| {
            index.apply(Change::secret(Op::Apply(s)))
        })
        .await?;
        for name in &deletes {
            index.apply(Change::secret(Op::Delete(Secret {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(index.config_namespace.clone()),
                    ..ObjectMeta::default()
                },
                ..Secret::default()
            })));
        }
        ctx.metrics.config_generation.inc();
        ctx.metrics.config_bytes.set(bytes as i64);
        ctx.metrics.config_shards.set(count as i64);
        tracing::info!(hash = %compiled.config.short_hash(), devices, bytes, shards = count, "config published");
        let reference = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Secret".into()),
            name: Some(shards::secret_name(0)),
            namespace: Some(index.config_namespace.clone()),
            ..ObjectReference::default()
        };
        let note = format!(
            "registrar config {} published: {devices} devices, {} bytes in {} shards",
            compiled.config.short_hash(),
            bytes,
            count
        );
        publish_event(ctx, &reference, false, "ConfigPublished", "Publish", note).await;
        report.published = true;
    }
    for p in &compiled.config.patterns {
        memory.last_good.insert(p.id.clone(), p.clone());
    }
    memory
        .last_good
        .retain(|id, _| index.patterns.keys().any(|k| &k.to_string() == id));

    // 5. Statuses and Events.
    // Updates are planned one at a time; what each write changes in the index is kept small
    // and folded in once the plan no longer reads the index.
    let mut applied = Vec::new();
    for update in status::plan(index, &verdicts, &compiled, Timestamp::now()) {
        match status::execute(&ctx.client, &ctx.recorder, &update).await {
            Ok(()) => {
                ctx.metrics.status_writes.inc();
                report.statuses += 1;
                applied.push(status::Applied::of(update));
            }
            Err(e) => {
                // Deleted meanwhile, or a conflict: the next pass sees the new state.
                ctx.metrics.errors.inc();
                report.failures += 1;
                tracing::warn!(object = %update.key, error = %e, "status write failed");
            }
        }
    }
    for a in applied {
        status::merge(index, a);
    }
    Ok(report)
}
