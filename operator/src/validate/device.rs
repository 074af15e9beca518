//! Device checks: own fields; MAC unique in the namespace; SIP user unique per domain; the site,
//! user and patterns it names exist; a common-area extension inside the site's range and unique
//! in the site (site users' extensions included).

use super::unique::{Age, Claims};
use super::{Problem, Problems};
use crate::credentials::Resolved;
use crate::effective;
use crate::index::Index;
use crate::key::ObjectKey;
use std::collections::BTreeMap;
use switchboard_crds::validation::{in_range, normalize_mac, validate_device};

/// Adds every device's problems to `problems`.
pub fn check(index: &Index, creds: &BTreeMap<ObjectKey, Resolved>, problems: &mut Problems) {
    let mut macs = Claims::default();
    let mut users = Claims::default();
    let mut extensions = Claims::default();
    for (key, site) in &index.sites {
        for u in &site.spec.users {
            if let Some(ext) = &u.extension {
                let who = Age::first(ObjectKey::new(key.to_string(), u.name.clone()));
                extensions.claim(
                    (key.clone(), ext.clone()),
                    who,
                    format!("user {:?} of Site {key}", u.name),
                );
            }
        }
    }
    let mut domains_by_ns: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (key, site) in &index.sites {
        domains_by_ns
            .entry(key.namespace.as_str())
            .or_default()
            .push(site.spec.domain.as_str());
    }
    for (key, device) in &index.devices {
        let label = format!("SipDevice {key}");
        let age = Age::of(device);
        let mine = problems.entry(key.clone()).or_default();
        let spec = &device.spec;
        mine.extend(validate_device(spec).into_iter().map(Problem::from_field));
        if let Some(mac) = normalize_mac(&spec.mac_address) {
            macs.claim((key.namespace.clone(), mac), age.clone(), label.clone());
        }
        let site_name = spec.site_name();
        let site = site_name.and_then(|s| index.sites.get(&key.sibling(s)));
        if let (Some(name), None) = (site_name, site) {
            mine.push(Problem::missing(format!(
                "spec.assignment: Site {name:?} not found"
            )));
        }
        let assignment = spec.assignment.as_ref();
        if let (Some(sa), Some(site)) = (assignment.and_then(|a| a.site.as_ref()), site) {
            let site_key = ObjectKey::of(site);
            if let Some((lo, hi)) = site.spec.extension_range() {
                if !in_range(&sa.extension, lo, hi) {
                    mine.push(Problem::invalid(format!(
                        "spec.assignment.site.extension: {} is outside Site {}'s range {}",
                        sa.extension, sa.site, site.spec.extensions
                    )));
                }
            }
            extensions.claim((site_key, sa.extension.clone()), age.clone(), label.clone());
        }
        if let (Some(ua), Some(site)) = (assignment.and_then(|a| a.user.as_ref()), site) {
            if !site.spec.users.iter().any(|u| u.name == ua.user) {
                mine.push(Problem::missing(format!(
                    "spec.assignment.user.user: {:?} is not a user of Site {:?}",
                    ua.user, ua.site
                )));
            }
        }
        let eff = effective::device(spec, site.map(|s| &s.spec));
        for name in &eff.call_patterns {
            if !index.patterns.contains_key(&key.sibling(name)) {
                mine.push(Problem::missing(format!("CallPattern {name:?} not found")));
            }
        }
        if let Some(r) = creds.get(key) {
            let domains: Vec<&str> = match (site_name, site) {
                (Some(_), Some(s)) => vec![s.spec.domain.as_str()],
                (Some(_), None) => vec![],
                (None, _) => domains_by_ns
                    .get(key.namespace.as_str())
                    .cloned()
                    .unwrap_or_default(),
            };
            for d in domains {
                users.claim(
                    (d.to_string(), r.username.clone()),
                    age.clone(),
                    label.clone(),
                );
            }
        }
    }
    macs.report(problems, |(_, mac)| format!("spec.macAddress: MAC {mac}"));
    users.report(problems, |(domain, user)| {
        format!("spec.sipUser: SIP user {user}@{domain}")
    });
    extensions.report(problems, |(_, ext)| {
        format!("spec.assignment.site.extension: extension {ext}")
    });
}
