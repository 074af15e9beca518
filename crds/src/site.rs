//! `Site`: a place with its own SIP domain, extension range and calling policy.

use crate::common::{DigestAlgorithm, Transport};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// A place with its own SIP domain (also the digest realm) and calling policy.
// Every printcolumn repeats `type_`; clippy reads that as a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "sip.switchboard.dev",
    version = "v1alpha1",
    kind = "Site",
    namespaced,
    status = "SiteStatus",
    shortname = "site",
    category = "switchboard",
    doc = "A place with its own SIP domain, extension range and calling policy.",
    printcolumn(name = "Domain", type_ = "string", json_path = ".spec.domain"),
    printcolumn(name = "Extensions", type_ = "string", json_path = ".spec.extensions"),
    printcolumn(name = "Devices", type_ = "integer", json_path = ".status.devices"),
    printcolumn(
        name = "Registered",
        type_ = "integer",
        json_path = ".status.registered"
    ),
    printcolumn(
        name = "Accepted",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Accepted\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct SiteSpec {
    /// SIP domain and digest realm, e.g. `acme.sip.example.com`.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub domain: String,
    /// Extension range, `FIRST-LAST`, e.g. `1000-1999`.
    #[schemars(regex(pattern = r"^[0-9]{1,8}-[0-9]{1,8}$"))]
    pub extensions: String,
    /// E.164 number used as caller ID when a device sets none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^\+[1-9][0-9]{1,14}$"))]
    pub default_outbound_caller_id: Option<String>,
    /// What devices of this site may dial.
    #[serde(default)]
    pub call_restrictions: CallRestrictions,
    /// CallPattern names enabled for every device of the site unless a device removes them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub call_patterns: Vec<String>,
    /// The users who belong to the site; only they can be given a companion-mode device.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]), length(max = 10000))]
    pub users: Vec<SiteUser>,
    /// CIDRs of PBXs allowed to send calls without registering.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_peers: Vec<String>,
    /// Registration policy for the site's devices.
    #[serde(default)]
    pub registration: RegistrationPolicy,
    /// A companion-mode device for every user listed (but those who opt out), kept in step
    /// with `users` by the operator: SipDevices owned by the Site, with generated credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub companion_devices: Option<CompanionDevices>,
}

/// The companion devices a Site keeps for its users (`spec.companionDevices`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CompanionDevices {
    /// Whether they ring when their user is called.
    #[serde(default = "default_true")]
    pub receive_calls: bool,
}

fn default_true() -> bool {
    true
}

/// A person who belongs to a site.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SiteUser {
    /// User name, unique in the site; callable by this name.
    #[schemars(regex(pattern = r"^[a-zA-Z0-9._-]{1,64}$"))]
    pub name: String,
    /// Extension that rings this user's companion-mode devices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]{1,8}$"))]
    pub extension: Option<String>,
    /// Contact e-mail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// `false`: no companion device for this user even when the site keeps them
    /// (`spec.companionDevices`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub companion_device: Option<bool>,
}

/// What may be dialled. Emergency numbers are always allowed.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CallRestrictions {
    /// Allow international numbers (`+` or `00` followed by another country code).
    #[serde(default)]
    pub allow_international: bool,
    /// Allow premium-rate numbers (those starting with one of `premiumRatePrefixes`).
    #[serde(default)]
    pub allow_premium_rate: bool,
    /// Country code of the site, without `+`; `+CC…` numbers are then domestic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[1-9][0-9]{0,2}$"))]
    pub country_code: Option<String>,
    /// Prefixes of premium-rate numbers, matched after dial rules ran.
    #[serde(default = "default_premium_prefixes")]
    pub premium_rate_prefixes: Vec<String>,
    /// Prefixes that are always refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocked_prefixes: Vec<String>,
    /// Numbers that are always allowed, whatever else is set.
    #[serde(default = "default_emergency_numbers")]
    pub emergency_numbers: Vec<String>,
}

impl Default for CallRestrictions {
    fn default() -> Self {
        CallRestrictions {
            allow_international: false,
            allow_premium_rate: false,
            country_code: None,
            premium_rate_prefixes: default_premium_prefixes(),
            blocked_prefixes: Vec::new(),
            emergency_numbers: default_emergency_numbers(),
        }
    }
}

fn default_premium_prefixes() -> Vec<String> {
    vec!["900".into(), "+1900".into()]
}

fn default_emergency_numbers() -> Vec<String> {
    vec!["112".into(), "911".into()]
}

/// How the site's devices register.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.minExpires <= self.defaultExpires && self.defaultExpires <= self.maxExpires").message("need minExpires <= defaultExpires <= maxExpires"))]
pub struct RegistrationPolicy {
    /// Shortest expiry accepted; shorter requests get `423 Interval Too Brief`.
    #[serde(default = "default_min_expires")]
    #[schemars(range(min = 1, max = 86400))]
    pub min_expires: u32,
    /// Longest expiry granted; longer requests are lowered to it.
    #[serde(default = "default_max_expires")]
    #[schemars(range(min = 1, max = 86400))]
    pub max_expires: u32,
    /// Expiry granted when the phone asks for none.
    #[serde(default = "default_default_expires")]
    #[schemars(range(min = 1, max = 86400))]
    pub default_expires: u32,
    /// Bindings one device may hold at once; the oldest is replaced beyond it.
    #[serde(default = "default_max_contacts")]
    #[schemars(range(min = 1, max = 32))]
    pub max_contacts: u32,
    /// Transports the site's devices may register over: UDP, TCP, TLS, and WS/WSS for browser
    /// softphones (RFC 7118; the registrar listens with --ws/--wss). Default: UDP, TCP, TLS.
    #[serde(default = "default_transports")]
    #[schemars(length(min = 1))]
    pub transports: Vec<Transport>,
    /// Digest algorithms offered, most preferred first: one challenge header each. `MD5` alone
    /// by default: many phones (Zoiper, desk phones, baresip 1.0, sipp 3.6) give up when the
    /// first, or any, challenge is not MD5. List `SHA-256` first (RFC 8760) when every phone of
    /// the site supports it.
    #[serde(default = "default_digest_algorithms")]
    #[schemars(length(min = 1, max = 2))]
    pub digest_algorithms: Vec<DigestAlgorithm>,
}

impl Default for RegistrationPolicy {
    fn default() -> Self {
        RegistrationPolicy {
            min_expires: default_min_expires(),
            max_expires: default_max_expires(),
            default_expires: default_default_expires(),
            max_contacts: default_max_contacts(),
            transports: default_transports(),
            digest_algorithms: default_digest_algorithms(),
        }
    }
}

fn default_min_expires() -> u32 {
    60
}
fn default_max_expires() -> u32 {
    3600
}
fn default_default_expires() -> u32 {
    600
}
fn default_max_contacts() -> u32 {
    1
}
fn default_digest_algorithms() -> Vec<DigestAlgorithm> {
    // Not SHA-256 first: a phone that cannot answer it fails to register at all.
    vec![DigestAlgorithm::Md5]
}
fn default_transports() -> Vec<Transport> {
    vec![Transport::Udp, Transport::Tcp, Transport::Tls]
}

/// Observed state of a site, written by the operator.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SiteStatus {
    /// `Accepted` and `Ready`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Devices assigned to the site.
    #[serde(default)]
    pub devices: u32,
    /// Of those, devices with at least one live binding.
    #[serde(default)]
    pub registered: u32,
    /// The generation the operator last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl SiteSpec {
    /// The extension range as numbers, if well formed.
    pub fn extension_range(&self) -> Option<(u64, u64)> {
        parse_extension_range(&self.extensions)
    }
}

/// Parses `FIRST-LAST` into a range, `None` when malformed or reversed.
pub fn parse_extension_range(s: &str) -> Option<(u64, u64)> {
    let (a, b) = s.split_once('-')?;
    let (a, b) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    (a <= b).then_some((a, b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;
    use serde_json::json;

    #[test]
    fn md5_alone_is_the_default_offer_in_rust_serde_and_the_schema() {
        let md5 = vec![DigestAlgorithm::Md5];
        assert_eq!(RegistrationPolicy::default().digest_algorithms, md5);
        let parsed: RegistrationPolicy = serde_json::from_str("{}").unwrap();
        assert_eq!(parsed.digest_algorithms, md5);
        let crd = serde_json::to_value(Site::crd()).unwrap();
        let reg = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["properties"]["registration"];
        assert_eq!(reg["default"]["digestAlgorithms"], json!(["MD5"]));
        assert_eq!(
            reg["properties"]["digestAlgorithms"]["default"],
            json!(["MD5"])
        );
    }
}
