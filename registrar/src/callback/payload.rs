//! What a callback sends: the JSON body of one phase change and its signature. Pure.
//!
//! The signature is `X-Switchboard-Signature: sha256=<hex>`, the HMAC-SHA256 under the
//! callback's key of `<X-Switchboard-Timestamp>.<body>` (the Unix time of the attempt, then a
//! dot, then the exact body bytes), so a receiver can refuse a replayed request by its age;
//! `X-Switchboard-Delivery` is the same for every attempt of one change, for deduplication.

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use switchboard_crds::registration::RegistrationPhase;

/// Header carrying the signature.
pub const SIGNATURE_HEADER: &str = "X-Switchboard-Signature";
/// Header carrying the Unix time the signature covers.
pub const TIMESTAMP_HEADER: &str = "X-Switchboard-Timestamp";
/// Header carrying the change's id, the same on every attempt.
pub const DELIVERY_HEADER: &str = "X-Switchboard-Delivery";

/// One phase change of a registration: the JSON body POSTed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PhaseChange {
    /// The SipRegistration.
    pub registration: ObjectRef,
    /// The phase before (absent for the first one this replica saw).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_phase: Option<RegistrationPhase>,
    /// The phase now.
    pub new_phase: RegistrationPhase,
    /// SIP status code of the answer that caused it, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    /// Its reason (`200 OK`, `403 Forbidden`, `408 timeout`, `DNS failure: …`).
    pub reason: String,
    /// When the change happened (RFC 3339).
    pub time: String,
    /// The replica that saw it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica: Option<String>,
}

/// `namespace` and `name` of a resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectRef {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl ObjectRef {
    /// From a config id `namespace/name`.
    pub fn from_id(id: &str) -> ObjectRef {
        let (namespace, name) = id.split_once('/').unwrap_or(("", id));
        ObjectRef {
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

impl PhaseChange {
    /// The body bytes.
    pub fn to_body(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a phase change serializes")
    }
}

/// The `X-Switchboard-Signature` value for `body` sent at `timestamp` (Unix seconds).
pub fn signature(key: &[u8], timestamp: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_names_the_registration_and_both_phases() {
        let change = PhaseChange {
            registration: ObjectRef::from_id("telephony/carrier"),
            old_phase: Some(RegistrationPhase::InProgress),
            new_phase: RegistrationPhase::Failed,
            status_code: Some(403),
            reason: "403 Forbidden".into(),
            time: "2026-01-02T03:04:05Z".into(),
            replica: None,
        };
        let v: serde_json::Value = serde_json::from_slice(&change.to_body()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "registration": {"namespace": "telephony", "name": "carrier"},
                "oldPhase": "InProgress",
                "newPhase": "Failed",
                "statusCode": 403,
                "reason": "403 Forbidden",
                "time": "2026-01-02T03:04:05Z",
            })
        );
    }

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Computed independently: printf '1700000000.{}' | openssl dgst -sha256 -hmac secret
        assert_eq!(
            signature(b"secret", 1_700_000_000, b"{}"),
            "sha256=b8569b78799ff9e3cbff0fc2d63a33a2b57f3282abd07c37ae5e8e7d79a5f163"
        );
        assert_ne!(
            signature(b"secret", 1_700_000_001, b"{}"),
            signature(b"secret", 1_700_000_000, b"{}")
        );
    }
}
