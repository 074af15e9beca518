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
use std::sync::Arc;
use switchboard_crds::validation::in_range;
use switchboard_crds::Site;

/// A device's site, when it names one that exists: its key and the Site.
type SiteOf<'a> = Option<(&'a ObjectKey, &'a Arc<Site>)>;

/// Adds every device's problems to `problems`.
pub fn check(index: &Index, creds: &BTreeMap<ObjectKey, Resolved>, problems: &mut Problems) {
    let n = index.devices.len();
    let mut macs = Claims::with_capacity(n);
    let mut users = Claims::with_capacity(n);
    let mut extensions = Claims::with_capacity(n);
    let domains_by_ns = claim_site_users(index, &mut extensions);
    for (key, device) in &index.devices {
        let who = Claimant::created("SipDevice", device.created, key);
        let spec = &device.spec;
        let site_name = spec.site_name();
        let site = site_name.and_then(|name| index.sites.get_key_value(&key.sibling(name)));
        if let Some(mac) = spec.mac {
            macs.claim((&*key.namespace, mac), who.clone());
        }
        if let (Some(sa), Some((site_key, _))) = (&spec.site, site) {
            extensions.claim((site_key, &*sa.extension), who.clone());
        }
        if let Some(r) = creds.get(key) {
            for d in sip_domains(key, site_name, site, &domains_by_ns) {
                users.claim((d, r.username.as_str()), who.clone());
            }
        }
        let mine = own_problems(index, key, spec, site);
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

/// Claims the extensions of the sites' users (a common-area device's must differ from them);
/// answers each namespace's SIP domains (a device in no site registers in all of them).
fn claim_site_users<'a>(
    index: &'a Index,
    extensions: &mut Claims<'a, (&'a ObjectKey, &'a str)>,
) -> BTreeMap<&'a str, Vec<&'a str>> {
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
    domains_by_ns
}

/// The SIP domains a device's user is registered in: its site's, none when the site it names
/// is missing, else every domain of its namespace. Borrowed: the check runs for every device.
fn sip_domains<'a, 'b>(
    key: &ObjectKey,
    site_name: Option<&str>,
    site: SiteOf<'a>,
    domains_by_ns: &'b BTreeMap<&'a str, Vec<&'a str>>,
) -> impl Iterator<Item = &'a str> + 'b
where
    'a: 'b,
{
    let (own, shared): (Option<&'a str>, &'b [&'a str]) = match (site_name, site) {
        (Some(_), Some((_, s))) => (Some(s.spec.domain.as_str()), &[]),
        (Some(_), None) => (None, &[]),
        (None, _) => (
            None,
            domains_by_ns
                .get(&*key.namespace)
                .map(Vec::as_slice)
                .unwrap_or_default(),
        ),
    };
    own.into_iter().chain(shared.iter().copied())
}

/// The device's own problems: its fields, and the site, site user and patterns it names.
fn own_problems(
    index: &Index,
    key: &ObjectKey,
    spec: &DeviceSpec,
    site: SiteOf<'_>,
) -> Vec<Problem> {
    let mut mine: Vec<Problem> = spec
        .field_errors
        .iter()
        .map(|e| Problem::invalid(e.to_string()))
        .collect();
    if let (Some(name), None) = (spec.site_name(), site) {
        mine.push(Problem::missing(format!(
            "spec.assignment: Site {name:?} not found"
        )));
    }
    if let (Some(sa), Some((_, site))) = (&spec.site, site) {
        if let Some((lo, hi)) = site.spec.extension_range() {
            if !in_range(&sa.extension, lo, hi) {
                mine.push(Problem::invalid(format!(
                    "spec.assignment.site.extension: {} is outside Site {}'s range {}",
                    sa.extension, sa.site, site.spec.extensions
                )));
            }
        }
    }
    if let (Some(ua), Some((_, site))) = (&spec.user, site) {
        if !site.spec.users.iter().any(|u| u.name == ua.user) {
            mine.push(Problem::missing(format!(
                "spec.assignment.user.user: {:?} is not a user of Site {:?}",
                ua.user, ua.site
            )));
        }
    }
    // Only a common-area device can change the site's defaults; the site's own check covers
    // them unchanged.
    if spec.site.is_some() {
        let site_spec = site.map(|(_, s)| &s.spec);
        for name in effective::patterns(spec, site_spec) {
            if !index.patterns.contains_key(&key.sibling(&name)) {
                mine.push(Problem::missing(format!("CallPattern {name:?} not found")));
            }
        }
    }
    mine
}
