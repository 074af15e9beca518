//! Keeps each Site's `ProvisioningReady` condition true to its login Secret: when a Site is new
//! or its spec changed, and every 30 s for every Site (the Secrets are not watched: the service
//! keeps no Secret), the Secret a Site names is read; a condition
//! that would change is applied (server-side apply of that one list-map entry under field
//! manager `switchboard-provisioning`, so the operator's conditions stay), with an Event when
//! it flips (Warning when it turns false, saying what to fix).

use crate::inventory::kube::KubeSource;
use crate::inventory::Source;
use crate::record::FIELD_MANAGER;
use crate::site_check::{self, Verdict, CONDITION};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use switchboard_crds::common::find_condition;
use switchboard_crds::Site;

/// How often every Site's login Secret is read again.
pub const PERIOD: Duration = Duration::from_secs(30);

/// Runs for ever.
pub async fn run(client: Client, source: Arc<KubeSource>, instance: Option<String>) {
    let events = Recorder::new(
        client.clone(),
        Reporter {
            controller: FIELD_MANAGER.into(),
            instance,
        },
    );
    // The generation each site was last checked at: a Site event (the operator's status
    // writes make many) rechecks only sites whose spec changed; the period rechecks all.
    let mut checked: HashMap<(String, String), Option<i64>> = HashMap::new();
    let mut everything = true;
    loop {
        if !source.ready() {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let sites = source.sites();
        let keys: HashSet<_> = sites.iter().map(key).collect();
        checked.retain(|k, _| keys.contains(k));
        for site in sites {
            let generation = site.metadata.generation;
            if !everything && checked.get(&key(&site)) == Some(&generation) {
                continue;
            }
            match check(&client, &events, source.as_ref(), &site).await {
                Ok(()) => {
                    checked.insert(key(&site), generation);
                }
                Err(e) => {
                    tracing::warn!(site = %site.name_any(), error = %e, "could not check the site's provisioning login")
                }
            }
        }
        // A burst of Site events (the first list) makes one pass, not one each.
        everything = tokio::select! {
            _ = source.site_changed() => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                false
            }
            _ = tokio::time::sleep(PERIOD) => true,
        };
    }
}

fn key(site: &Site) -> (String, String) {
    (site.namespace().unwrap_or_default(), site.name_any())
}

/// The condition as applied: `lastTransitionTime` kept while the status stays.
pub fn condition(
    v: &Verdict,
    current: Option<&Condition>,
    generation: Option<i64>,
    now: Time,
) -> Condition {
    let status = if v.ready { "True" } else { "False" };
    let since = current
        .filter(|c| c.status == status)
        .map_or(now, |c| c.last_transition_time.clone());
    Condition {
        type_: CONDITION.into(),
        status: status.into(),
        reason: v.reason.into(),
        message: v.message.clone(),
        observed_generation: generation,
        last_transition_time: since,
    }
}

async fn check(
    client: &Client,
    events: &Recorder,
    source: &KubeSource,
    site: &Site,
) -> anyhow::Result<()> {
    let site_ns = site.namespace().unwrap_or_default();
    let secret = match &site.spec.provisioning {
        Some(p) => {
            source
                .secret(&site_ns, &p.credentials_secret_ref.name)
                .await?
        }
        None => None,
    };
    let Some(v) = site_check::verdict(site, secret.as_ref()) else {
        return Ok(());
    };
    let conditions = site
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let current = find_condition(conditions, CONDITION);
    let same = current.is_some_and(|c| {
        (c.status == "True") == v.ready && c.reason == v.reason && c.message == v.message
    });
    if same {
        return Ok(());
    }
    let now = Time(Timestamp::now());
    let wanted = condition(&v, current, site.metadata.generation, now);
    let body = Patch::Apply(json!({
        "apiVersion": format!("{}/{}", switchboard_crds::GROUP, switchboard_crds::VERSION),
        "kind": "Site",
        "status": { "conditions": [wanted] },
    }));
    let api: Api<Site> = Api::namespaced(client.clone(), &site_ns);
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let written = api.patch_status(&site.name_any(), &pp, &body).await?;
    if current.is_none_or(|c| (c.status == "True") != v.ready) {
        let event = Event {
            type_: if v.ready {
                EventType::Normal
            } else {
                EventType::Warning
            },
            reason: v.reason.into(),
            note: Some(v.message.clone()),
            action: "CheckProvisioningLogin".into(),
            secondary: None,
        };
        events.publish(&event, &written.object_ref(&())).await?;
    }
    Ok(())
}
