//! `SipRegistration`: the registrar registers to an upstream PBX or carrier.

use crate::common::{Credentials, Transport};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A registration the registrar keeps with an upstream PBX or provider, so that calls to the
/// address of record arrive here.
// Every printcolumn repeats `type_`; clippy reads that as a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "sip.switchboard.dev",
    version = "v1alpha1",
    kind = "SipRegistration",
    namespaced,
    status = "SipRegistrationStatus",
    shortname = "sipreg",
    category = "switchboard",
    doc = "A registration the Switchboard registrar keeps with an upstream PBX or carrier.",
    printcolumn(name = "AOR", type_ = "string", json_path = ".spec.aor"),
    printcolumn(name = "Transport", type_ = "string", json_path = ".spec.transport"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Code", type_ = "integer", json_path = ".status.lastStatusCode"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.lastReason"),
    printcolumn(
        name = "Replica",
        type_ = "string",
        priority = 1,
        json_path = ".status.replica"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.port) || !(self.transport == 'TLS' && self.port == 5060) && !(self.transport != 'TLS' && self.port == 5061)").message("port 5060 is for UDP/TCP and 5061 for TLS: transport and port disagree"))]
#[x_kube(validation = Rule::new("!has(self.transport) || !(self.transport in ['WS', 'WSS'])").message("WS and WSS are for browser phones: an upstream is reached over UDP, TCP or TLS").field_path(".transport"))]
pub struct SipRegistrationSpec {
    /// Address of record registered upstream, `sip:user@domain`.
    #[schemars(regex(pattern = r"^sips?:[^@\s]+@[^@\s]+$"))]
    pub aor: String,
    /// Digest realm expected in the upstream's challenge; any realm when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realm: Option<String>,
    /// User part registered upstream.
    #[schemars(length(min = 1, max = 128))]
    pub username: String,
    /// User name for digest authentication, when it differs from `username`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_username: Option<String>,
    /// Where the password is; absent, the operator generates a Secret to be filled in upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Credentials>,
    /// Registrar to send REGISTER to: `host`, `host:port`, optionally `;transport=tcp`; the
    /// AOR's domain when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(
        pattern = r"^(sips?:)?[A-Za-z0-9.\-]+(:[0-9]{1,5})?(;transport=(udp|tcp|tls|UDP|TCP|TLS))?$"
    ))]
    pub proxy: Option<String>,
    /// Port of the registrar; 5060, or 5061 for TLS, when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<u32>,
    /// Transport to the upstream: UDP, TCP or TLS (WS and WSS are for browser phones only).
    #[serde(default)]
    pub transport: Transport,
    /// Requested registration lifetime in seconds.
    #[serde(default = "default_expires")]
    #[schemars(range(min = 60, max = 86400))]
    pub expires: u32,
    /// Subscribe to presence/BLF of the AOR.
    #[serde(default)]
    pub subscribe: bool,
    /// Send every request through this proxy (`host[:port]`) rather than to `proxy` directly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(
        pattern = r"^(sips?:)?[A-Za-z0-9.\-]+(:[0-9]{1,5})?(;transport=(udp|tcp|tls|UDP|TCP|TLS))?$"
    ))]
    pub outbound_proxy: Option<String>,
    /// Where calls arriving through this registration go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<RegistrationTarget>,
    /// An HTTP endpoint told of every phase change (`InProgress`, `Successful`, `Failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback: Option<RegistrationCallback>,
}

/// Where phase changes of a registration are POSTed, and the key that signs them.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RegistrationCallback {
    /// `http://` or `https://` URL receiving a JSON POST per phase change.
    #[schemars(regex(pattern = r"^https?://[^\s/]+(/\S*)?$"), length(max = 2048))]
    pub url: String,
    /// A Secret in this namespace (labelled `sip.switchboard.dev/credentials: "true"`) whose
    /// key signs each body: `X-Switchboard-Signature: sha256=<hex HMAC-SHA256>`. Unsigned
    /// when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<CallbackSecretRef>,
}

/// The Secret key holding a callback's HMAC key.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CallbackSecretRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key within it (default `key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// The Secret key a callback's HMAC key lives in unless `key` says otherwise.
pub const DEFAULT_CALLBACK_KEY: &str = "key";

impl CallbackSecretRef {
    /// The key holding the HMAC key.
    pub fn key(&self) -> &str {
        self.key.as_deref().unwrap_or(DEFAULT_CALLBACK_KEY)
    }
}

fn default_expires() -> u32 {
    3600
}

/// Where calls arriving through a registration go: a device, or an extension or user of a site.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.device) ? 1 : 0) + (has(self.extension) ? 1 : 0) + (has(self.user) ? 1 : 0) == 1").message("target takes exactly one of device, extension or user"))]
#[x_kube(validation = Rule::new("has(self.device) || has(self.site)").message("an extension or user target needs a site"))]
pub struct RegistrationTarget {
    /// A `SipDevice` in this namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// The `Site` the extension or user belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// An extension of `site`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]{1,8}$"))]
    pub extension: Option<String>,
    /// A user of `site`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// State of an upstream registration.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RegistrationPhase {
    /// Registering, or waiting to retry.
    #[default]
    InProgress,
    /// The upstream accepted the registration.
    Successful,
    /// The upstream refused, or could not be reached.
    Failed,
}

/// Observed state of an upstream registration. The registrar writes the phase fields, the
/// operator the conditions.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SipRegistrationStatus {
    /// `InProgress`, `Successful` or `Failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RegistrationPhase>,
    /// SIP status code of the last answer (408 for a timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_status_code: Option<u16>,
    /// Reason of the last answer or failure, e.g. `403 Forbidden`, `DNS failure`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reason: Option<String>,
    /// When the last REGISTER was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt_time: Option<Time>,
    /// When the upstream registration expires unless refreshed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_time: Option<Time>,
    /// The registrar replica that owns this registration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<String>,
    /// Presence/BLF (`spec.subscribe`): the subscriptions and what they report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence: Option<PresenceStatus>,
    /// Delivery of phase changes to `spec.callback`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback: Option<CallbackStatus>,
    /// `Accepted` and `Ready` (operator).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The generation the operator last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Presence/BLF state of a registration's AOR, as the upstream notifies it.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PresenceStatus {
    /// One per event package subscribed to (`presence`, `dialog`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["event"]))]
    pub subscriptions: Vec<SubscriptionStatus>,
    /// The state of each watched entity, per package.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entities: Vec<EntityStatus>,
}

/// State of one SUBSCRIBE dialog.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionStatus {
    /// Event package: `presence` (RFC 3856) or `dialog` (RFC 4235).
    pub event: String,
    /// `Subscribing`, `Pending`, `Active`, `Terminated` (re-subscribing) or `Failed`.
    pub state: SubscriptionState,
    /// SIP status code of the last answer to SUBSCRIBE (489: the upstream lacks the package).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_status_code: Option<u16>,
    /// Reason of the last answer, failure or termination.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When the subscription expires unless refreshed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_time: Option<Time>,
}

/// State of a subscription.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubscriptionState {
    /// SUBSCRIBE sent, or waiting to retry.
    Subscribing,
    /// Accepted, awaiting the watched user's authorization (RFC 6665 `pending`).
    Pending,
    /// Notifications flow.
    Active,
    /// The notifier ended it; subscribing again.
    Terminated,
    /// Refused or unreachable; retried with backoff.
    Failed,
}

/// What a watched entity is doing: the busy lamp of a BLF key.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntityState {
    /// Available, no call.
    Idle,
    /// A call is ringing it.
    Ringing,
    /// On a call (or dialling out), or says it is busy.
    Busy,
    /// Not available (PIDF `closed`).
    Offline,
}

/// One watched entity's state, as one package tells it.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct EntityStatus {
    /// The entity's URI (`sip:1001@pbx.example.com`).
    pub entity: String,
    /// The package that told it: `presence` or `dialog`.
    pub event: String,
    /// `Idle`, `Ringing`, `Busy` or `Offline`.
    pub state: EntityState,
    /// Free text the notifier gave (a PIDF note), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// When this state was first notified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Time>,
}

/// Delivery state of phase-change callbacks.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CallbackStatus {
    /// The last phase the endpoint acknowledged (2xx).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_delivered_phase: Option<RegistrationPhase>,
    /// When it was acknowledged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_delivered_time: Option<Time>,
    /// Attempts made for the change being (or last) delivered.
    #[serde(default)]
    pub attempts: u32,
    /// Why the last attempt failed (`HTTP 503`, `connection refused`…), cleared on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The last phase change given up on (after its last attempt), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gave_up_phase: Option<RegistrationPhase>,
    /// When it was given up on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gave_up_time: Option<Time>,
}

/// Where REGISTER goes, once `proxy`, `port`, `transport` and the AOR are reconciled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTarget {
    /// Host name or IP address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Transport.
    pub transport: Transport,
}

impl SipRegistrationSpec {
    /// The domain part of the AOR.
    pub fn aor_domain(&self) -> Option<&str> {
        self.aor.split_once('@').map(|(_, d)| d)
    }

    /// Resolves where REGISTER is sent: `proxy` (or the AOR's domain), its explicit port or
    /// `spec.port` or the transport's default, and `;transport=` or `spec.transport`.
    pub fn upstream(&self) -> Result<UpstreamTarget, String> {
        let raw = match &self.proxy {
            Some(p) => p.as_str(),
            None => self.aor_domain().ok_or("aor has no domain")?,
        };
        parse_hostport(raw, self.transport, self.port)
    }
}

/// Parses `[sip:]host[:port][;transport=x]` with fallbacks for transport and port.
pub fn parse_hostport(
    raw: &str,
    default_transport: Transport,
    default_port: Option<u32>,
) -> Result<UpstreamTarget, String> {
    let raw = raw
        .trim()
        .trim_start_matches("sips:")
        .trim_start_matches("sip:");
    let mut parts = raw.split(';');
    let hostport = parts.next().unwrap_or_default();
    let mut transport = default_transport;
    for param in parts {
        if let Some(t) = param.strip_prefix("transport=") {
            transport = Transport::from_sip_param(t)
                .ok_or_else(|| format!("unknown transport {t:?} in {raw:?}"))?;
        }
    }
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') || h.ends_with(']') => {
            let port: u16 = p
                .parse()
                .map_err(|_| format!("invalid port {p:?} in {raw:?}"))?;
            (h, Some(port))
        }
        _ => (hostport, None),
    };
    if host.is_empty() {
        return Err(format!("no host in {raw:?}"));
    }
    let port = match (port, default_port) {
        (Some(p), _) => p,
        (None, Some(p)) => u16::try_from(p).map_err(|_| format!("port {p} out of range"))?,
        (None, None) => transport.default_port(),
    };
    if port == 0 {
        return Err(format!("port 0 in {raw:?}"));
    }
    Ok(UpstreamTarget {
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        port,
        transport,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_with_port_and_transport() {
        let t =
            parse_hostport("sip.provider.org:5090;transport=tcp", Transport::Udp, None).unwrap();
        assert_eq!(
            t,
            UpstreamTarget {
                host: "sip.provider.org".into(),
                port: 5090,
                transport: Transport::Tcp
            }
        );
    }

    #[test]
    fn defaults_follow_transport() {
        assert_eq!(
            parse_hostport("pbx.example.com", Transport::Tls, None)
                .unwrap()
                .port,
            5061
        );
        assert_eq!(
            parse_hostport("pbx.example.com", Transport::Udp, None)
                .unwrap()
                .port,
            5060
        );
        assert_eq!(
            parse_hostport("pbx.example.com", Transport::Udp, Some(5070))
                .unwrap()
                .port,
            5070
        );
        assert_eq!(
            parse_hostport("[::1]:5080", Transport::Udp, None)
                .unwrap()
                .host,
            "::1"
        );
    }

    #[test]
    fn bad_proxy_is_explained() {
        assert!(parse_hostport("host:99999", Transport::Udp, None)
            .unwrap_err()
            .contains("invalid port"));
        assert!(parse_hostport("host;transport=sctp", Transport::Udp, None)
            .unwrap_err()
            .contains("sctp"));
    }
}
