//! "The later one loses": uniqueness across objects.

use super::{Problem, Problems};
use crate::key::ObjectKey;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use std::collections::BTreeMap;

/// Sort key for "which object came first": creationTimestamp (objects without one last), then
/// namespace and name. Claims a site makes itself (its users' extensions) come before all.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Age(Option<(bool, Timestamp)>, ObjectKey);

impl Age {
    /// The age of an object.
    pub fn of<K: ResourceExt>(obj: &K) -> Self {
        let ts = obj.meta().creation_timestamp.as_ref().map(|t| t.0);
        Age(
            Some((ts.is_none(), ts.unwrap_or_default())),
            ObjectKey::of(obj),
        )
    }

    /// Older than any object: for claims made by the object a value is checked in.
    pub fn first(key: ObjectKey) -> Self {
        Age(None, key)
    }

    /// The claimant's key.
    pub fn key(&self) -> &ObjectKey {
        &self.1
    }
}

/// Claims on values; the oldest claimant of a value keeps it.
pub struct Claims<G: Ord> {
    claims: BTreeMap<G, Vec<(Age, String)>>,
}

impl<G: Ord> Default for Claims<G> {
    fn default() -> Self {
        Claims {
            claims: BTreeMap::new(),
        }
    }
}

impl<G: Ord + Clone> Claims<G> {
    /// A claimant (described as `label` in the loser's message) claims `value`.
    pub fn claim(&mut self, value: G, age: Age, label: String) {
        self.claims.entry(value).or_default().push((age, label));
    }

    /// Records a conflict on every claimant but the oldest of each value:
    /// `"{describe(value)} is already used by {winner}"`. Claims by the checked object itself
    /// ([`Age::first`]) are never reported.
    pub fn report(self, problems: &mut Problems, describe: impl Fn(&G) -> String) {
        for (value, mut claimants) in self.claims {
            if claimants.len() < 2 {
                continue;
            }
            claimants.sort();
            let (winner_age, winner) = claimants[0].clone();
            for (age, _) in claimants.into_iter().skip(1) {
                if age.0.is_none() || age.key() == winner_age.key() {
                    continue;
                }
                let message = format!("{} is already used by {winner}", describe(&value));
                problems
                    .entry(age.1)
                    .or_default()
                    .push(Problem::conflict(message));
            }
        }
    }
}
