//! Devices: where each is published (its site's domain, or for an unassigned device every
//! domain of its namespace), whether it is ready, and its entry in a domain.

use super::credentials_not_ready;
use super::outcome::{Compiled, DeviceOutcome, NotReady};
use crate::credentials::Resolved;
use crate::effective;
use crate::index::{Device, Index};
use crate::key::ObjectKey;
use crate::validate::Verdicts;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use switchboard_crds::config::{ha1, ha1b, DeviceConfig, DomainConfig, PatternConfig};
use switchboard_crds::device::AssignmentKind;
use switchboard_crds::site::SiteSpec;

/// A published device in one of its domains.
pub(super) struct Member<'a> {
    device: &'a Device,
    site: Option<&'a SiteSpec>,
    creds: &'a Resolved,
}

/// A device's entry in a domain.
pub(super) fn device_config(
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

/// The ready devices by the domain they are published in, and the patterns they use.
pub(super) struct Placed<'a> {
    /// Ready devices per domain (by site key).
    pub members: BTreeMap<ObjectKey, Vec<Member<'a>>>,
    /// Patterns some ready device uses.
    pub used_patterns: BTreeSet<ObjectKey>,
}

/// What placing a device reads besides the device.
/// `'a`: what the members borrow (index, verdicts); `'c`: what only placing reads.
pub(super) struct Context<'a, 'c> {
    index: &'a Index,
    verdicts: &'a Verdicts,
    domains: &'c BTreeMap<ObjectKey, DomainConfig>,
    domains_by_ns: BTreeMap<Arc<str>, Vec<ObjectKey>>,
    available: &'c BTreeMap<ObjectKey, PatternConfig>,
}

impl<'a, 'c> Context<'a, 'c> {
    /// The context of a compilation.
    pub fn new(
        index: &'a Index,
        verdicts: &'a Verdicts,
        domains: &'c BTreeMap<ObjectKey, DomainConfig>,
        available: &'c BTreeMap<ObjectKey, PatternConfig>,
    ) -> Self {
        let mut domains_by_ns: BTreeMap<Arc<str>, Vec<ObjectKey>> = BTreeMap::new();
        for key in domains.keys() {
            domains_by_ns
                .entry(key.namespace.clone())
                .or_default()
                .push(key.clone());
        }
        Context {
            index,
            verdicts,
            domains,
            domains_by_ns,
            available,
        }
    }

    /// The domains device `key` is published in: its site's (when accepted), else, for an
    /// unassigned device, every one of its namespace.
    fn homes(&self, key: &ObjectKey, site_key: Option<&ObjectKey>) -> &[ObjectKey] {
        match site_key {
            Some(k) => match self.domains.get_key_value(k) {
                Some((k, _)) => std::slice::from_ref(k),
                None => &[],
            },
            None => self
                .domains_by_ns
                .get(&*key.namespace)
                .map(Vec::as_slice)
                .unwrap_or_default(),
        }
    }
}

/// Places every device: its outcome (SIP URI, readiness) into `out`, its site's counts, and,
/// when ready, its membership in each of its domains.
pub(super) fn place<'a>(cx: &Context<'a, '_>, out: &mut Compiled) -> Placed<'a> {
    let mut placed = Placed {
        members: BTreeMap::new(),
        used_patterns: BTreeSet::new(),
    };
    for (key, device) in &cx.index.devices {
        let spec = &device.spec;
        let site_key = spec.site_name().map(|s| key.sibling(s));
        let site = site_key.as_ref().and_then(|k| cx.index.sites.get(k));
        let site_spec = site.map(|s| &s.spec);
        if let Some(counts) = site_key.as_ref().and_then(|k| out.sites.get_mut(k)) {
            counts.devices += 1;
            counts.registered += u32::from(device.registered);
        }
        let creds = cx.verdicts.device_credentials.get(key);
        let homes = cx.homes(key, site_key.as_ref());
        let sip_uri = match (creds, site, homes.first()) {
            (Some(c), Some(s), _) => Some(format!("sip:{}@{}", c.username, s.spec.domain)),
            (Some(c), None, Some(home)) => {
                Some(format!("sip:{}@{}", c.username, cx.domains[home].domain))
            }
            _ => None,
        };
        let pattern_keys: Vec<ObjectKey> = effective::patterns(spec, site_spec)
            .iter()
            .map(|p| key.sibling(p))
            .collect();
        let ready = readiness(cx, key, device, creds, homes, &pattern_keys);
        if let (Ok(()), Some(c)) = (&ready, creds) {
            for pk in &pattern_keys {
                if let Some(p) = out.patterns.get_mut(pk) {
                    p.used_by += 1;
                }
                placed.used_patterns.insert(pk.clone());
            }
            for home in homes {
                placed
                    .members
                    .entry(home.clone())
                    .or_default()
                    .push(Member {
                        device,
                        site: site_spec,
                        creds: c,
                    });
            }
        }
        out.devices
            .insert(key.clone(), DeviceOutcome { sip_uri, ready });
    }
    placed
}

/// Whether device `key` is ready, and if not, why (the first reason that holds).
fn readiness(
    cx: &Context<'_, '_>,
    key: &ObjectKey,
    device: &Device,
    creds: Option<&Resolved>,
    homes: &[ObjectKey],
    pattern_keys: &[ObjectKey],
) -> Result<(), NotReady> {
    let site_name = device.spec.site_name();
    if !cx.verdicts.device_ok(key) {
        Err(NotReady::new(
            "NotAccepted",
            "the SipDevice is not accepted",
        ))
    } else if creds.is_none() {
        Err(credentials_not_ready(cx.index, key))
    } else if site_name.is_some() && homes.is_empty() {
        Err(NotReady::new(
            "SiteNotAccepted",
            format!("Site {:?} is not accepted", site_name.unwrap_or_default()),
        ))
    } else if let Some(missing) = pattern_keys.iter().find(|k| !cx.available.contains_key(k)) {
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
    }
}
