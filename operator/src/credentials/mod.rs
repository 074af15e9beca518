//! Credentials: where a device's or registration's password comes from, and the SIP user name.
//!
//! # The SIP user scheme
//!
//! A device's SIP user is a generated prefix, six lower-case letters or digits and a `-`, in
//! front of the administrator's `spec.sipUser`: `spec.sipUser: lobby` → `k3x9q2-lobby`. The
//! prefix keeps SIP users from being guessed from a naming convention and keeps two sites'
//! `lobby` phones apart. It is:
//!
//! 1. taken from the credentials Secret's `username` key when that holds `xxxxxx-…` (so a
//!    restored or recreated device whose Secret survived keeps its user, and an administrator
//!    can pin one by writing it there), else
//! 2. derived from the object's UID: the first six base-36 digits of SHA-256(uid). Stable for
//!    the object's life, needs no storage, and keeps compilation a pure function.
//!
//! A generated Secret `<name>-sip-credentials` gets `username` (the full SIP user) and
//! `password` (24 random alphanumerics, ~143 bits) keys; see [`plan`] for generation and
//! rotation.

pub mod plan;

use crate::index::{Device, Index};
use crate::key::ObjectKey;
use crate::problem::Problem;
use kube::ResourceExt;
use sha2::{Digest, Sha256};
use switchboard_crds::common::USERNAME_KEY;
use switchboard_crds::SipRegistration;

pub use switchboard_crds::common::{
    CREDENTIALS_LABEL, GENERATED_LABEL, ROTATED_FOR_ANNOTATION, ROTATE_ANNOTATION,
};
/// A generated Secret is named after its owner plus this.
pub const SECRET_SUFFIX: &str = "-sip-credentials";
/// Length of the generated prefix, without the `-`.
pub const PREFIX_LEN: usize = 6;
/// Length of a generated password.
pub const PASSWORD_LEN: usize = 24;

/// A credential ready to compile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// Name of the Secret it came from.
    pub secret: String,
    /// Device: the full SIP user. Registration: the digest user name.
    pub username: String,
    /// The password.
    pub password: String,
}

/// The Secret name a resource without `spec.credentials` gets.
pub fn generated_secret_name(owner: &str) -> String {
    format!("{owner}{SECRET_SUFFIX}")
}

/// The prefix derived from a UID: six base-36 digits of SHA-256(uid), then `-`.
pub fn derived_prefix(uid: &str) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let digest = Sha256::digest(uid.as_bytes());
    let mut prefix: String = digest[..PREFIX_LEN]
        .iter()
        .map(|b| DIGITS[usize::from(*b) % DIGITS.len()] as char)
        .collect();
    prefix.push('-');
    prefix
}

/// The prefix of a stored user name, if it has the `xxxxxx-` form.
pub fn stored_prefix(username: &str) -> Option<&str> {
    let b = username.as_bytes();
    let ok = b.len() > PREFIX_LEN + 1
        && b[PREFIX_LEN] == b'-'
        && b[..PREFIX_LEN]
            .iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    ok.then(|| &username[..=PREFIX_LEN])
}

/// A device's full SIP user, given the user name stored in its Secret (if any).
pub fn device_sip_user(device: &Device, stored_username: Option<&str>) -> String {
    let prefix = stored_username
        .and_then(stored_prefix)
        .map(str::to_string)
        .unwrap_or_else(|| derived_prefix(device.uid.as_deref().unwrap_or_default()));
    format!("{prefix}{}", device.spec.sip_user)
}

/// The Secret name and password key a device uses.
pub fn device_secret(device: &Device) -> (String, String) {
    match &device.spec.credentials {
        Some(c) => (c.name.clone(), c.password_key().to_string()),
        None => (
            generated_secret_name(&device.key.name),
            switchboard_crds::common::DEFAULT_PASSWORD_KEY.into(),
        ),
    }
}

/// The Secret name and password key a registration uses.
pub fn registration_secret(reg: &SipRegistration) -> (String, String) {
    match &reg.spec.credentials {
        Some(c) => (
            c.secret_ref.name.clone(),
            c.secret_ref.password_key().to_string(),
        ),
        None => (
            generated_secret_name(&reg.name_any()),
            switchboard_crds::common::DEFAULT_PASSWORD_KEY.into(),
        ),
    }
}

fn password(
    index: &Index,
    key: &ObjectKey,
    secret: &str,
    password_key: &str,
) -> Result<String, Problem> {
    let secret_key = key.sibling(secret);
    if !index.secrets.contains_key(&secret_key) {
        return Err(Problem::missing(format!(
            "credentials Secret {secret:?} not found; the operator reads only Secrets labelled \
             {CREDENTIALS_LABEL}=true: kubectl label secret {secret} {CREDENTIALS_LABEL}=true"
        )));
    }
    let bytes = index
        .secret_value(&secret_key, password_key)
        .ok_or_else(|| {
            Problem::missing(format!("Secret {secret:?} has no key {password_key:?}"))
        })?;
    let pw = std::str::from_utf8(bytes)
        .map_err(|_| {
            Problem::invalid(format!(
                "Secret {secret:?} key {password_key:?} is not UTF-8"
            ))
        })?
        .trim_end_matches(['\r', '\n']);
    if pw.is_empty() {
        return Err(Problem::invalid(format!(
            "Secret {secret:?} key {password_key:?} is empty"
        )));
    }
    Ok(pw.to_string())
}

/// Resolves a device's SIP user and password from the index.
pub fn resolve_device(index: &Index, device: &Device) -> Result<Resolved, Problem> {
    let key = &device.key;
    let (secret, password_key) = device_secret(device);
    let password = password(index, key, &secret, &password_key)?;
    let stored = index
        .secret_value(&key.sibling(&secret), USERNAME_KEY)
        .and_then(|b| std::str::from_utf8(b).ok());
    Ok(Resolved {
        username: device_sip_user(device, stored),
        secret,
        password,
    })
}

/// Resolves a registration's digest user and password from the index.
pub fn resolve_registration(index: &Index, reg: &SipRegistration) -> Result<Resolved, Problem> {
    let key = ObjectKey::of(reg);
    let (secret, password_key) = registration_secret(reg);
    let password = password(index, &key, &secret, &password_key)?;
    Ok(Resolved {
        username: reg
            .spec
            .auth_username
            .clone()
            .unwrap_or_else(|| reg.spec.username.clone()),
        secret,
        password,
    })
}

/// Resolves a registration's callback: its URL and, when `secretRef` is set, the HMAC key
/// read from that Secret under the same rules as a password (labelled, present, non-empty).
pub fn resolve_callback(
    index: &Index,
    reg: &SipRegistration,
) -> Result<Option<switchboard_crds::config::CallbackTarget>, Problem> {
    let Some(cb) = &reg.spec.callback else {
        return Ok(None);
    };
    let key = match &cb.secret_ref {
        Some(r) => Some(
            password(index, &ObjectKey::of(reg), &r.name, r.key()).map_err(|p| Problem {
                message: format!("spec.callback.secretRef: {}", p.message),
                ..p
            })?,
        ),
        None => None,
    };
    Ok(Some(switchboard_crds::config::CallbackTarget {
        url: cb.url.clone(),
        key,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_prefix_is_stable_and_well_formed() {
        let p = derived_prefix("7f1c9a4e-1111-4b2c-9d3e-000000000001");
        assert_eq!(p, derived_prefix("7f1c9a4e-1111-4b2c-9d3e-000000000001"));
        assert_ne!(p, derived_prefix("7f1c9a4e-1111-4b2c-9d3e-000000000002"));
        assert_eq!(p.len(), PREFIX_LEN + 1);
        assert_eq!(stored_prefix(&format!("{p}lobby")), Some(p.as_str()));
    }

    #[test]
    fn stored_prefix_needs_the_form() {
        assert_eq!(stored_prefix("ab12cd-lobby"), Some("ab12cd-"));
        assert_eq!(stored_prefix("AB12CD-lobby"), None);
        assert_eq!(stored_prefix("lobby"), None);
        assert_eq!(stored_prefix("ab12cd-"), None);
    }
}
