//! The config compiler: a pure function from the index and the verdicts to the
//! [`RegistrarConfig`] every registrar replica runs on, and to what each object's status says
//! about it (effective settings, SIP URI, readiness, counts).
//!
//! Deterministic: every list is sorted ([`RegistrarConfig::canonicalize`]) and the content hash
//! is SHA-256 of the canonical JSON, so the same objects always give the same bytes and hash,
//! and an unchanged cluster republishes nothing.
//!
//! What goes in: accepted sites (one domain each); accepted devices whose site and patterns are
//! in (HA1 digests for the site's domain as realm, never the password; an unassigned device is
//! listed in every domain of its namespace); accepted registrations (with the password, which
//! outbound digest needs); the patterns those devices use. A pattern whose current spec is not
//! accepted keeps its last accepted version ([`LastGood`]) so a typo in a shared dial plan does
//! not take every phone using it out of service.

mod devices;
mod hash;
mod outcome;
mod registrations;
mod sites;

pub use hash::seal;
pub use outcome::{Compiled, DeviceOutcome, NotReady, PatternOutcome, Ready, SiteOutcome};

use crate::index::Index;
use crate::key::ObjectKey;
use crate::validate::Verdicts;
use std::collections::BTreeMap;
use switchboard_crds::config::{PatternConfig, RegistrarConfig};

/// The last accepted version of each pattern, by id (`namespace/name`).
pub type LastGood = BTreeMap<String, PatternConfig>;

fn pattern_config(key: &ObjectKey, spec: &switchboard_crds::CallPatternSpec) -> PatternConfig {
    PatternConfig {
        id: key.to_string(),
        rules: spec.dial_rules(),
        route: spec.route.clone(),
    }
}

/// Compiles the config. `nonce_key` is carried over from the previous config so replicas keep
/// accepting each other's challenges across publications.
pub fn compile(
    index: &Index,
    verdicts: &Verdicts,
    last_good: &LastGood,
    nonce_key: Option<String>,
) -> Compiled {
    let mut out = Compiled::default();
    let available = available_patterns(index, verdicts, last_good, &mut out);
    let mut domains = sites::domains(index, verdicts, &mut out);
    let placed = devices::place(
        &devices::Context::new(index, verdicts, &domains, &available),
        &mut out,
    );
    // Pattern ids as the config spells them, made once.
    let pattern_ids: BTreeMap<&ObjectKey, String> =
        available.keys().map(|k| (k, k.to_string())).collect();
    // The devices' entries, domain by domain, after every outcome: what is built here is
    // exactly what publishing serializes and drops, and it lies together in memory.
    for (home, list) in placed.members {
        let domain = domains.get_mut(&home).expect("home is a compiled domain");
        domain.devices.reserve_exact(list.len());
        for m in list {
            let entry = devices::device_config(m, &domain.domain, &pattern_ids);
            domain.devices.push(entry);
        }
    }
    let registrations = registrations::outbound(index, verdicts, &mut out);
    let mut config = RegistrarConfig {
        nonce_key,
        domains: domains.into_values().collect(),
        patterns: placed
            .used_patterns
            .iter()
            .filter_map(|k| available.get(k).cloned())
            .collect(),
        registrations,
        ..RegistrarConfig::default()
    };
    config.canonicalize();
    out.config = seal(config);
    out
}

/// Patterns available to devices, accepted now or accepted before ([`LastGood`]); each one's
/// outcome goes into `out`.
fn available_patterns(
    index: &Index,
    verdicts: &Verdicts,
    last_good: &LastGood,
    out: &mut Compiled,
) -> BTreeMap<ObjectKey, PatternConfig> {
    let mut available = BTreeMap::new();
    for (key, p) in &index.patterns {
        let ready = if verdicts.pattern_ok(key) {
            available.insert(key.clone(), pattern_config(key, &p.spec));
            Ok(())
        } else if let Some(prev) = last_good.get(&key.to_string()) {
            available.insert(key.clone(), prev.clone());
            Ok(())
        } else {
            Err(NotReady::new(
                "NotAccepted",
                "the CallPattern is not accepted",
            ))
        };
        out.patterns
            .insert(key.clone(), PatternOutcome { used_by: 0, ready });
    }
    available
}

/// Why an accepted object without resolved credentials is not ready: its generated Secret is
/// being written, or the write failed (the operator retries it).
pub(super) fn credentials_not_ready(index: &Index, key: &ObjectKey) -> NotReady {
    match index.credentials_in_writing.get(key) {
        Some(Some(error)) => NotReady::new(
            "CredentialsNotWritten",
            format!(
                "the operator cannot write its credentials Secret (retrying): {error}; it needs \
                 create and patch on secrets in namespace {}",
                key.namespace
            ),
        ),
        _ => NotReady::new(
            "CredentialsPending",
            "its credentials Secret is being written",
        ),
    }
}

#[cfg(test)]
mod tests;
