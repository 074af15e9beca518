//! Which credential Secrets to write: pure, given the index and a random source.
//!
//! - A device or registration without `spec.credentials` whose `<name>-sip-credentials` Secret
//!   does not exist gets one: `username`, `password`, owned by the resource (garbage-collected
//!   with it), labelled [`GENERATED_LABEL`].
//! - Rotation: when the owner's [`ROTATE_ANNOTATION`] differs from the Secret's
//!   [`ROTATED_FOR_ANNOTATION`], the Secret gets a new password and records the value, so each
//!   new annotation value rotates exactly once. The new HA1 is in the config published in the
//!   same pass.
//! - A device whose `spec.sipUser` changed gets its generated Secret's `username` updated
//!   (the prefix is kept).
//!
//! A Secret of that name the operator did not generate (no label) is never overwritten.

use super::*;
use crate::index::StoredSecret;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::ByteString;
use kube::Resource;
use rand::distr::{Alphanumeric, SampleString};
use rand::Rng;
use std::collections::BTreeMap;
use switchboard_crds::SipDevice;

/// Why a Secret is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// It did not exist.
    Generated,
    /// The rotation annotation changed.
    Rotated,
    /// The SIP user changed; the password is kept.
    Renamed,
}

impl Reason {
    /// The Event reason.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Generated => "CredentialsGenerated",
            Reason::Rotated => "CredentialsRotated",
            Reason::Renamed => "CredentialsUpdated",
        }
    }
}

/// Whose Secret it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnerKind {
    /// A `SipDevice`.
    Device,
    /// A `SipRegistration`.
    Registration,
}

/// One Secret to write (server-side apply: creates or replaces the operator's fields).
#[derive(Clone, Debug)]
pub struct SecretWrite {
    /// The resource the Secret belongs to.
    pub owner: ObjectKey,
    /// Its kind.
    pub owner_kind: OwnerKind,
    /// Why.
    pub reason: Reason,
    /// The full desired Secret.
    pub secret: Secret,
}

/// A new random password.
pub fn new_password(rng: &mut impl Rng) -> String {
    Alphanumeric.sample_string(rng, PASSWORD_LEN)
}

fn text(secret: &StoredSecret, key: &str) -> Option<String> {
    String::from_utf8(secret.get(key)?.to_vec()).ok()
}

/// The resource a generated Secret belongs to.
struct Owner<'a> {
    key: ObjectKey,
    /// Its rotation annotation.
    rotate: Option<&'a str>,
    /// The controller reference the Secret carries (none without a UID).
    reference: Option<OwnerReference>,
}

impl<'a> Owner<'a> {
    fn of<K: Resource<DynamicType = ()>>(owner: &'a K) -> Self {
        Owner {
            key: ObjectKey::new(
                owner.meta().namespace.clone().unwrap_or_default(),
                owner.meta().name.clone().unwrap_or_default(),
            ),
            rotate: owner
                .meta()
                .annotations
                .as_ref()
                .and_then(|a| a.get(ROTATE_ANNOTATION))
                .map(String::as_str),
            reference: owner.controller_owner_ref(&()),
        }
    }

    fn device(d: &'a Device) -> Self {
        Owner {
            key: d.key.clone(),
            rotate: d.rotate.as_deref(),
            reference: d.uid.as_ref().map(|uid| OwnerReference {
                api_version: SipDevice::api_version(&()).to_string(),
                kind: SipDevice::kind(&()).to_string(),
                name: d.key.name.to_string(),
                uid: uid.to_string(),
                controller: Some(true),
                ..OwnerReference::default()
            }),
        }
    }
}

fn desired(owner: &Owner, username: &str, password: &str, rotated_for: Option<&str>) -> Secret {
    let mut annotations = BTreeMap::new();
    if let Some(v) = rotated_for {
        annotations.insert(ROTATED_FOR_ANNOTATION.to_string(), v.to_string());
    }
    Secret {
        metadata: ObjectMeta {
            name: Some(generated_secret_name(&owner.key.name)),
            namespace: (!owner.key.namespace.is_empty()).then(|| owner.key.namespace.to_string()),
            labels: Some(BTreeMap::from([
                (GENERATED_LABEL.to_string(), "true".to_string()),
                (CREDENTIALS_LABEL.to_string(), "true".to_string()),
            ])),
            annotations: (!annotations.is_empty()).then_some(annotations),
            owner_references: owner.reference.clone().map(|r| vec![r]),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([
            (
                USERNAME_KEY.to_string(),
                ByteString(username.as_bytes().to_vec()),
            ),
            (
                switchboard_crds::common::DEFAULT_PASSWORD_KEY.to_string(),
                ByteString(password.as_bytes().to_vec()),
            ),
        ])),
        type_: Some("Opaque".into()),
        ..Secret::default()
    }
}

/// Plans one owner's Secret, given the user name it should carry.
fn plan_one(
    index: &Index,
    owner: &Owner,
    owner_kind: OwnerKind,
    username: impl Fn(Option<&str>) -> String,
    rng: &mut impl Rng,
) -> Option<SecretWrite> {
    let key = &owner.key;
    let name = generated_secret_name(&key.name);
    let rotate = owner.rotate;
    let write = |reason, secret| SecretWrite {
        owner: key.clone(),
        owner_kind,
        reason,
        secret,
    };
    let Some(existing) = index.secrets.get(&key.sibling(&name)) else {
        let user = username(None);
        return Some(write(
            Reason::Generated,
            desired(owner, &user, &new_password(rng), rotate),
        ));
    };
    if !existing.generated {
        return None;
    }
    let stored_user = text(existing, USERNAME_KEY);
    let user = username(stored_user.as_deref());
    let done_for = existing.rotated_for.as_deref();
    if rotate.is_some() && rotate != done_for {
        return Some(write(
            Reason::Rotated,
            desired(owner, &user, &new_password(rng), rotate),
        ));
    }
    let password = text(existing, switchboard_crds::common::DEFAULT_PASSWORD_KEY);
    match password {
        Some(pw) if !pw.is_empty() => (stored_user.as_deref() != Some(user.as_str()))
            .then(|| write(Reason::Renamed, desired(owner, &user, &pw, done_for))),
        // A generated Secret someone emptied: make a new password.
        _ => Some(write(
            Reason::Rotated,
            desired(owner, &user, &new_password(rng), rotate),
        )),
    }
}

/// Every credential Secret write the index calls for, in key order.
pub fn plan(index: &Index, rng: &mut impl Rng) -> Vec<SecretWrite> {
    let mut writes = Vec::new();
    for device in index.devices.values() {
        if device.spec.credentials.is_none() {
            let w = plan_one(
                index,
                &Owner::device(device),
                OwnerKind::Device,
                |stored| device_sip_user(device, stored),
                rng,
            );
            writes.extend(w);
        }
    }
    for reg in index.registrations.values() {
        if reg.spec.credentials.is_none() {
            let user = reg
                .spec
                .auth_username
                .clone()
                .unwrap_or_else(|| reg.spec.username.clone());
            let w = plan_one(
                index,
                &Owner::of(&**reg),
                OwnerKind::Registration,
                |_| user.clone(),
                rng,
            );
            writes.extend(w);
        }
    }
    writes
}
