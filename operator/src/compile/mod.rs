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

mod hash;
mod outcome;

pub use hash::seal;
pub use outcome::{Compiled, DeviceOutcome, NotReady, PatternOutcome, Ready, SiteOutcome};

use crate::credentials::Resolved;
use crate::effective;
use crate::index::{Device, Index};
use crate::key::ObjectKey;
use crate::validate::Verdicts;
use std::collections::{BTreeMap, BTreeSet};
use switchboard_crds::config::{
    ha1, ha1b, DeviceConfig, DomainConfig, OutboundRegistration, PatternConfig, RegistrarConfig,
    UserConfig,
};
use switchboard_crds::device::AssignmentKind;
use switchboard_crds::site::SiteSpec;

/// The last accepted version of each pattern, by id (`namespace/name`).
pub type LastGood = BTreeMap<String, PatternConfig>;

fn pattern_config(key: &ObjectKey, spec: &switchboard_crds::CallPatternSpec) -> PatternConfig {
    PatternConfig {
        id: key.to_string(),
        rules: spec.dial_rules(),
        route: spec.route.clone(),
    }
}

/// A published device in one of its domains.
struct Member<'a> {
    device: &'a Device,
    site: Option<&'a SiteSpec>,
    creds: &'a Resolved,
}

/// A device's entry in a domain.
fn device_config(
    m: Member,
    realm: &str,
    pattern_ids: &BTreeMap<&ObjectKey, String>,
) -> DeviceConfig {
    let (spec, site, c) = (&m.device.spec, m.site, m.creds);
    let eff = effective::settings(spec, site);
    let restrictions = match (&spec.site, &spec.user) {
        (Some(sa), _) => sa
            .call_restrictions()
            .or_else(|| site.map(|s| &s.call_restrictions)),
        (None, Some(_)) => site.map(|s| &s.call_restrictions),
        (None, None) => None,
    };
    let (user, receive_calls) = match &spec.user {
        Some(u) => (Some(u.user.clone()), u.receive_calls),
        None => (None, false),
    };
    let (ha1_md5, ha1_sha256) = ha1(&c.username, realm, &c.password);
    let (ha1b_md5, ha1b_sha256) = ha1b(&c.username, realm, &c.password);
    DeviceConfig {
        id: m.device.key.to_string(),
        sip_user: c.username.clone(),
        ha1_md5,
        ha1_sha256,
        ha1b_md5: Some(ha1b_md5),
        ha1b_sha256: Some(ha1b_sha256),
        assignment: eff.assignment,
        extension: match eff.assignment {
            AssignmentKind::Site => eff.extension,
            _ => None,
        },
        user,
        receive_calls,
        caller_id: eff.outbound_caller_id,
        patterns: effective::patterns(spec, site)
            .iter()
            .map(|p| pattern_ids[&m.device.key.sibling(p)].clone())
            .collect(),
        restrictions: restrictions.cloned().unwrap_or_default(),
        max_contacts: spec.max_contacts,
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
    // Patterns available to devices: accepted now, or accepted before.
    let mut available: BTreeMap<ObjectKey, PatternConfig> = BTreeMap::new();
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

    // Domains of accepted sites.
    let mut domains: BTreeMap<ObjectKey, DomainConfig> = BTreeMap::new();
    for (key, site) in &index.sites {
        let s = &site.spec;
        let ready = if verdicts.site_ok(key) {
            domains.insert(
                key.clone(),
                DomainConfig {
                    domain: s.domain.clone(),
                    site: key.to_string(),
                    extensions: s.extensions.clone(),
                    default_caller_id: s.default_outbound_caller_id.clone(),
                    trusted_peers: s.trusted_peers.clone(),
                    registration: s.registration.clone(),
                    users: s
                        .users
                        .iter()
                        .map(|u| UserConfig {
                            name: u.name.clone(),
                            extension: u.extension.clone(),
                        })
                        .collect(),
                    devices: Vec::new(),
                },
            );
            Ok(())
        } else {
            Err(NotReady::new("NotAccepted", "the Site is not accepted"))
        };
        out.sites.insert(
            key.clone(),
            SiteOutcome {
                devices: 0,
                registered: 0,
                ready,
            },
        );
    }
    let mut domains_by_ns: BTreeMap<std::sync::Arc<str>, Vec<ObjectKey>> = BTreeMap::new();
    for key in domains.keys() {
        domains_by_ns
            .entry(key.namespace.clone())
            .or_default()
            .push(key.clone());
    }
    // Pattern ids as the config spells them, made once.
    let pattern_ids: BTreeMap<&ObjectKey, String> =
        available.keys().map(|k| (k, k.to_string())).collect();

    let mut used_patterns: BTreeSet<ObjectKey> = BTreeSet::new();
    let mut members: BTreeMap<ObjectKey, Vec<Member>> = BTreeMap::new();
    for (key, device) in &index.devices {
        let spec = &device.spec;
        let site_key = spec.site_name().map(|s| key.sibling(s));
        let site = site_key.as_ref().and_then(|k| index.sites.get(k));
        let site_spec = site.map(|s| &s.spec);
        if let Some(counts) = site_key.as_ref().and_then(|k| out.sites.get_mut(k)) {
            counts.devices += 1;
            counts.registered += u32::from(device.registered);
        }
        let creds = verdicts.device_credentials.get(key);
        let no_homes: &[ObjectKey] = &[];
        let own_home: [ObjectKey; 1];
        let homes: &[ObjectKey] = match &site_key {
            Some(k) if domains.contains_key(k) => {
                own_home = [k.clone()];
                &own_home
            }
            Some(_) => no_homes,
            None => domains_by_ns
                .get(&*key.namespace)
                .map(Vec::as_slice)
                .unwrap_or_default(),
        };
        let sip_uri = match (creds, site, homes.first()) {
            (Some(c), Some(s), _) => Some(format!("sip:{}@{}", c.username, s.spec.domain)),
            (Some(c), None, Some(home)) => {
                Some(format!("sip:{}@{}", c.username, domains[home].domain))
            }
            _ => None,
        };
        let pattern_keys: Vec<ObjectKey> = effective::patterns(spec, site_spec)
            .iter()
            .map(|p| key.sibling(p))
            .collect();
        let ready = if !verdicts.device_ok(key) {
            Err(NotReady::new(
                "NotAccepted",
                "the SipDevice is not accepted",
            ))
        } else if creds.is_none() {
            Err(credentials_not_ready(index, key))
        } else if site_key.is_some() && homes.is_empty() {
            Err(NotReady::new(
                "SiteNotAccepted",
                format!(
                    "Site {:?} is not accepted",
                    spec.site_name().unwrap_or_default()
                ),
            ))
        } else if let Some(missing) = pattern_keys.iter().find(|k| !available.contains_key(k)) {
            Err(NotReady::new(
                "PatternNotAccepted",
                format!("CallPattern {:?} is not accepted", missing.name),
            ))
        } else if homes.is_empty() {
            Err(NotReady::new(
                "NoDomain",
                "unassigned, and no accepted Site in the namespace to register to",
            ))
        } else {
            Ok(())
        };
        if let (Ok(()), Some(c)) = (&ready, creds) {
            for pk in &pattern_keys {
                if let Some(p) = out.patterns.get_mut(pk) {
                    p.used_by += 1;
                }
                if !used_patterns.contains(pk) {
                    used_patterns.insert(pk.clone());
                }
            }
            for home in homes {
                members.entry(home.clone()).or_default().push(Member {
                    device,
                    site: site_spec,
                    creds: c,
                });
            }
        }
        out.devices
            .insert(key.clone(), DeviceOutcome { sip_uri, ready });
    }

    // The devices' entries, domain by domain, after every outcome: what is built here is
    // exactly what publishing serializes and drops, and it lies together in memory.
    for (home, list) in members {
        let domain = domains.get_mut(&home).expect("home is a compiled domain");
        domain.devices.reserve_exact(list.len());
        for m in list {
            let entry = device_config(m, &domain.domain, &pattern_ids);
            domain.devices.push(entry);
        }
    }

    let mut registrations = Vec::new();
    for (key, reg) in &index.registrations {
        let creds = verdicts.registration_credentials.get(key);
        let upstream = reg.spec.upstream();
        let ready = match (verdicts.registration_ok(key), creds, upstream) {
            (true, Some(c), Ok(up)) => {
                registrations.push(OutboundRegistration {
                    id: key.to_string(),
                    aor: reg.spec.aor.clone(),
                    realm: reg.spec.realm.clone(),
                    username: reg.spec.username.clone(),
                    auth_username: reg.spec.auth_username.clone(),
                    password: c.password.clone(),
                    host: up.host,
                    port: up.port,
                    transport: up.transport,
                    expires: reg.spec.expires,
                    subscribe: reg.spec.subscribe,
                    outbound_proxy: reg.spec.outbound_proxy.clone(),
                    target: reg.spec.target.clone(),
                    callback: verdicts.registration_callbacks.get(key).cloned(),
                });
                Ok(())
            }
            (true, None, _) => Err(credentials_not_ready(index, key)),
            _ => Err(NotReady::new(
                "NotAccepted",
                "the SipRegistration is not accepted",
            )),
        };
        out.registrations.insert(key.clone(), ready);
    }

    let mut config = RegistrarConfig {
        nonce_key,
        domains: domains.into_values().collect(),
        patterns: used_patterns
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

/// Why an accepted object without resolved credentials is not ready: its generated Secret is
/// being written, or the write failed (the operator retries it).
fn credentials_not_ready(index: &Index, key: &ObjectKey) -> NotReady {
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
