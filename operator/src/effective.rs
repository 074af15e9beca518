//! Inheritance: a device's settings once its site's defaults and its own overrides are merged.
//!
//! One function, used by validation (which patterns must exist), by the compiler (what goes into
//! the config) and by the status writer (`status.effective`), so the three never disagree.

use switchboard_crds::device::{AssignmentKind, EffectiveSettings, SipDeviceSpec};
use switchboard_crds::site::SiteSpec;

/// The effective settings of a device whose site (if it has one) is `site`.
///
/// - Unassigned: nothing.
/// - Common-area (`site`): the device's extension; its caller ID, else the site's default; its
///   restrictions, else the site's; the site's patterns minus `remove`, then `add`, in order,
///   without repeats.
/// - Companion (`user`): the user's extension, the site's caller ID, restrictions and patterns.
pub fn device(spec: &SipDeviceSpec, site: Option<&SiteSpec>) -> EffectiveSettings {
    let Some(assignment) = &spec.assignment else {
        return EffectiveSettings::default();
    };
    let site_patterns = || site.map(|s| s.call_patterns.clone()).unwrap_or_default();
    if let Some(sa) = &assignment.site {
        let mut patterns: Vec<String> = site_patterns()
            .into_iter()
            .filter(|p| !sa.call_patterns.remove.contains(p))
            .collect();
        for p in &sa.call_patterns.add {
            if !patterns.contains(p) {
                patterns.push(p.clone());
            }
        }
        return EffectiveSettings {
            assignment: AssignmentKind::Site,
            site: Some(sa.site.clone()),
            extension: Some(sa.extension.clone()),
            user: None,
            outbound_caller_id: sa
                .outbound_caller_id
                .clone()
                .or_else(|| site.and_then(|s| s.default_outbound_caller_id.clone())),
            call_patterns: patterns,
            call_restrictions: sa
                .call_restrictions
                .clone()
                .or_else(|| site.map(|s| s.call_restrictions.clone())),
        };
    }
    if let Some(ua) = &assignment.user {
        let user_ext = site
            .and_then(|s| s.users.iter().find(|u| u.name == ua.user))
            .and_then(|u| u.extension.clone());
        return EffectiveSettings {
            assignment: AssignmentKind::User,
            site: Some(ua.site.clone()),
            extension: user_ext,
            user: Some(ua.user.clone()),
            outbound_caller_id: site.and_then(|s| s.default_outbound_caller_id.clone()),
            call_patterns: site_patterns(),
            call_restrictions: site.map(|s| s.call_restrictions.clone()),
        };
    }
    EffectiveSettings::default()
}

/// The effective settings of a device in the index (its site looked up by name).
pub fn of_device(
    index: &crate::index::Index,
    device: &switchboard_crds::SipDevice,
) -> EffectiveSettings {
    let key = crate::key::ObjectKey::of(device);
    let site = device
        .spec
        .site_name()
        .and_then(|s| index.sites.get(&key.sibling(s)));
    self::device(&device.spec, site.map(|s| &s.spec))
}
