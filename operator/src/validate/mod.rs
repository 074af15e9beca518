//! Cross-object validation: pure, from the index to a verdict per object.
//!
//! Single-object checks come from [`switchboard_crds::validation`]; this module adds what needs
//! the other objects: uniqueness (MAC per namespace, SIP user per domain, extension per site,
//! domain across sites: the later object by creationTimestamp, then namespace/name, loses and is
//! told which object it collides with) and references that must exist.
//!
//! An object with any problem is left out of the config; nothing here changes how a valid
//! object compiles.

mod device;
mod pattern;
mod registration;
mod site;
mod unique;

use crate::credentials::{self, Resolved};
use crate::index::Index;
use crate::key::ObjectKey;
use std::collections::BTreeMap;

pub use unique::Claimant;

pub use crate::problem::{Problem, Reason};

/// Problems per object; an object with none is accepted.
pub type Problems = BTreeMap<ObjectKey, Vec<Problem>>;

/// The verdicts on every object, and the credentials resolved on the way.
#[derive(Debug, Default, Clone)]
pub struct Verdicts {
    /// Sites.
    pub sites: Problems,
    /// Devices.
    pub devices: Problems,
    /// Call patterns.
    pub patterns: Problems,
    /// Outbound registrations.
    pub registrations: Problems,
    /// Resolved device credentials (accepted or not, when they resolved).
    pub device_credentials: BTreeMap<ObjectKey, Resolved>,
    /// Resolved registration credentials.
    pub registration_credentials: BTreeMap<ObjectKey, Resolved>,
    /// Resolved registration callbacks (URL and HMAC key), for those that have one.
    pub registration_callbacks: BTreeMap<ObjectKey, switchboard_crds::config::CallbackTarget>,
}

fn accepted(map: &Problems, key: &ObjectKey) -> bool {
    map.get(key).is_none_or(Vec::is_empty)
}

impl Verdicts {
    /// Whether a site is accepted.
    pub fn site_ok(&self, key: &ObjectKey) -> bool {
        accepted(&self.sites, key)
    }
    /// Whether a device is accepted.
    pub fn device_ok(&self, key: &ObjectKey) -> bool {
        accepted(&self.devices, key)
    }
    /// Whether a pattern is accepted.
    pub fn pattern_ok(&self, key: &ObjectKey) -> bool {
        accepted(&self.patterns, key)
    }
    /// Whether a registration is accepted.
    pub fn registration_ok(&self, key: &ObjectKey) -> bool {
        accepted(&self.registrations, key)
    }
}

/// Validates everything in the index.
pub fn validate(index: &Index) -> Verdicts {
    let mut v = Verdicts::default();
    for (key, d) in &index.devices {
        match credentials::resolve_device(index, d) {
            Ok(r) => {
                v.device_credentials.insert(key.clone(), r);
            }
            // Being written: not a problem of the object's.
            Err(_) if index.credentials_in_writing.contains_key(key) => {}
            Err(p) => v.devices.entry(key.clone()).or_default().push(p),
        }
    }
    for (key, r) in &index.registrations {
        match credentials::resolve_registration(index, r) {
            Ok(c) => {
                v.registration_credentials.insert(key.clone(), c);
            }
            Err(_) if index.credentials_in_writing.contains_key(key) => {}
            Err(p) => v.registrations.entry(key.clone()).or_default().push(p),
        }
        match credentials::resolve_callback(index, r) {
            Ok(Some(cb)) => {
                v.registration_callbacks.insert(key.clone(), cb);
            }
            Ok(None) => {}
            Err(p) => v.registrations.entry(key.clone()).or_default().push(p),
        }
    }
    site::check(index, &mut v.sites);
    pattern::check(index, &mut v.patterns);
    device::check(index, &v.device_credentials, &mut v.devices);
    registration::check(index, &mut v.registrations);
    for map in [
        &mut v.sites,
        &mut v.devices,
        &mut v.patterns,
        &mut v.registrations,
    ] {
        map.retain(|_, problems| !problems.is_empty());
    }
    v
}
