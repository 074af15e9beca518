//! What the status planner needs of an object's current status, without keeping the status.
//!
//! The planner writes only when the fields the operator owns, or its two conditions, would
//! change. Deciding that takes the old values' digest, not the old values: a
//! [`StatusDigest`] holds a 64-bit digest of the owned fields and the `Accepted` and `Ready`
//! conditions, and of each condition what the next one depends on (its status, since when, and
//! for `Accepted` a digest of the message, which decides whether an Event is due). At 100 000
//! devices that is 56 bytes each instead of the whole status.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Map, Value};
use std::hash::{DefaultHasher, Hash, Hasher};
use switchboard_crds::common::{condition, find_condition};

/// A condition's `status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CondStatus {
    /// `"True"`.
    True,
    /// `"False"`.
    False,
    /// Anything else (the operator never writes it, so it always differs from what it writes).
    Other,
}

impl CondStatus {
    /// Of a condition's `status` string.
    pub fn of(s: &str) -> Self {
        match s {
            "True" => CondStatus::True,
            "False" => CondStatus::False,
            _ => CondStatus::Other,
        }
    }
}

/// What a condition's successor depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CondState {
    /// Its status.
    pub status: CondStatus,
    /// Its `lastTransitionTime`, kept while the status stays.
    pub since: Timestamp,
    /// Digest of its message.
    pub message: u64,
}

impl CondState {
    fn of(c: &Condition) -> Self {
        CondState {
            status: CondStatus::of(&c.status),
            since: c.last_transition_time.0,
            message: digest_str(&c.message),
        }
    }

    /// `new`, keeping this condition's transition time when the status did not change (what
    /// [`switchboard_crds::common::set_condition`] does).
    pub fn carry(this: Option<&Self>, mut new: Condition) -> Condition {
        if let Some(old) = this {
            if old.status == CondStatus::of(&new.status) {
                new.last_transition_time.0 = old.since;
            }
        }
        new
    }
}

/// The current status, as far as the operator's writes are concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusDigest {
    /// Digest of the owned fields (nulls left out) and the `Accepted` and `Ready` conditions.
    pub digest: u64,
    /// The `Accepted` condition.
    pub accepted: Option<CondState>,
    /// The `Ready` condition.
    pub ready: Option<CondState>,
}

impl Default for StatusDigest {
    fn default() -> Self {
        StatusDigest::of(None, &[])
    }
}

fn digest_str(s: &str) -> u64 {
    let mut h = DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

/// Hashes a JSON value with object keys in sorted order, so the digest does not depend on the
/// order fields were inserted in.
fn hash_value(v: &Value, h: &mut DefaultHasher) {
    match v {
        Value::Null => 0u8.hash(h),
        Value::Bool(b) => (1u8, b).hash(h),
        Value::Number(n) => (2u8, n.to_string()).hash(h),
        Value::String(s) => (3u8, s).hash(h),
        Value::Array(a) => {
            (4u8, a.len()).hash(h);
            for x in a {
                hash_value(x, h);
            }
        }
        Value::Object(m) => {
            (5u8, m.len()).hash(h);
            let mut entries: Vec<_> = m.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            for (k, x) in entries {
                k.hash(h);
                hash_value(x, h);
            }
        }
    }
}

fn hash_condition(c: &Condition, h: &mut DefaultHasher) {
    (
        &c.type_,
        &c.status,
        &c.reason,
        &c.message,
        c.observed_generation,
        c.last_transition_time.0,
    )
        .hash(h);
}

/// The digest of owned `fields` (no nulls) and the picked conditions, in order.
pub fn digest(fields: &Map<String, Value>, conditions: &[&Condition]) -> u64 {
    let mut h = DefaultHasher::new();
    fields.len().hash(&mut h);
    let mut entries: Vec<_> = fields.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    for (k, v) in entries {
        k.hash(&mut h);
        hash_value(v, &mut h);
    }
    conditions.len().hash(&mut h);
    for c in conditions {
        hash_condition(c, &mut h);
    }
    h.finish()
}

/// The `Accepted` and `Ready` conditions of a list, those present, in that order.
pub fn pick(conditions: &[Condition]) -> Vec<&Condition> {
    [condition::ACCEPTED, condition::READY]
        .iter()
        .filter_map(|t| find_condition(conditions, t))
        .collect()
}

impl StatusDigest {
    /// Of a status as JSON (`None`: no status), whose owned fields are `owned`.
    pub fn of(status: Option<&Value>, owned: &[&str]) -> Self {
        let mut fields = Map::new();
        let mut conditions: Vec<Condition> = Vec::new();
        if let Some(status) = status {
            for f in owned {
                if let Some(v) = status.get(*f).filter(|v| !v.is_null()) {
                    fields.insert((*f).to_string(), v.clone());
                }
            }
            conditions = status
                .get("conditions")
                .and_then(|c| serde_json::from_value(c.clone()).ok())
                .unwrap_or_default();
        }
        let picked = pick(&conditions);
        StatusDigest {
            digest: digest(&fields, &picked),
            accepted: find_condition(&conditions, condition::ACCEPTED).map(CondState::of),
            ready: find_condition(&conditions, condition::READY).map(CondState::of),
        }
    }

    /// Of a typed status.
    pub fn of_status<S: serde::Serialize>(status: Option<&S>, owned: &[&str]) -> Self {
        let value = status.and_then(|s| serde_json::to_value(s).ok());
        StatusDigest::of(value.as_ref(), owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use serde_json::json;

    fn cond(t: &str, status: &str, message: &str) -> Condition {
        Condition {
            type_: t.into(),
            status: status.into(),
            reason: "R".into(),
            message: message.into(),
            observed_generation: Some(1),
            last_transition_time: Time(Timestamp::from_second(1_800_000_000).unwrap()),
        }
    }

    #[test]
    fn field_order_and_foreign_fields_do_not_matter() {
        let a = json!({"observedGeneration": 1, "usedBy": 2, "registration": {"state": "x"},
                       "conditions": [cond("Registered", "True", ""), cond("Accepted", "True", "")]});
        let b = json!({"usedBy": 2, "observedGeneration": 1,
                       "conditions": [cond("Accepted", "True", "")]});
        let owned = ["observedGeneration", "usedBy"];
        assert_eq!(
            StatusDigest::of(Some(&a), &owned),
            StatusDigest::of(Some(&b), &owned)
        );
        let c = json!({"usedBy": 3, "observedGeneration": 1,
                       "conditions": [cond("Accepted", "True", "")]});
        assert_ne!(
            StatusDigest::of(Some(&a), &owned).digest,
            StatusDigest::of(Some(&c), &owned).digest
        );
    }

    #[test]
    fn conditions_keep_their_transition_time_while_status_stays() {
        let old = CondState::of(&cond("Ready", "True", "m"));
        let mut new = cond("Ready", "True", "m2");
        new.last_transition_time = Time(Timestamp::from_second(1_900_000_000).unwrap());
        assert_eq!(
            CondState::carry(Some(&old), new.clone())
                .last_transition_time
                .0,
            old.since
        );
        new.status = "False".into();
        let moved = CondState::carry(Some(&old), new.clone());
        assert_eq!(moved.last_transition_time, new.last_transition_time);
    }
}
