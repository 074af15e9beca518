//! The status each object should have, and the Events a change deserves: pure.
//!
//! The operator owns, on every kind, the `Accepted` and `Ready` conditions and
//! `observedGeneration`; on devices also `sipUri`, `credentialsSecret`, `effective`; on sites
//! `devices` and `registered`; on patterns `usedBy`. [`plan`] compares those fields of the
//! object's current status with what they should be and yields a server-side-apply body only
//! for objects where something differs, so a steady cluster gets no status writes. The current
//! status is seen through a [`StatusDigest`] (the index keeps no more of a device's
//! status than that).
//! `lastTransitionTime` moves only when a condition's status flips
//! ([`switchboard_crds::common::set_condition`]).
//!
//! Events follow condition changes, never reconciles: `Invalid` (Warning) when `Accepted`
//! turns False or its message changes, `Accepted` (Normal) when it turns True.

mod write;

pub use write::execute;

use crate::compile::{Compiled, Ready};
use crate::effective;
use crate::index::status_digest::{self as digest, CondState, StatusDigest};
use crate::index::{Device, Index};
use crate::key::ObjectKey;
use crate::validate::{Problem, Verdicts};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::Resource;
use serde_json::{json, Map, Value};
use switchboard_crds::common::condition;
use switchboard_crds::SipDevice;

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

/// The object a status write is for.
struct Target {
    key: ObjectKey,
    reference: ObjectReference,
    plural: &'static str,
    api_version: String,
    kind: String,
}

impl Target {
    fn of<K: Resource<DynamicType = ()>>(obj: &K, plural: &'static str) -> Self {
        Target {
            key: ObjectKey::of(obj),
            reference: obj.object_ref(&()),
            plural,
            api_version: K::api_version(&()).into_owned(),
            kind: K::kind(&()).into_owned(),
        }
    }

    fn device(d: &Device) -> Self {
        Target {
            key: d.key.clone(),
            reference: d.object_ref(),
            plural: "sipdevices",
            api_version: SipDevice::api_version(&()).into_owned(),
            kind: SipDevice::kind(&()).into_owned(),
        }
    }
}

/// The digest of a whole object's current status.
fn current<K: serde::Serialize>(status: Option<&K>, owned: &[&str]) -> StatusDigest {
    StatusDigest::of_status(status, owned)
}

/// Builds the update for one object if the fields it owns (nulls mean "not set") or its two
/// conditions differ from what `current` says it has.
fn diff(
    target: Target,
    current: &StatusDigest,
    mut fields: Map<String, Value>,
    accepted: Condition,
    ready: Condition,
) -> Option<Update> {
    let after = [
        CondState::carry(current.accepted.as_ref(), accepted),
        CondState::carry(current.ready.as_ref(), ready),
    ];
    fields.retain(|_, v| !v.is_null());
    if digest::digest(&fields, &[&after[0], &after[1]]) == current.digest {
        return None;
    }
    let mut events = Vec::new();
    let now = &after[0];
    let changed = current.accepted.is_none_or(|b| {
        b.status != digest::CondStatus::of(&now.status) || b.message != digest_message(now)
    });
    if changed && now.status == "True" {
        events.push(EventSpec {
            warning: false,
            reason: "Accepted".into(),
            note: format!("{} {} is valid", target.kind, target.key.name),
        });
    } else if changed {
        events.push(EventSpec {
            warning: true,
            reason: "Invalid".into(),
            note: now.message.clone(),
        });
    }
    let mut status = fields;
    status.insert("conditions".into(), serde_json::to_value(&after).ok()?);
    Some(Update {
        key: target.key,
        reference: target.reference,
        plural: target.plural,
        body: json!({
            "apiVersion": target.api_version,
            "kind": target.kind,
            "status": status,
        }),
        events,
    })
}

fn digest_message(c: &Condition) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    std::hash::Hash::hash(c.message.as_str(), &mut h);
    std::hash::Hasher::finish(&h)
}

const SITE_FIELDS: &[&str] = &["observedGeneration", "devices", "registered"];
const DEVICE_FIELDS: &[&str] = crate::index::OWNED_FIELDS;
const PATTERN_FIELDS: &[&str] = &["observedGeneration", "usedBy"];
const REGISTRATION_FIELDS: &[&str] = &["observedGeneration"];

/// Every status write the verdicts and the compiled outcome call for, made one at a time as
/// the caller asks: a first pass over 100 000 devices writes 100 000 statuses, and their
/// bodies are not all held at once.
pub fn plan<'a>(
    index: &'a Index,
    verdicts: &'a Verdicts,
    compiled: &'a Compiled,
    now: Timestamp,
) -> impl Iterator<Item = Update> + 'a {
    let sites = index.sites.iter().filter_map(move |(key, site)| {
        let out = compiled.sites.get(key)?;
        let g = site.metadata.generation;
        let mut fields = Map::new();
        fields.insert("observedGeneration".into(), json!(g));
        fields.insert("devices".into(), json!(out.devices));
        fields.insert("registered".into(), json!(out.registered));
        diff(
            Target::of(&**site, "sites"),
            &current(site.status.as_ref(), SITE_FIELDS),
            fields,
            accepted_condition(verdicts.sites.get(key), g, now),
            ready_condition(&out.ready, g, now),
        )
    });
    let devices = index.devices.iter().filter_map(move |(key, device)| {
        let out = compiled.devices.get(key)?;
        let g = device.generation;
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
        diff(
            Target::device(device),
            &device.status,
            fields,
            accepted_condition(verdicts.devices.get(key), g, now),
            ready_condition(&out.ready, g, now),
        )
    });
    let patterns = index.patterns.iter().filter_map(move |(key, pattern)| {
        let out = compiled.patterns.get(key)?;
        let g = pattern.metadata.generation;
        let mut fields = Map::new();
        fields.insert("observedGeneration".into(), json!(g));
        fields.insert("usedBy".into(), json!(out.used_by));
        diff(
            Target::of(&**pattern, "callpatterns"),
            &current(pattern.status.as_ref(), PATTERN_FIELDS),
            fields,
            accepted_condition(verdicts.patterns.get(key), g, now),
            ready_condition(&out.ready, g, now),
        )
    });
    let registrations = index.registrations.iter().filter_map(move |(key, reg)| {
        let ready = compiled.registrations.get(key)?;
        let g = reg.metadata.generation;
        let mut fields = Map::new();
        fields.insert("observedGeneration".into(), json!(g));
        diff(
            Target::of(&**reg, "sipregistrations"),
            &current(reg.status.as_ref(), REGISTRATION_FIELDS),
            fields,
            accepted_condition(verdicts.registrations.get(key), g, now),
            ready_condition(ready, g, now),
        )
    });
    sites.chain(devices).chain(patterns).chain(registrations)
}

#[cfg(test)]
mod tests;

/// What an applied update changes in the index's copy of its object: for a device, its new
/// status digest (small, so a pass can keep one per written device until it may change the
/// index); for the other kinds, the update.
#[derive(Clone, Debug)]
pub enum Applied {
    /// A device's new status digest.
    Device(ObjectKey, StatusDigest),
    /// Another kind's update.
    Object(Update),
}

impl Applied {
    /// Of an update the API accepted. The operator's field manager owns every field it writes:
    /// after the apply a device's owned fields are exactly the body's, and its two conditions
    /// the body's.
    pub fn of(update: Update) -> Self {
        if update.plural == "sipdevices" {
            let digest = StatusDigest::of(update.body.get("status"), DEVICE_FIELDS);
            Applied::Device(update.key, digest)
        } else {
            Applied::Object(update)
        }
    }
}

/// Writes an applied update into the index's copy of the object, as the watch will shortly, so
/// the next pass does not apply (and announce) it again.
pub fn merge_into(index: &mut Index, update: &Update) {
    merge(index, Applied::of(update.clone()));
}

/// [`merge_into`], from what was kept of the update.
pub fn merge(index: &mut Index, applied: Applied) {
    let update = match applied {
        Applied::Device(key, digest) => {
            if let Some(d) = index.devices.get_mut(&key) {
                d.status = digest;
            }
            return;
        }
        Applied::Object(update) => update,
    };
    let update = &update;
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
