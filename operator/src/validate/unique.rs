//! "The later one loses": uniqueness across objects.
//!
//! Claims are collected in a vector and sorted once (no per-value allocation), which matters at
//! 100 000 devices.

use super::{Problem, Problems};
use crate::key::ObjectKey;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use std::cmp::Ordering;

/// Who claims a value. Site users come first (a site's own users keep their extensions), then
/// objects by creationTimestamp (objects without one last), then namespace and name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claimant<'a> {
    /// A user listed in a site.
    SiteUser {
        /// The site.
        site: &'a ObjectKey,
        /// The user's name.
        user: &'a str,
    },
    /// An object.
    Object {
        /// Kind, for messages.
        kind: &'static str,
        /// `(no timestamp, timestamp)`.
        created: (bool, Timestamp),
        /// Its key.
        key: &'a ObjectKey,
    },
}

impl<'a> Claimant<'a> {
    /// An object as claimant.
    pub fn object<K: ResourceExt>(kind: &'static str, obj: &K, key: &'a ObjectKey) -> Self {
        let ts = obj.meta().creation_timestamp.as_ref().map(|t| t.0);
        Claimant::created(kind, ts, key)
    }

    /// An object created at `ts` as claimant.
    pub fn created(kind: &'static str, ts: Option<Timestamp>, key: &'a ObjectKey) -> Self {
        Claimant::Object {
            kind,
            created: (ts.is_none(), ts.unwrap_or_default()),
            key,
        }
    }

    fn label(&self) -> String {
        match self {
            Claimant::SiteUser { site, user } => format!("user {user:?} of Site {site}"),
            Claimant::Object { kind, key, .. } => format!("{kind} {key}"),
        }
    }
}

impl Ord for Claimant<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        use Claimant::*;
        match (self, other) {
            (SiteUser { site: a, user: x }, SiteUser { site: b, user: y }) => (a, x).cmp(&(b, y)),
            (SiteUser { .. }, Object { .. }) => Ordering::Less,
            (Object { .. }, SiteUser { .. }) => Ordering::Greater,
            (
                Object {
                    created: ca,
                    key: ka,
                    ..
                },
                Object {
                    created: cb,
                    key: kb,
                    ..
                },
            ) => (ca, ka).cmp(&(cb, kb)),
        }
    }
}

impl PartialOrd for Claimant<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Claims on values; the first claimant of a value keeps it.
pub struct Claims<'a, G: Ord> {
    claims: Vec<(G, Claimant<'a>)>,
}

impl<G: Ord> Default for Claims<'_, G> {
    fn default() -> Self {
        Claims { claims: Vec::new() }
    }
}

impl<'a, G: Ord> Claims<'a, G> {
    /// Room for `n` claims.
    pub fn with_capacity(n: usize) -> Self {
        Claims {
            claims: Vec::with_capacity(n),
        }
    }

    /// `who` claims `value`.
    pub fn claim(&mut self, value: G, who: Claimant<'a>) {
        self.claims.push((value, who));
    }

    /// Records a conflict on every object claimant but the first of each value:
    /// `"{describe(value)} is already used by {winner}"`.
    pub fn report(mut self, problems: &mut Problems, describe: impl Fn(&G) -> String) {
        self.claims.sort_unstable();
        let mut i = 0;
        while i < self.claims.len() {
            let mut j = i + 1;
            while j < self.claims.len() && self.claims[j].0 == self.claims[i].0 {
                j += 1;
            }
            let winner = &self.claims[i].1;
            for (value, loser) in &self.claims[i + 1..j] {
                if let Claimant::Object { key, .. } = loser {
                    if loser != winner {
                        let message =
                            format!("{} is already used by {}", describe(value), winner.label());
                        problems
                            .entry((*key).clone())
                            .or_default()
                            .push(Problem::conflict(message));
                    }
                }
            }
            i = j;
        }
    }
}
