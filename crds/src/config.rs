//! The compiled registrar config: what the operator publishes and every registrar replica
//! (or a standalone registrar, from a file) runs on. One type, in one place.
//!
//! Devices carry digest HA1 values, never passwords; outbound registrations carry the password
//! because the registrar must answer upstream challenges with it. Every list is sorted by the
//! compiler so the same resources always give the same bytes and the same [`RegistrarConfig::hash`].

use crate::common::Transport;
use crate::device::AssignmentKind;
use crate::dialrules::DialRule;
use crate::pattern::PatternRoute;
use crate::registration::RegistrationTarget;
use crate::site::{CallRestrictions, RegistrationPolicy};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The format version this build reads and writes.
pub const CONFIG_FORMAT: u32 = 1;

/// Everything a registrar replica needs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegistrarConfig {
    /// Format version ([`CONFIG_FORMAT`]).
    pub format: u32,
    /// SHA-256 (hex) of the config with this field empty; set by [`RegistrarConfig::seal`].
    #[serde(default)]
    pub hash: String,
    /// Key for the HMAC in digest nonces, shared by all replicas so any one accepts another's
    /// challenge. Hex or any string; a standalone registrar without one makes a random key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce_key: Option<String>,
    /// One entry per site, sorted by domain.
    #[serde(default)]
    pub domains: Vec<DomainConfig>,
    /// Call patterns referenced by devices, sorted by id.
    #[serde(default)]
    pub patterns: Vec<PatternConfig>,
    /// Upstream registrations, sorted by id.
    #[serde(default)]
    pub registrations: Vec<OutboundRegistration>,
}

/// A site's domain with its devices.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DomainConfig {
    /// SIP domain, also the digest realm.
    pub domain: String,
    /// `namespace/name` of the `Site`.
    pub site: String,
    /// Extension range `FIRST-LAST`.
    #[serde(default)]
    pub extensions: String,
    /// Caller ID for devices that set none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_caller_id: Option<String>,
    /// CIDRs allowed to send calls without registering.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_peers: Vec<String>,
    /// Expiry limits, max contacts and transports.
    #[serde(default)]
    pub registration: RegistrationPolicy,
    /// The site's users, sorted by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<UserConfig>,
    /// The site's accepted devices, sorted by SIP user.
    #[serde(default)]
    pub devices: Vec<DeviceConfig>,
}

/// A user of a site.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserConfig {
    /// User name.
    pub name: String,
    /// The user's extension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extension: Option<String>,
}

/// A device as the registrar sees it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeviceConfig {
    /// `namespace/name` of the `SipDevice`, where its status is written.
    pub id: String,
    /// The full SIP user (generated prefix + administrator suffix).
    pub sip_user: String,
    /// Hex MD5 of `user:realm:password`.
    pub ha1_md5: String,
    /// Hex SHA-256 of `user:realm:password` (RFC 8760).
    pub ha1_sha256: String,
    /// Hex MD5 of `user@realm:realm:password`, for phones whose auth name carries the domain
    /// (Zoiper and others send `username="1001@realm"`; Kamailio calls it `ha1b`). Absent, as
    /// in a hand-written file that leaves it out, such phones are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ha1b_md5: Option<String>,
    /// Hex SHA-256 of `user@realm:realm:password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ha1b_sha256: Option<String>,
    /// `Site`, `User` or `Unassigned`.
    #[serde(default)]
    pub assignment: AssignmentKind,
    /// Extension of a common-area phone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extension: Option<String>,
    /// User of a companion-mode phone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Whether a companion-mode phone rings when its user is called.
    #[serde(default)]
    pub receive_calls: bool,
    /// Effective outbound caller ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller_id: Option<String>,
    /// Ids of effective call patterns, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patterns: Vec<String>,
    /// Effective call restrictions.
    #[serde(default)]
    pub restrictions: CallRestrictions,
    /// The device's own limit of bindings, replacing its domain's `maxContacts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_contacts: Option<u32>,
}

/// A compiled-in call pattern.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PatternConfig {
    /// `namespace/name` of the `CallPattern`.
    pub id: String,
    /// Rules in structured form.
    #[serde(default)]
    pub rules: Vec<DialRule>,
    /// Where matching numbers go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<PatternRoute>,
}

/// An upstream registration the registrar keeps.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OutboundRegistration {
    /// `namespace/name` of the `SipRegistration`.
    pub id: String,
    /// Address of record.
    pub aor: String,
    /// Expected realm, any when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub realm: Option<String>,
    /// User part registered.
    pub username: String,
    /// Digest user name when it differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_username: Option<String>,
    /// The password (outbound digest needs it in the clear).
    pub password: String,
    /// Upstream host (from `proxy` or the AOR's domain).
    pub host: String,
    /// Upstream port.
    pub port: u16,
    /// Transport.
    pub transport: Transport,
    /// Requested lifetime in seconds.
    pub expires: u32,
    /// Subscribe to presence/BLF.
    #[serde(default)]
    pub subscribe: bool,
    /// Outbound proxy `host[:port]`, when every request goes through one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound_proxy: Option<String>,
    /// Where calls arriving through it go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<RegistrationTarget>,
    /// Where phase changes are POSTed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback: Option<CallbackTarget>,
}

/// A compiled `spec.callback`: the URL and, read from its Secret, the HMAC key. The key is
/// here for the same reason as the registration's password: the replica that owns the
/// registration signs with it, and the config Secret is the one channel to it.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CallbackTarget {
    /// `http(s)://` URL.
    pub url: String,
    /// HMAC-SHA256 key; unsigned when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl std::fmt::Debug for CallbackTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackTarget")
            .field("url", &self.url)
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// A config that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Not YAML/JSON of the right shape.
    #[error("config does not parse: {0}")]
    Parse(String),
    /// Written by a newer or older build.
    #[error("config format {found} is not supported (this build reads format {CONFIG_FORMAT})")]
    Format {
        /// The format found.
        found: u32,
    },
    /// The content does not match its hash.
    #[error("config hash mismatch: says {stated}, content hashes to {actual}")]
    Hash {
        /// Hash in the document.
        stated: String,
        /// Hash of the content.
        actual: String,
    },
}

impl RegistrarConfig {
    /// The content hash: SHA-256 over the canonical JSON with `hash` empty.
    pub fn content_hash(&self) -> String {
        let mut unsealed = self.clone();
        unsealed.hash.clear();
        let bytes = serde_json::to_vec(&unsealed).expect("config serializes");
        hex::encode(Sha256::digest(bytes))
    }

    /// Sets `format` and `hash`.
    pub fn seal(mut self) -> Self {
        self.format = CONFIG_FORMAT;
        self.hash = self.content_hash();
        self
    }

    /// The first 12 hex digits of the hash, for logs and metrics.
    pub fn short_hash(&self) -> &str {
        &self.hash[..self.hash.len().min(12)]
    }

    /// Parses a config from YAML (JSON is YAML too). A config with an empty `hash` (hand
    /// written) is put in canonical order and sealed; a non-empty one must match its content.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        let config: RegistrarConfig =
            serde_yaml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        if config.format != CONFIG_FORMAT {
            return Err(ConfigError::Format {
                found: config.format,
            });
        }
        if config.hash.is_empty() {
            let mut config = config;
            config.canonicalize();
            return Ok(config.seal());
        }
        let actual = config.content_hash();
        if actual != config.hash {
            return Err(ConfigError::Hash {
                stated: config.hash,
                actual,
            });
        }
        Ok(config)
    }

    /// Finds a device by domain and SIP user.
    pub fn device(&self, domain: &str, sip_user: &str) -> Option<(&DomainConfig, &DeviceConfig)> {
        let d = self.domain(domain)?;
        let i = d
            .devices
            .binary_search_by(|dev| dev.sip_user.as_str().cmp(sip_user))
            .ok()?;
        Some((d, &d.devices[i]))
    }

    /// Finds a domain.
    pub fn domain(&self, domain: &str) -> Option<&DomainConfig> {
        let i = self
            .domains
            .binary_search_by(|d| d.domain.as_str().cmp(domain))
            .ok()?;
        Some(&self.domains[i])
    }

    /// Sorts every list into canonical order; the compiler calls it before [`Self::seal`].
    pub fn canonicalize(&mut self) {
        self.domains.sort_by(|a, b| a.domain.cmp(&b.domain));
        for d in &mut self.domains {
            d.devices.sort_by(|a, b| a.sip_user.cmp(&b.sip_user));
            d.users.sort_by(|a, b| a.name.cmp(&b.name));
        }
        self.patterns.sort_by(|a, b| a.id.cmp(&b.id));
        self.registrations.sort_by(|a, b| a.id.cmp(&b.id));
    }
}

/// Hex digest HA1 values for a user, realm and password, as RFC 2617/8760 define them.
pub fn ha1(user: &str, realm: &str, password: &str) -> (String, String) {
    let input = format!("{user}:{realm}:{password}");
    let md5 = hex::encode(md5::Md5::digest(input.as_bytes()));
    let sha256 = hex::encode(Sha256::digest(input.as_bytes()));
    (md5, sha256)
}

/// The HA1 values of [`ha1`] for the auth name `user@realm` ([`DeviceConfig::ha1b_md5`]).
pub fn ha1b(user: &str, realm: &str, password: &str) -> (String, String) {
    ha1(&format!("{user}@{realm}"), realm, password)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RegistrarConfig {
        let (ha1_md5, ha1_sha256) = ha1("alice", "example.test", "secret");
        RegistrarConfig {
            format: CONFIG_FORMAT,
            domains: vec![DomainConfig {
                domain: "example.test".into(),
                site: "default/hq".into(),
                extensions: "1000-1999".into(),
                devices: vec![DeviceConfig {
                    id: "default/alice".into(),
                    sip_user: "alice".into(),
                    ha1_md5,
                    ha1_sha256,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }
        .seal()
    }

    #[test]
    fn ha1_matches_rfc_examples() {
        // RFC 2617 §3.5: Mufasa / testrealm@host.com / Circle Of Life
        let (md5, _) = ha1("Mufasa", "testrealm@host.com", "Circle Of Life");
        assert_eq!(md5, "939e7578ed9e3c518a452acee763bce9");
    }

    #[test]
    fn yaml_round_trip_keeps_hash() {
        let c = sample();
        let text = serde_yaml::to_string(&c).unwrap();
        assert_eq!(RegistrarConfig::from_yaml(&text).unwrap(), c);
    }

    #[test]
    fn tampered_config_is_refused() {
        let mut c = sample();
        c.domains[0].devices[0].sip_user = "mallory".into();
        let text = serde_yaml::to_string(&c).unwrap();
        assert!(matches!(
            RegistrarConfig::from_yaml(&text),
            Err(ConfigError::Hash { .. })
        ));
    }

    #[test]
    fn unsealed_config_is_sealed_on_load() {
        let mut c = sample();
        c.hash.clear();
        let loaded = RegistrarConfig::from_yaml(&serde_yaml::to_string(&c).unwrap()).unwrap();
        assert_eq!(loaded.hash, sample().hash);
    }

    #[test]
    fn hand_written_config_is_sorted_on_load() {
        let mut c = sample();
        let mut bob = c.domains[0].devices[0].clone();
        bob.sip_user = "bob".into();
        c.domains[0].devices.insert(0, bob);
        c.hash.clear();
        let loaded = RegistrarConfig::from_yaml(&serde_yaml::to_string(&c).unwrap()).unwrap();
        assert!(loaded.device("example.test", "alice").is_some());
        assert!(loaded.device("example.test", "bob").is_some());
    }

    #[test]
    fn lookup_by_domain_and_user() {
        let c = sample();
        assert_eq!(
            c.device("example.test", "alice").unwrap().1.id,
            "default/alice"
        );
        assert!(c.device("example.test", "bob").is_none());
        assert!(c.device("other.test", "alice").is_none());
    }
}
