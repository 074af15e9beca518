//! Inheritance: a device's settings once its site's defaults and its own overrides are merged.
//!
//! One function, used by validation (which patterns must exist), by the compiler (what goes into
//! the config) and by the status writer (`status.effective`), so the three never disagree.

use crate::index::{Device, DeviceSpec};
use switchboard_crds::device::{AssignmentKind, EffectiveSettings};
use switchboard_crds::site::SiteSpec;

/// The effective settings of a device whose site (if it has one) is `site`.
///
/// - Unassigned: nothing.
/// - Common-area (`site`): the device's extension; its caller ID, else the site's default; its
///   restrictions, else the site's; the site's patterns minus `remove`, then `add`, in order,
///   without repeats.
/// - Companion (`user`): the user's extension, the site's caller ID, restrictions and patterns.
pub fn device(spec: &DeviceSpec, site: Option<&SiteSpec>) -> EffectiveSettings {
    EffectiveSettings {
        call_patterns: patterns(spec, site),
        call_restrictions: match (&spec.site, &spec.user) {
            (Some(sa), _) => sa
                .call_restrictions()
                .cloned()
                .or_else(|| site.map(|s| s.call_restrictions.clone())),
            (None, Some(_)) => site.map(|s| s.call_restrictions.clone()),
            (None, None) => None,
        },
        ..settings(spec, site)
    }
}

/// Everything of [`device`] but the patterns and restrictions, which the compiler takes from
/// [`patterns`] and the site (or the device's override) without copying.
pub fn settings(spec: &DeviceSpec, site: Option<&SiteSpec>) -> EffectiveSettings {
    if let Some(sa) = &spec.site {
        return EffectiveSettings {
            assignment: AssignmentKind::Site,
            site: Some(sa.site.to_string()),
            extension: Some(sa.extension.to_string()),
            user: None,
            outbound_caller_id: sa
                .outbound_caller_id
                .as_deref()
                .map(str::to_string)
                .or_else(|| site.and_then(|s| s.default_outbound_caller_id.clone())),
            call_patterns: Vec::new(),
            call_restrictions: None,
        };
    }
    if let Some(ua) = &spec.user {
        let user_ext = site
            .and_then(|s| s.users.iter().find(|u| u.name == ua.user))
            .and_then(|u| u.extension.clone());
        return EffectiveSettings {
            assignment: AssignmentKind::User,
            site: Some(ua.site.clone()),
            extension: user_ext,
            user: Some(ua.user.clone()),
            outbound_caller_id: site.and_then(|s| s.default_outbound_caller_id.clone()),
            call_patterns: Vec::new(),
            call_restrictions: None,
        };
    }
    EffectiveSettings::default()
}

/// The effective pattern names of [`device`], in order.
pub fn patterns(spec: &DeviceSpec, site: Option<&SiteSpec>) -> Vec<String> {
    let site_patterns = || site.map(|s| s.call_patterns.clone()).unwrap_or_default();
    if let Some(sa) = &spec.site {
        let removed = sa.patterns_removed();
        let mut patterns: Vec<String> = match site {
            Some(s) => s
                .call_patterns
                .iter()
                .filter(|p| !removed.contains(p))
                .cloned()
                .collect(),
            None => Vec::new(),
        };
        for p in sa.patterns_added() {
            if !patterns.contains(p) {
                patterns.push(p.clone());
            }
        }
        return patterns;
    }
    if spec.user.is_some() {
        return site_patterns();
    }
    Vec::new()
}

/// The effective settings of a device in the index (its site looked up by name).
pub fn of_device(index: &crate::index::Index, device: &Device) -> EffectiveSettings {
    let site = device
        .spec
        .site_name()
        .and_then(|s| index.sites.get(&device.key.sibling(s)));
    self::device(&device.spec, site.map(|s| &s.spec))
}
