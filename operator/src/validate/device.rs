//! Device checks: own fields; MAC unique in the namespace; SIP user unique per domain; the site,
//! user and patterns it names exist; a common-area extension inside the site's range and unique
//! in the site (site users' extensions included).

use super::unique::{Claimant, Claims};
use super::{Problem, Problems};
use crate::credentials::Resolved;
use crate::effective;
use crate::index::{DeviceSpec, Index};
use crate::key::ObjectKey;
use std::collections::BTreeMap;
use switchboard_crds::validation::in_range;

/// Adds every device's problems to `problems`.
pub fn check(index: &Index, creds: &BTreeMap<ObjectKey, Resolved>, problems: &mut Problems) {
    let n = index.devices.len();
    let mut macs = Claims::with_capacity(n);
    let mut users = Claims::with_capacity(n);
    let mut extensions = Claims::with_capacity(n);
    let mut domains_by_ns: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (key, site) in &index.sites {
        for u in &site.spec.users {
            if let Some(ext) = &u.extension {
                let who = Claimant::SiteUser {
                    site: key,
                    user: &u.name,
                };
                extensions.claim((key, ext.as_str()), who);
            }
        }
        domains_by_ns
            .entry(&*key.namespace)
            .or_default()
            .push(site.spec.domain.as_str());
    }
    for (key, device) in &index.devices {
        let who = Claimant::created("SipDevice", device.created, key);
        let spec = &device.spec;
        let mut mine: Vec<Problem> = spec
            .field_errors
            .iter()
            .map(|e| Problem::invalid(e.to_string()))
            .collect();
        if let Some(mac) = spec.mac {
            macs.claim((&*key.namespace, mac), who.clone());
        }
        let site_name = spec.site_name();
        let site = site_name.and_then(|name| index.sites.get_key_value(&key.sibling(name)));
        if let (Some(name), None) = (site_name, site) {
            mine.push(Problem::missing(format!(
                "spec.assignment: Site {name:?} not found"
            )));
        }
        if let (Some(sa), Some((site_key, site))) = (&spec.site, site) {
            if let Some((lo, hi)) = site.spec.extension_range() {
                if !in_range(&sa.extension, lo, hi) {
                    mine.push(Problem::invalid(format!(
                        "spec.assignment.site.extension: {} is outside Site {}'s range {}",
                        sa.extension, sa.site, site.spec.extensions
                    )));
                }
            }
            extensions.claim((site_key, &*sa.extension), who.clone());
        }
        if let (Some(ua), Some((_, site))) = (&spec.user, site) {
            if !site.spec.users.iter().any(|u| u.name == ua.user) {
                mine.push(Problem::missing(format!(
                    "spec.assignment.user.user: {:?} is not a user of Site {:?}",
                    ua.user, ua.site
                )));
            }
        }
        let site_spec = site.map(|(_, s)| &s.spec);
        // Only a common-area device can change the site's defaults; the site's own check
        // covers them unchanged.
        if spec.site.is_some() {
            for name in effective::patterns(spec, site_spec) {
                if !index.patterns.contains_key(&key.sibling(&name)) {
                    mine.push(Problem::missing(format!("CallPattern {name:?} not found")));
                }
            }
        }
        if let Some(r) = creds.get(key) {
            let own: [&str; 1];
            let domains: &[&str] = match (site_name, site) {
                (Some(_), Some((_, s))) => {
                    own = [s.spec.domain.as_str()];
                    &own
                }
                (Some(_), None) => &[],
                (None, _) => domains_by_ns
                    .get(&*key.namespace)
                    .map(Vec::as_slice)
                    .unwrap_or_default(),
            };
            for d in domains {
                users.claim((*d, r.username.as_str()), who.clone());
            }
        }
        if !mine.is_empty() {
            problems.entry(key.clone()).or_default().extend(mine);
        }
    }
    macs.report(problems, |(_, mac)| {
        format!("spec.macAddress: MAC {}", DeviceSpec::mac_text(mac))
    });
    users.report(problems, |(domain, user)| {
        format!("spec.sipUser: SIP user {user}@{domain}")
    });
    extensions.report(problems, |(_, ext)| {
        format!("spec.assignment.site.extension: extension {ext}")
    });
}
