//! What the index keeps of a `SipDevice`: the spec fields validation, compilation and the status
//! use, in compact form, the metadata they read, and a digest of the status the operator owns.
//!
//! A whole `SipDevice` is over 1 KB before its strings; at 100 000 devices the objects alone
//! held most of the operator's memory. The watch converts each object into a [`Device`] as it
//! arrives, so the full objects are never held together (a relist buffers records, not
//! objects). Single-object validation runs during that conversion (it reads nothing else), and
//! its messages are kept: an empty list for a valid device.

use crate::key::ObjectKey;
use crate::status::digest::StatusDigest;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::jiff::Timestamp;
use kube::{Resource, ResourceExt};
use switchboard_crds::common::SecretRef;
use switchboard_crds::device::{
    AssignmentKind, PatternOverrides, RegistrationState, UserAssignment, COMPANION_OF_LABEL,
};
use switchboard_crds::site::CallRestrictions;
use switchboard_crds::validation::{normalize_mac, validate_device};
use switchboard_crds::{SipDevice, SipDeviceSpec};

/// The status fields the operator owns on a device (next to its two conditions).
pub const OWNED_FIELDS: &[&str] = &[
    "observedGeneration",
    "sipUri",
    "credentialsSecret",
    "effective",
];

/// A device, as the operator keeps it.
#[derive(Clone, Debug, PartialEq)]
pub struct Device {
    /// Namespace and name.
    pub key: ObjectKey,
    /// `metadata.uid`.
    pub uid: Option<Box<str>>,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// `metadata.creationTimestamp`.
    pub created: Option<Timestamp>,
    /// The rotation annotation ([`crate::credentials::ROTATE_ANNOTATION`]).
    pub rotate: Option<Box<str>>,
    /// The Site that keeps it as a user's companion device ([`COMPANION_OF_LABEL`]).
    pub companion_of: Option<Box<str>>,
    /// The spec.
    pub spec: DeviceSpec,
    /// The registrar reports it registered (`status.registration.state`).
    pub registered: bool,
    /// The operator's part of its status.
    pub status: StatusDigest,
}

/// A device's spec, compact.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceSpec {
    /// The MAC address, normalised; `None` when it is not one (a field error says so).
    pub mac: Option<[u8; 6]>,
    /// `spec.sipUser`.
    pub sip_user: Box<str>,
    /// `spec.credentials.secretRef`.
    pub credentials: Option<Box<SecretRef>>,
    /// `spec.assignment.site`.
    pub site: Option<SitePlacement>,
    /// `spec.assignment.user`.
    pub user: Option<Box<UserAssignment>>,
    /// `spec.maxContacts`.
    pub max_contacts: Option<u32>,
    /// Single-object validation messages (`spec.…: …`), none when valid.
    pub field_errors: Box<[Box<str>]>,
}

/// A common-area assignment (`spec.assignment.site`).
#[derive(Clone, Debug, PartialEq)]
pub struct SitePlacement {
    /// The site's name.
    pub site: Box<str>,
    /// The extension.
    pub extension: Box<str>,
    /// The device's own outbound caller ID.
    pub outbound_caller_id: Option<Box<str>>,
    /// Restrictions and pattern changes, when the device has any.
    pub overrides: Option<Box<SiteOverrides>>,
}

/// What a common-area device changes of its site's settings.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct SiteOverrides {
    /// Replaces the site's restrictions.
    pub call_restrictions: Option<CallRestrictions>,
    /// Patterns added to and removed from the site's.
    pub call_patterns: PatternOverrides,
}

impl SitePlacement {
    /// Restrictions replacing the site's, if any.
    pub fn call_restrictions(&self) -> Option<&CallRestrictions> {
        self.overrides.as_ref()?.call_restrictions.as_ref()
    }

    /// Pattern names added to the site's.
    pub fn patterns_added(&self) -> &[String] {
        self.overrides
            .as_ref()
            .map_or(&[], |o| o.call_patterns.add.as_slice())
    }

    /// Pattern names removed from the site's.
    pub fn patterns_removed(&self) -> &[String] {
        self.overrides
            .as_ref()
            .map_or(&[], |o| o.call_patterns.remove.as_slice())
    }
}

impl Device {
    /// A reference to the object, for Events (what `Resource::object_ref` gives).
    pub fn object_ref(&self) -> ObjectReference {
        ObjectReference {
            api_version: Some(SipDevice::api_version(&()).into_owned()),
            kind: Some(SipDevice::kind(&()).into_owned()),
            name: Some(self.key.name.to_string()),
            namespace: Some(self.key.namespace.to_string()),
            uid: self.uid.as_deref().map(str::to_string),
            ..ObjectReference::default()
        }
    }
}

impl DeviceSpec {
    /// The site the device belongs to, if assigned.
    pub fn site_name(&self) -> Option<&str> {
        self.site
            .as_ref()
            .map(|s| &*s.site)
            .or_else(|| self.user.as_ref().map(|u| u.site.as_str()))
    }

    /// The kind of assignment (`Unassigned` when none).
    pub fn assignment_kind(&self) -> AssignmentKind {
        match (&self.site, &self.user) {
            (Some(_), _) => AssignmentKind::Site,
            (None, Some(_)) => AssignmentKind::User,
            (None, None) => AssignmentKind::Unassigned,
        }
    }

    /// The normalised MAC as text (`aa:bb:cc:dd:ee:ff`).
    pub fn mac_text(mac: &[u8; 6]) -> String {
        let [a, b, c, d, e, f] = mac;
        format!("{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{f:02x}")
    }
}

fn parse_mac(mac: &str) -> Option<[u8; 6]> {
    let norm = normalize_mac(mac)?;
    let mut out = [0u8; 6];
    for (i, part) in norm.split(':').enumerate() {
        *out.get_mut(i)? = u8::from_str_radix(part, 16).ok()?;
    }
    Some(out)
}

fn boxed(s: String) -> Box<str> {
    s.into_boxed_str()
}

impl From<SipDeviceSpec> for DeviceSpec {
    fn from(spec: SipDeviceSpec) -> Self {
        let field_errors = validate_device(&spec)
            .into_iter()
            .map(|e| boxed(e.to_string()))
            .collect();
        let (site, user) = match spec.assignment {
            Some(a) => (a.site, a.user),
            None => (None, None),
        };
        DeviceSpec {
            mac: parse_mac(&spec.mac_address),
            sip_user: boxed(spec.sip_user),
            credentials: spec.credentials.map(|c| Box::new(c.secret_ref)),
            site: site.map(|s| {
                let overrides = (s.call_restrictions.is_some()
                    || s.call_patterns != PatternOverrides::default())
                .then(|| {
                    Box::new(SiteOverrides {
                        call_restrictions: s.call_restrictions,
                        call_patterns: s.call_patterns,
                    })
                });
                SitePlacement {
                    site: boxed(s.site),
                    extension: boxed(s.extension),
                    outbound_caller_id: s.outbound_caller_id.map(boxed),
                    overrides,
                }
            }),
            user: user.map(Box::new),
            max_contacts: spec.max_contacts,
            field_errors,
        }
    }
}

impl From<SipDevice> for Device {
    fn from(d: SipDevice) -> Self {
        let key = ObjectKey::of(&d);
        let rotate = d
            .annotations()
            .get(crate::credentials::ROTATE_ANNOTATION)
            .map(|v| boxed(v.clone()));
        let companion_of = d.labels().get(COMPANION_OF_LABEL).map(|v| boxed(v.clone()));
        let registered = d
            .status
            .as_ref()
            .and_then(|s| s.registration.as_ref())
            .is_some_and(|r| r.state == RegistrationState::Registered);
        let status = StatusDigest::of_status(d.status.as_ref(), OWNED_FIELDS);
        let meta = d.metadata;
        Device {
            key,
            uid: meta.uid.map(boxed),
            generation: meta.generation,
            created: meta.creation_timestamp.map(|t| t.0),
            rotate,
            companion_of,
            spec: d.spec.into(),
            registered,
            status,
        }
    }
}

impl From<&SipDevice> for Device {
    fn from(d: &SipDevice) -> Self {
        d.clone().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples;

    #[test]
    fn keeps_what_the_operator_reads() {
        let mut d = samples::at_site(
            samples::device("acme", "lobby", "00-1A-2B-3C-4D-5E", "lobby", 1),
            "hq",
            "1000",
        );
        d.metadata.annotations = Some(
            [(
                crate::credentials::ROTATE_ANNOTATION.to_string(),
                "1".to_string(),
            )]
            .into(),
        );
        let r = Device::from(&d);
        assert_eq!(r.key, ObjectKey::new("acme", "lobby"));
        assert_eq!(r.uid.as_deref(), d.metadata.uid.as_deref());
        assert_eq!(r.rotate.as_deref(), Some("1"));
        assert_eq!(r.spec.site_name(), Some("hq"));
        assert_eq!(
            DeviceSpec::mac_text(&r.spec.mac.unwrap()),
            "00:1a:2b:3c:4d:5e"
        );
        assert!(r.spec.field_errors.is_empty());
        assert!(r.spec.site.as_ref().unwrap().overrides.is_none());
        d.spec.mac_address = "nope".into();
        let r = Device::from(&d);
        assert_eq!(r.spec.mac, None);
        assert!(r.spec.field_errors[0].starts_with("spec.macAddress"));
    }
}
