//! Types shared by several resources.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A SIP transport.
#[derive(
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    JsonSchema,
    Default,
)]
pub enum Transport {
    /// SIP over UDP (RFC 3261 §18), port 5060 by default.
    #[default]
    #[serde(rename = "UDP")]
    Udp,
    /// SIP over TCP, port 5060 by default.
    #[serde(rename = "TCP")]
    Tcp,
    /// SIP over TLS, port 5061 by default.
    #[serde(rename = "TLS")]
    Tls,
    /// SIP over WebSocket (RFC 7118), for browser softphones; port 80 by default.
    #[serde(rename = "WS")]
    Ws,
    /// SIP over secure WebSocket (RFC 7118), for browser softphones; port 443 by default.
    #[serde(rename = "WSS")]
    Wss,
}

impl Transport {
    /// The port a transport uses when none is given (RFC 3261 §19.1.2).
    pub fn default_port(self) -> u16 {
        match self {
            Transport::Tls => 5061,
            Transport::Udp | Transport::Tcp => 5060,
            Transport::Ws => 80,
            Transport::Wss => 443,
        }
    }

    /// The lower-case token used in SIP URIs (`;transport=tcp`) and Via headers.
    pub fn as_sip_param(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
            Transport::Ws => "ws",
            Transport::Wss => "wss",
        }
    }

    /// Whether messages go over a connection (every transport but UDP): responses and requests
    /// to a phone registered over it go down that connection (its flow).
    pub fn is_stream(self) -> bool {
        self != Transport::Udp
    }

    /// Whether this is SIP over WebSocket (RFC 7118): a browser's Contact names no reachable
    /// host (`*.invalid`), so only its connection reaches it.
    pub fn is_websocket(self) -> bool {
        matches!(self, Transport::Ws | Transport::Wss)
    }

    /// Parses a `transport=` URI parameter value, case-insensitively.
    pub fn from_sip_param(s: &str) -> Option<Transport> {
        match s.to_ascii_lowercase().as_str() {
            "udp" => Some(Transport::Udp),
            "tcp" => Some(Transport::Tcp),
            "tls" => Some(Transport::Tls),
            "ws" => Some(Transport::Ws),
            "wss" => Some(Transport::Wss),
            _ => None,
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
            Transport::Ws => "WS",
            Transport::Wss => "WSS",
        })
    }
}

/// A digest algorithm offered in challenges (RFC 8760).
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema,
)]
pub enum DigestAlgorithm {
    /// SHA-256 (RFC 8760), for sites whose phones all support it.
    #[serde(rename = "SHA-256")]
    Sha256,
    /// MD5 (RFC 2617), what most deployed phones speak; the default offer.
    #[serde(rename = "MD5")]
    Md5,
}

impl DigestAlgorithm {
    /// The `algorithm=` token of a challenge.
    pub fn token(self) -> &'static str {
        match self {
            DigestAlgorithm::Sha256 => "SHA-256",
            DigestAlgorithm::Md5 => "MD5",
        }
    }
}

/// A reference to a Secret in the resource's own namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key holding the password (default `password`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_key: Option<String>,
}

impl SecretRef {
    /// The key that holds the password.
    pub fn password_key(&self) -> &str {
        self.password_key.as_deref().unwrap_or(DEFAULT_PASSWORD_KEY)
    }
}

/// The Secret key a password lives in unless a `passwordKey` says otherwise.
pub const DEFAULT_PASSWORD_KEY: &str = "password";
/// The Secret key the full SIP user name lives in, for the person configuring the phone.
pub const USERNAME_KEY: &str = "username";
/// Annotation on a device or registration: set it to any new value to get a new password.
pub const ROTATE_ANNOTATION: &str = "sip.switchboard.dev/rotate-credentials";
/// Annotation on a generated Secret: the rotation value it was generated for.
pub const ROTATED_FOR_ANNOTATION: &str = "sip.switchboard.dev/rotated-for";

/// Where a password comes from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Credentials {
    /// The Secret holding the password. When `credentials` is absent the operator generates one.
    pub secret_ref: SecretRef,
}

/// Condition types the operator sets.
pub mod condition {
    /// The object is valid on its own and against the others it refers to.
    pub const ACCEPTED: &str = "Accepted";
    /// The object is part of the published registrar config.
    pub const READY: &str = "Ready";
    /// A device has at least one live binding (written by the registrar).
    pub const REGISTERED: &str = "Registered";
}

/// Finds a condition by type.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Inserts or updates a condition; `lastTransitionTime` only moves when the status flips,
/// so re-applying the same verdict changes nothing.
pub fn set_condition(conditions: &mut Vec<Condition>, new: Condition) {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(existing) => {
            let transition = if existing.status == new.status {
                existing.last_transition_time.clone()
            } else {
                new.last_transition_time.clone()
            };
            *existing = Condition {
                last_transition_time: transition,
                ..new
            };
        }
        None => conditions.push(new),
    }
}
