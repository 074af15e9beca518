//! Sample objects, as an administrator would write them: for tests, the benchmark and docs.

use crate::credentials::{self, GENERATED_LABEL};
use crate::index::Device;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use k8s_openapi::ByteString;
use std::collections::BTreeMap;
use switchboard_crds::common::{DEFAULT_PASSWORD_KEY, USERNAME_KEY};
use switchboard_crds::device::{Assignment, SiteAssignment, UserAssignment};
use switchboard_crds::site::SiteUser;
use switchboard_crds::{
    CallPattern, CallPatternSpec, SipDevice, SipDeviceSpec, SipRegistration, SipRegistrationSpec,
    Site, SiteSpec,
};

/// Metadata with a UID and a creation time `seq` seconds after a fixed epoch.
pub fn meta(ns: &str, name: &str, seq: i64) -> ObjectMeta {
    ObjectMeta {
        namespace: Some(ns.into()),
        name: Some(name.into()),
        uid: Some(format!("00000000-0000-4000-8000-{:012x}", fxhash(ns, name))),
        generation: Some(1),
        creation_timestamp: Some(Time(
            Timestamp::from_second(1_700_000_000 + seq).expect("valid time"),
        )),
        ..ObjectMeta::default()
    }
}

fn fxhash(ns: &str, name: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in ns.bytes().chain([b'/']).chain(name.bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
    }
    h & 0xffff_ffff_ffff
}

/// A site with a domain and extension range.
pub fn site(ns: &str, name: &str, domain: &str, extensions: &str) -> Site {
    let spec: SiteSpec = serde_json::from_value(serde_json::json!({
        "domain": domain,
        "extensions": extensions,
    }))
    .expect("site spec");
    Site {
        metadata: meta(ns, name, 0),
        spec,
        status: None,
    }
}

/// Adds a user to a site.
pub fn with_user(mut site: Site, name: &str, extension: Option<&str>) -> Site {
    site.spec.users.push(SiteUser {
        name: name.into(),
        extension: extension.map(Into::into),
        email: None,
        companion_device: None,
    });
    site
}

/// An unassigned device created `seq` seconds after the epoch.
pub fn device(ns: &str, name: &str, mac: &str, sip_user: &str, seq: i64) -> SipDevice {
    SipDevice {
        metadata: meta(ns, name, seq),
        spec: SipDeviceSpec {
            mac_address: mac.into(),
            sip_user: sip_user.into(),
            credentials: None,
            assignment: None,
            max_contacts: None,
        },
        status: None,
    }
}

/// A common-area assignment.
pub fn at_site(mut d: SipDevice, site: &str, extension: &str) -> SipDevice {
    d.spec.assignment = Some(Assignment {
        site: Some(SiteAssignment {
            site: site.into(),
            extension: extension.into(),
            outbound_caller_id: None,
            call_restrictions: None,
            call_patterns: Default::default(),
        }),
        user: None,
    });
    d
}

/// A companion-mode assignment.
pub fn for_user(mut d: SipDevice, site: &str, user: &str) -> SipDevice {
    d.spec.assignment = Some(Assignment {
        site: None,
        user: Some(UserAssignment {
            site: site.into(),
            user: user.into(),
            receive_calls: true,
        }),
    });
    d
}

/// A call pattern in compact form.
pub fn pattern(ns: &str, name: &str, compact: &str) -> CallPattern {
    CallPattern {
        metadata: meta(ns, name, 0),
        spec: CallPatternSpec {
            rules: vec![],
            compact: Some(compact.into()),
            route: None,
        },
        status: None,
    }
}

/// A registration to `aor` with a Secret reference.
pub fn registration(ns: &str, name: &str, aor: &str, secret: &str) -> SipRegistration {
    let spec: SipRegistrationSpec = serde_json::from_value(serde_json::json!({
        "aor": aor,
        "username": aor.trim_start_matches("sip:").split('@').next().unwrap_or_default(),
        "credentials": {"secretRef": {"name": secret}},
    }))
    .expect("registration spec");
    SipRegistration {
        metadata: meta(ns, name, 0),
        spec,
        status: None,
    }
}

/// A Secret with string data.
pub fn secret(ns: &str, name: &str, data: &[(&str, &str)]) -> Secret {
    Secret {
        metadata: meta(ns, name, 0),
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Secret::default()
    }
}

/// The Secret the operator would have generated for a device, with a given password.
pub fn generated_secret(device: &SipDevice, password: &str) -> Secret {
    generated_secret_of(&device.into(), password)
}

/// [`generated_secret`] for a device as the index keeps it.
pub fn generated_secret_of(device: &Device, password: &str) -> Secret {
    let user = credentials::device_sip_user(device, None);
    let mut s = secret(
        &device.key.namespace,
        &credentials::generated_secret_name(&device.key.name),
        &[(USERNAME_KEY, &user), (DEFAULT_PASSWORD_KEY, password)],
    );
    s.metadata.labels = Some(BTreeMap::from([(GENERATED_LABEL.into(), "true".into())]));
    s
}
