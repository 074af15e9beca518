//! SipRegistration checks: own fields, an upstream that resolves, a target that exists.

use super::{Problem, Problems};
use crate::index::Index;
use crate::key::ObjectKey;
use switchboard_crds::validation::{in_range, validate_registration};
use switchboard_crds::SipRegistration;

/// Adds every registration's problems to `problems`.
pub fn check(index: &Index, problems: &mut Problems) {
    for (key, reg) in &index.registrations {
        let mut mine = Vec::new();
        check_one(index, key, reg, &mut mine);
        if !mine.is_empty() {
            problems.entry(key.clone()).or_default().extend(mine);
        }
    }
}

fn check_one(index: &Index, key: &ObjectKey, reg: &SipRegistration, mine: &mut Vec<Problem>) {
    {
        let field_errors = validate_registration(&reg.spec);
        let clean = field_errors.is_empty();
        mine.extend(field_errors.into_iter().map(Problem::from_field));
        if clean {
            if let Err(e) = reg.spec.upstream() {
                mine.push(Problem::invalid(format!("spec.proxy: {e}")));
            }
        }
        let Some(target) = &reg.spec.target else {
            return;
        };
        if let Some(dev) = &target.device {
            if !index.devices.contains_key(&key.sibling(dev)) {
                mine.push(Problem::missing(format!(
                    "spec.target.device: SipDevice {dev:?} not found"
                )));
            }
        }
        let Some(site_name) = &target.site else {
            return;
        };
        let Some(site) = index.sites.get(&key.sibling(site_name)) else {
            mine.push(Problem::missing(format!(
                "spec.target.site: Site {site_name:?} not found"
            )));
            return;
        };
        if let Some(user) = &target.user {
            if !site.spec.users.iter().any(|u| &u.name == user) {
                mine.push(Problem::missing(format!(
                    "spec.target.user: {user:?} is not a user of Site {site_name:?}"
                )));
            }
        }
        if let (Some(ext), Some((lo, hi))) = (&target.extension, site.spec.extension_range()) {
            if !in_range(ext, lo, hi) {
                mine.push(Problem::invalid(format!(
                    "spec.target.extension: {ext} is outside Site {site_name:?}'s range {}",
                    site.spec.extensions
                )));
            }
        }
    }
}
