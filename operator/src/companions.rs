//! Companion devices for every user of a Site that asks for them (`spec.companionDevices`,
//! Freshcaller's "New SIP credentials → All Agents"): which SipDevices to apply and which to
//! delete, from the index alone.
//!
//! Each listed user (but one with `companionDevice: false`) gets a SipDevice
//! `<site>-<user>-companion`, labelled [`COMPANION_OF_LABEL`] with the Site's name, owned by the
//! Site (deleted with it), assigned to the user with the site's `receiveCalls`, with a locally
//! administered MAC address derived from the namespace, site and user, and no
//! `spec.credentials`, so the credentials step generates its Secret as for any device. A
//! companion whose user left the list, opted out, or whose Site stopped asking is deleted. A
//! device of the same name without the label is someone else's: it is left alone, and the
//! user gets none (the plan says so, for an Event).

use crate::index::{DeviceSpec, Index};
use crate::key::ObjectKey;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use switchboard_crds::device::{Assignment, UserAssignment, COMPANION_OF_LABEL};
use switchboard_crds::site::{CompanionDevices, SiteUser};
use switchboard_crds::{SipDevice, SipDeviceSpec, Site};

/// One change to a Site's companion devices.
#[derive(Clone, Debug)]
pub enum CompanionWrite {
    /// Create it, or bring it back to what the Site says (server-side apply).
    Apply {
        /// The Site that keeps it.
        site: ObjectKey,
        /// The whole desired device.
        device: Box<SipDevice>,
    },
    /// Its user is gone or opted out, or the Site no longer keeps companions.
    Delete {
        /// The Site that kept it.
        site: ObjectKey,
        /// The device.
        device: ObjectKey,
    },
    /// A device of the wanted name exists and is not the Site's: the user gets none.
    Conflict {
        /// The Site.
        site: ObjectKey,
        /// The device in the way.
        device: ObjectKey,
        /// The user left without a companion.
        user: String,
    },
}

impl CompanionWrite {
    /// The device it is about.
    pub fn device(&self) -> ObjectKey {
        match self {
            CompanionWrite::Apply { device, .. } => ObjectKey::of(&**device),
            CompanionWrite::Delete { device, .. } | CompanionWrite::Conflict { device, .. } => {
                device.clone()
            }
        }
    }

    /// The Site it is for.
    pub fn site(&self) -> &ObjectKey {
        match self {
            CompanionWrite::Apply { site, .. }
            | CompanionWrite::Delete { site, .. }
            | CompanionWrite::Conflict { site, .. } => site,
        }
    }
}

/// Every companion write the index calls for, in key order.
pub fn plan(index: &Index) -> Vec<CompanionWrite> {
    let mut desired: BTreeMap<ObjectKey, (&ObjectKey, SipDevice, &str)> = BTreeMap::new();
    for (key, site) in &index.sites {
        let Some(keep) = &site.spec.companion_devices else {
            continue;
        };
        for user in site
            .spec
            .users
            .iter()
            .filter(|u| u.companion_device != Some(false))
        {
            let device = companion(site, user, keep);
            desired.insert(ObjectKey::of(&device), (key, device, &user.name));
        }
    }
    let mut writes = Vec::new();
    for (key, (site, device, user)) in desired.iter() {
        match index.devices.get(key) {
            Some(d) if d.companion_of.as_deref() != Some(&*site.name) => {
                writes.push(CompanionWrite::Conflict {
                    site: (*site).clone(),
                    device: key.clone(),
                    user: user.to_string(),
                })
            }
            Some(d) if d.spec == DeviceSpec::from(device.spec.clone()) => {}
            _ => writes.push(CompanionWrite::Apply {
                site: (*site).clone(),
                device: Box::new(device.clone()),
            }),
        }
    }
    for (key, d) in &index.devices {
        let Some(site) = &d.companion_of else {
            continue;
        };
        if !desired.contains_key(key) {
            writes.push(CompanionWrite::Delete {
                site: key.sibling(&**site),
                device: key.clone(),
            });
        }
    }
    writes
}

/// The companion device of `user` of `site`.
fn companion(site: &Site, user: &SiteUser, keep: &CompanionDevices) -> SipDevice {
    let site_name = site.metadata.name.clone().unwrap_or_default();
    let namespace = site.metadata.namespace.clone().unwrap_or_default();
    let owner = site.controller_owner_ref(&()).map(|mut o| {
        // The Site's deletion takes its companions with it, but never waits on them.
        o.block_owner_deletion = Some(false);
        o
    });
    SipDevice {
        metadata: ObjectMeta {
            name: Some(device_name(&site_name, &user.name)),
            namespace: Some(namespace.clone()),
            labels: Some([(COMPANION_OF_LABEL.to_string(), site_name.clone())].into()),
            owner_references: owner.map(|o: OwnerReference| vec![o]),
            ..ObjectMeta::default()
        },
        spec: SipDeviceSpec {
            mac_address: mac(&namespace, &site_name, &user.name),
            sip_user: sip_user(&user.name),
            credentials: None,
            assignment: Some(Assignment {
                site: None,
                user: Some(UserAssignment {
                    site: site_name,
                    user: user.name.clone(),
                    receive_calls: keep.receive_calls,
                }),
            }),
            max_contacts: None,
        },
        status: None,
    }
}

/// Four hex digits of SHA-256 of `text`: tells apart names that lost characters.
fn tag(text: &str) -> String {
    hex::encode(&Sha256::digest(text.as_bytes())[..2])
}

/// `<site>-<user>-companion`, the user lowercased with `_` as `-` (object names allow no
/// more); a name that changed that way also carries a tag of the user, so `Ann` and `ann` do
/// not meet.
fn device_name(site: &str, user: &str) -> String {
    let clean: String = user
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '-' | '.' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '-',
        })
        .collect();
    let clean = clean.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    if clean == user {
        format!("{site}-{clean}-companion")
    } else {
        format!("{site}-{clean}-{}-companion", tag(user))
    }
}

/// The user's name as `spec.sipUser` (at most 32 characters: a longer one is cut and tagged).
fn sip_user(user: &str) -> String {
    if user.len() <= 32 {
        user.to_string()
    } else {
        format!("{}-{}", &user[..27], tag(user))
    }
}

/// A locally administered, unicast MAC address (`02:…`) from the namespace, site and user, so
/// the same user always gets the same one.
fn mac(namespace: &str, site: &str, user: &str) -> String {
    let h = Sha256::digest(format!("{namespace}/{site}/{user}").as_bytes());
    let mut octets = vec!["02".to_string()];
    octets.extend(h[..5].iter().map(|b| format!("{b:02x}")));
    octets.join(":")
}

pub mod write;

#[cfg(test)]
mod tests;
