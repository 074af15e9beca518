//! The status each object should have, and the Events a change deserves: pure.
//!
//! The operator owns, on every kind, the `Accepted` and `Ready` conditions and
//! `observedGeneration`; on devices also `sipUri`, `credentialsSecret`, `effective`; on sites
//! `devices` and `registered`; on patterns `usedBy`. [`plan`] compares those fields of the
//! object's current status with what they should be and yields a server-side-apply body only
//! for objects where something differs, so a steady cluster gets no status writes.
//! `lastTransitionTime` moves only when a condition's status flips
//! ([`switchboard_crds::common::set_condition`]).
//!
//! Events follow condition changes, never reconciles: `Invalid` (Warning) when `Accepted`
//! turns False or its message changes, `Accepted` (Normal) when it turns True.

mod write;

pub use write::execute;

use crate::compile::{Compiled, Ready};
use crate::effective;
use crate::index::Index;
use crate::key::ObjectKey;
use crate::validate::{Problem, Verdicts};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::{Resource, ResourceExt};
use serde_json::{json, Map, Value};
use switchboard_crds::common::{condition, find_condition, set_condition};

/// An Event to publish about an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventSpec {
    /// Warning rather than Normal.
    pub warning: bool,
    /// CamelCase reason.
    pub reason: String,
    /// Human-readable note.
    pub note: String,
}

/// One object's status write.
#[derive(Clone, Debug)]
pub struct Update {
    /// The object.
    pub key: ObjectKey,
    /// Its reference, for Events.
    pub reference: ObjectReference,
    /// Plural resource name (`sipdevices`), for the API path.
    pub plural: &'static str,
    /// The server-side-apply body (`apiVersion`, `kind`, `status`).
    pub body: Value,
    /// Events about the change.
    pub events: Vec<EventSpec>,
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

fn accepted_condition(
    problems: Option<&Vec<Problem>>,
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    let (status, reason, message) = match problems.filter(|p| !p.is_empty()) {
        None => ("True", "Accepted", String::new()),
        Some(ps) => (
            "False",
            ps[0].reason.as_str(),
            ps.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        ),
    };
    Condition {
        type_: condition::ACCEPTED.into(),
        status: status.into(),
        reason: reason.into(),
        message: truncate(message, 1024),
        observed_generation: generation,
        last_transition_time: Time(now),
    }
}

fn ready_condition(ready: &Ready, generation: Option<i64>, now: Timestamp) -> Condition {
    let (status, reason, message) = match ready {
        Ok(()) => (
            "True",
            "Published",
            "in the published registrar config".to_string(),
        ),
        Err(nr) => ("False", nr.reason, nr.message.clone()),
    };
    Condition {
        type_: condition::READY.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        observed_generation: generation,
        last_transition_time: Time(now),
    }
}

/// The operator's fields of a status, as JSON, from the object's current status.
fn owned_view(status: &Value, fields: &[&str]) -> Map<String, Value> {
    let mut out = Map::new();
    for f in fields {
        if let Some(v) = status.get(*f).filter(|v| !v.is_null()) {
            out.insert((*f).to_string(), v.clone());
        }
    }
    out
}

/// Builds the update for one object if the fields it owns (`owned`, plus the two conditions)
/// differ from `fields` (nulls mean "not set").
fn diff<K>(
    obj: &K,
    plural: &'static str,
    owned: &[&str],
    mut fields: Map<String, Value>,
    accepted: Condition,
    ready: Condition,
) -> Option<Update>
where
    K: Resource<DynamicType = ()> + serde::Serialize,
{
    let current = serde_json::to_value(obj)
        .ok()?
        .get("status")
        .cloned()
        .unwrap_or(Value::Null);
    let current_conditions: Vec<Condition> = current
        .get("conditions")
        .and_then(|c| serde_json::from_value(c.clone()).ok())
        .unwrap_or_default();
    let mut conditions = current_conditions.clone();
    set_condition(&mut conditions, accepted);
    set_condition(&mut conditions, ready);
    let pick = |cs: &[Condition]| -> Vec<Condition> {
        [condition::ACCEPTED, condition::READY]
            .iter()
            .filter_map(|t| find_condition(cs, t).cloned())
            .collect()
    };
    let (before, after) = (pick(&current_conditions), pick(&conditions));
    fields.retain(|_, v| !v.is_null());
    if owned_view(&current, owned) == fields && before == after {
        return None;
    }
    let mut events = Vec::new();
    let before_accepted = find_condition(&before, condition::ACCEPTED);
    if let Some(now) = find_condition(&after, condition::ACCEPTED) {
        let changed =
            before_accepted.is_none_or(|b| b.status != now.status || b.message != now.message);
        if changed && now.status == "True" {
            events.push(EventSpec {
                warning: false,
                reason: "Accepted".into(),
                note: format!("{} {} is valid", K::kind(&()), obj.name_any()),
            });
        } else if changed {
            events.push(EventSpec {
                warning: true,
                reason: "Invalid".into(),
                note: now.message.clone(),
            });
        }
    }
    let mut status = fields;
    status.insert("conditions".into(), serde_json::to_value(&after).ok()?);
    Some(Update {
        key: ObjectKey::of(obj),
        reference: obj.object_ref(&()),
        plural,
        body: json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "status": status,
        }),
        events,
    })
}

const SITE_FIELDS: &[&str] = &["observedGeneration", "devices", "registered"];
const DEVICE_FIELDS: &[&str] = &[
    "observedGeneration",
    "sipUri",
    "credentialsSecret",
    "effective",
];
const PATTERN_FIELDS: &[&str] = &["observedGeneration", "usedBy"];
const REGISTRATION_FIELDS: &[&str] = &["observedGeneration"];

/// Every status write the verdicts and the compiled outcome call for.
pub fn plan(
    index: &Index,
    verdicts: &Verdicts,
    compiled: &Compiled,
    now: Timestamp,
) -> Vec<Update> {
    let mut updates = Vec::new();
    for (key, site) in &index.sites {
        let Some(out) = compiled.sites.get(key) else {
            continue;
        };
        let g = site.metadata.generation;
        let mut fields = Map::new();
        fields.insert("observedGeneration".into(), json!(g));
        fields.insert("devices".into(), json!(out.devices));
        fields.insert("registered".into(), json!(out.registered));
        updates.extend(diff(
            &**site,
            "sites",
            SITE_FIELDS,
            fields,
            accepted_condition(verdicts.sites.get(key), g, now),
            ready_condition(&out.ready, g, now),
        ));
    }
    for (key, device) in &index.devices {
        let Some(out) = compiled.devices.get(key) else {
            continue;
        };
        let g = device.metadata.generation;
        let mut fields = Map::new();
        fields.insert("observedGeneration".into(), json!(g));
        fields.insert("sipUri".into(), json!(out.sip_uri));
        let secret = crate::credentials::device_secret(device).0;
        fields.insert("credentialsSecret".into(), json!(secret));
        let eff = effective::of_device(index, device);
        fields.insert(
            "effective".into(),
            serde_json::to_value(&eff).unwrap_or(Value::Null),
        );
        updates.extend(diff(
            &**device,
            "sipdevices",
            DEVICE_FIELDS,
            fields,
            accepted_condition(verdicts.devices.get(key), g, now),
            ready_condition(&out.ready, g, now),
        ));
    }
    for (key, pattern) in &index.patterns {
        let Some(out) = compiled.patterns.get(key) else {
            continue;
        };
        let g = pattern.metadata.generation;
        let mut fields = Map::new();
        fields.insert("observedGeneration".into(), json!(g));
        fields.insert("usedBy".into(), json!(out.used_by));
        updates.extend(diff(
            &**pattern,
            "callpatterns",
            PATTERN_FIELDS,
            fields,
            accepted_condition(verdicts.patterns.get(key), g, now),
            ready_condition(&out.ready, g, now),
        ));
    }
    for (key, reg) in &index.registrations {
        let Some(ready) = compiled.registrations.get(key) else {
            continue;
        };
        let g = reg.metadata.generation;
        let mut fields = Map::new();
        fields.insert("observedGeneration".into(), json!(g));
        updates.extend(diff(
            &**reg,
            "sipregistrations",
            REGISTRATION_FIELDS,
            fields,
            accepted_condition(verdicts.registrations.get(key), g, now),
            ready_condition(ready, g, now),
        ));
    }
    updates
}

#[cfg(test)]
mod tests;

/// Writes an applied update into the index's copy of the object, as the watch will shortly, so
/// the next pass does not apply (and announce) it again.
pub fn merge_into(index: &mut Index, update: &Update) {
    fn merged<K>(obj: &K, update: &Update) -> Option<K>
    where
        K: serde::Serialize + serde::de::DeserializeOwned,
    {
        let mut value = serde_json::to_value(obj).ok()?;
        let new = update.body.get("status")?.as_object()?;
        let status = value
            .as_object_mut()?
            .entry("status")
            .or_insert_with(|| json!({}));
        if status.is_null() {
            *status = json!({});
        }
        let status = status.as_object_mut()?;
        let mut conditions: Vec<Condition> = status
            .get("conditions")
            .and_then(|c| serde_json::from_value(c.clone()).ok())
            .unwrap_or_default();
        for (k, v) in new {
            if k == "conditions" {
                let mine: Vec<Condition> = serde_json::from_value(v.clone()).ok()?;
                conditions.retain(|c| !mine.iter().any(|m| m.type_ == c.type_));
                conditions.extend(mine);
            } else {
                status.insert(k.clone(), v.clone());
            }
        }
        status.insert("conditions".into(), serde_json::to_value(conditions).ok()?);
        serde_json::from_value(value).ok()
    }
    use crate::index::{Change, Op};
    let key = &update.key;
    let change = match update.plural {
        "sites" => index
            .sites
            .get(key)
            .and_then(|o| merged(&**o, update))
            .map(|o| Change::Site(Op::Apply(o))),
        "sipdevices" => index
            .devices
            .get(key)
            .and_then(|o| merged(&**o, update))
            .map(|o| Change::Device(Op::Apply(o))),
        "callpatterns" => index
            .patterns
            .get(key)
            .and_then(|o| merged(&**o, update))
            .map(|o| Change::Pattern(Op::Apply(o))),
        "sipregistrations" => index
            .registrations
            .get(key)
            .and_then(|o| merged(&**o, update))
            .map(|o| Change::Registration(Op::Apply(o))),
        _ => None,
    };
    if let Some(change) = change {
        index.apply(change);
    }
}
