//! Checks on a single object, with the failing field named.
//!
//! The CRD schema already makes the API server refuse most of these; they are repeated here so
//! that objects that never went through an API server (a GitOps repo checked in CI, the examples,
//! the operator's own view) get the same verdict, and extended with what the schema cannot say:
//! regexes that compile, an extension range in order, CIDRs that parse, a proxy that agrees with
//! the transport. Checks across objects live in the operator.

use crate::common::Transport;
use crate::device::{Assignment, SipDeviceSpec};
use crate::dialrules::DialPlan;
use crate::pattern::CallPatternSpec;
use crate::registration::{parse_hostport, SipRegistrationSpec};
use crate::site::{parse_extension_range, CallRestrictions, SiteSpec};
use regex::Regex;
use std::fmt;
use std::net::IpAddr;
use std::sync::LazyLock;

/// One problem with one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// JSON path of the field, e.g. `spec.assignment.site.extension`.
    pub field: String,
    /// What is wrong, in words an administrator can act on.
    pub message: String,
}

impl FieldError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Joins errors into one line for a condition message or an Event.
pub fn summarize(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

static MAC: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^([0-9A-Fa-f]{2}[:-]?){5}[0-9A-Fa-f]{2}$").unwrap());
static E164: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^\+[1-9][0-9]{1,14}$").unwrap());
static DOMAIN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$").unwrap()
});
static EXTENSION: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[0-9]{1,8}$").unwrap());
static SIP_USER: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[a-zA-Z0-9._-]{1,32}$").unwrap());
static AOR: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^sips?:[^@\s]+@[^@\s]+$").unwrap());
/// The CRD's pattern for `spec.callback.url`.
static CALLBACK_URL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^https?://[^\s/]+(/\S*)?$").unwrap());

/// Normalises a MAC address to lower-case, colon-separated form; `None` if it is not one.
pub fn normalize_mac(mac: &str) -> Option<String> {
    if !MAC.is_match(mac) {
        return None;
    }
    let hex: String = mac.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    let hex = hex.to_ascii_lowercase();
    Some(
        hex.as_bytes()
            .chunks(2)
            .map(|pair| std::str::from_utf8(pair).expect("ascii"))
            .collect::<Vec<_>>()
            .join(":"),
    )
}

/// Parses a CIDR (`10.0.0.0/8`, `2001:db8::/32`) or a bare address.
pub fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a.parse::<IpAddr>().ok()?, l.parse::<u8>().ok()?),
        None => {
            let a = s.parse::<IpAddr>().ok()?;
            (a, if a.is_ipv4() { 32 } else { 128 })
        }
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some((addr, len))
}

fn check_caller_id(errors: &mut Vec<FieldError>, field: &str, value: &Option<String>) {
    if let Some(v) = value {
        if !E164.is_match(v) {
            errors.push(FieldError::new(
                field,
                format!("{v:?} is not an E.164 number (like +79261234567)"),
            ));
        }
    }
}

fn check_restrictions(errors: &mut Vec<FieldError>, field: &str, r: &CallRestrictions) {
    for (i, p) in r.blocked_prefixes.iter().enumerate() {
        if p.is_empty() {
            errors.push(FieldError::new(
                format!("{field}.blockedPrefixes[{i}]"),
                "an empty prefix would block every number",
            ));
        }
    }
}

/// Validates a `Site`.
pub fn validate_site(spec: &SiteSpec) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if !DOMAIN.is_match(&spec.domain) || spec.domain.len() > 253 {
        errors.push(FieldError::new(
            "spec.domain",
            format!("{:?} is not a lower-case DNS name", spec.domain),
        ));
    }
    if parse_extension_range(&spec.extensions).is_none() {
        errors.push(FieldError::new(
            "spec.extensions",
            format!(
                "{:?} is not a range FIRST-LAST with FIRST <= LAST",
                spec.extensions
            ),
        ));
    }
    check_caller_id(
        &mut errors,
        "spec.defaultOutboundCallerId",
        &spec.default_outbound_caller_id,
    );
    check_restrictions(
        &mut errors,
        "spec.callRestrictions",
        &spec.call_restrictions,
    );
    let mut seen = std::collections::HashSet::new();
    for (i, u) in spec.users.iter().enumerate() {
        if !seen.insert(u.name.as_str()) {
            errors.push(FieldError::new(
                format!("spec.users[{i}].name"),
                format!("user {:?} is listed twice", u.name),
            ));
        }
        if let (Some(ext), Some((lo, hi))) = (&u.extension, spec.extension_range()) {
            if !in_range(ext, lo, hi) {
                errors.push(FieldError::new(
                    format!("spec.users[{i}].extension"),
                    format!("{ext} is outside the site's range {}", spec.extensions),
                ));
            }
        }
    }
    for (i, peer) in spec.trusted_peers.iter().enumerate() {
        if parse_cidr(peer).is_none() {
            errors.push(FieldError::new(
                format!("spec.trustedPeers[{i}]"),
                format!("{peer:?} is not a CIDR like 192.0.2.0/24"),
            ));
        }
    }
    let r = &spec.registration;
    if !(r.min_expires <= r.default_expires && r.default_expires <= r.max_expires) {
        errors.push(FieldError::new(
            "spec.registration",
            "need minExpires <= defaultExpires <= maxExpires",
        ));
    }
    if r.max_contacts == 0 || r.max_contacts > 32 {
        errors.push(FieldError::new(
            "spec.registration.maxContacts",
            "must be between 1 and 32",
        ));
    }
    if r.digest_algorithms.is_empty() {
        errors.push(FieldError::new(
            "spec.registration.digestAlgorithms",
            "at least one algorithm is needed",
        ));
    }
    if r.transports.is_empty() {
        errors.push(FieldError::new(
            "spec.registration.transports",
            "at least one transport is needed",
        ));
    }
    errors
}

/// Whether an extension string lies in a range.
pub fn in_range(extension: &str, lo: u64, hi: u64) -> bool {
    extension
        .parse::<u64>()
        .map(|n| (lo..=hi).contains(&n))
        .unwrap_or(false)
}

/// Validates a `SipDevice` on its own (the site it names is checked by the operator).
pub fn validate_device(spec: &SipDeviceSpec) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if normalize_mac(&spec.mac_address).is_none() {
        errors.push(FieldError::new(
            "spec.macAddress",
            format!(
                "{:?} is not a MAC address like 00:1a:2b:3c:4d:5e",
                spec.mac_address
            ),
        ));
    }
    if !SIP_USER.is_match(&spec.sip_user) {
        errors.push(FieldError::new(
            "spec.sipUser",
            "1 to 32 of letters, digits, '.', '_' or '-'",
        ));
    }
    if let Some(c) = &spec.credentials {
        if c.secret_ref.name.is_empty() {
            errors.push(FieldError::new(
                "spec.credentials.secretRef.name",
                "must not be empty",
            ));
        }
    }
    if spec.max_contacts.is_some_and(|m| !(1..=32).contains(&m)) {
        errors.push(FieldError::new(
            "spec.maxContacts",
            "must be between 1 and 32",
        ));
    }
    if let Some(Assignment { site, user }) = &spec.assignment {
        if site.is_some() && user.is_some() {
            errors.push(FieldError::new(
                "spec.assignment",
                "takes exactly one of site or user, not both",
            ));
        }
        if let Some(s) = site {
            if !EXTENSION.is_match(&s.extension) {
                errors.push(FieldError::new(
                    "spec.assignment.site.extension",
                    format!("{:?} is not 1 to 8 digits", s.extension),
                ));
            }
            check_caller_id(
                &mut errors,
                "spec.assignment.site.outboundCallerId",
                &s.outbound_caller_id,
            );
            if let Some(r) = &s.call_restrictions {
                check_restrictions(&mut errors, "spec.assignment.site.callRestrictions", r);
            }
            for (i, name) in s.call_patterns.add.iter().enumerate() {
                if s.call_patterns.remove.contains(name) {
                    errors.push(FieldError::new(
                        format!("spec.assignment.site.callPatterns.add[{i}]"),
                        format!("{name:?} is both added and removed"),
                    ));
                }
            }
        }
    }
    errors
}

/// Validates a `CallPattern`: one form of rules, regexes that compile, a single route.
pub fn validate_pattern(spec: &CallPatternSpec) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let (field, rules) = match (&spec.compact, spec.rules.is_empty()) {
        (Some(_), false) => {
            errors.push(FieldError::new(
                "spec",
                "give either rules or compact, not both",
            ));
            return errors;
        }
        (None, true) => {
            errors.push(FieldError::new("spec", "give rules or compact"));
            return errors;
        }
        (Some(_), true) => ("spec.compact", spec.dial_rules()),
        (None, false) => ("spec.rules", spec.rules.clone()),
    };
    if let Err(e) = DialPlan::compile(&rules) {
        errors.push(FieldError::new(
            format!("{field}[{}]", e.index),
            format!("invalid regex {:?}: {}", e.pattern, first_line(&e.message)),
        ));
    }
    if let Some(route) = &spec.route {
        let targets = [
            route.extension.is_some(),
            route.user.is_some(),
            route.registration.is_some(),
        ];
        if !exactly_one(targets) {
            errors.push(FieldError::new(
                "spec.route",
                "takes exactly one of extension, user or registration",
            ));
        }
    }
    errors
}

/// The regex crate's messages span lines with a caret diagram; a condition wants the last one.
fn first_line(message: &str) -> &str {
    message
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(message)
        .trim()
}

/// Validates a `SipRegistration`.
pub fn validate_registration(spec: &SipRegistrationSpec) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if !AOR.is_match(&spec.aor) {
        errors.push(FieldError::new(
            "spec.aor",
            format!("{:?} is not a SIP URI like sip:user@domain", spec.aor),
        ));
    }
    errors.extend(registration_port(spec));
    if spec.transport.is_websocket() {
        errors.push(FieldError::new(
            "spec.transport",
            format!(
                "{} is for browser phones: an upstream is reached over UDP, TCP or TLS",
                spec.transport
            ),
        ));
    }
    if !(60..=86400).contains(&spec.expires) {
        errors.push(FieldError::new(
            "spec.expires",
            format!("{} is outside 60-86400 seconds", spec.expires),
        ));
    }
    registration_proxies(spec, &mut errors);
    if let Some(cb) = &spec.callback {
        if !CALLBACK_URL.is_match(&cb.url) || cb.url.len() > 2048 {
            errors.push(FieldError::new(
                "spec.callback.url",
                format!(
                    "{:?} is not an http:// or https:// URL (at most 2048 characters, no spaces)",
                    cb.url
                ),
            ));
        }
    }
    registration_target(spec, &mut errors);
    errors
}

/// `spec.port`: a port, and the one of its transport when it is a well-known one.
fn registration_port(spec: &SipRegistrationSpec) -> Option<FieldError> {
    let port = spec.port?;
    if port == 0 || port > 65535 {
        return Some(FieldError::new(
            "spec.port",
            format!("{port} is outside 1-65535"),
        ));
    }
    let tls = spec.transport == Transport::Tls;
    ((tls && port == 5060) || (!tls && port == 5061)).then(|| {
        FieldError::new(
            "spec.port",
            format!(
                "port {port} does not fit transport {}: 5060 is for UDP/TCP, 5061 for TLS",
                spec.transport
            ),
        )
    })
}

/// `spec.proxy` and `spec.outboundProxy`: host and port, and a proxy's `;transport=` not at
/// odds with `spec.transport`.
fn registration_proxies(spec: &SipRegistrationSpec, errors: &mut Vec<FieldError>) {
    for (field, value) in [
        ("spec.proxy", &spec.proxy),
        ("spec.outboundProxy", &spec.outbound_proxy),
    ] {
        let Some(v) = value else { continue };
        match parse_hostport(v, spec.transport, None) {
            Err(e) => errors.push(FieldError::new(field, e)),
            // `;transport=` in proxy wins, but a different spec.transport set by hand (not
            // the UDP default) is a contradiction worth refusing.
            Ok(t)
                if field == "spec.proxy"
                    && v.contains("transport=")
                    && t.transport != spec.transport
                    && spec.transport != Transport::Udp =>
            {
                errors.push(FieldError::new(
                    field,
                    format!(
                        "says transport {} but spec.transport is {}",
                        t.transport, spec.transport
                    ),
                ));
            }
            Ok(_) => {}
        }
    }
}

/// Whether exactly one of these is set (a target or route naming one thing).
fn exactly_one(set: [bool; 3]) -> bool {
    set.iter().filter(|s| **s).count() == 1
}

/// `spec.target`: exactly one of device, extension or user; a site unless a device.
fn registration_target(spec: &SipRegistrationSpec, errors: &mut Vec<FieldError>) {
    let Some(t) = &spec.target else {
        return;
    };
    if !exactly_one([t.device.is_some(), t.extension.is_some(), t.user.is_some()]) {
        errors.push(FieldError::new(
            "spec.target",
            "takes exactly one of device, extension or user",
        ));
    }
    if t.device.is_none() && t.site.is_none() {
        errors.push(FieldError::new(
            "spec.target.site",
            "an extension or user target needs a site",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_normalisation() {
        assert_eq!(
            normalize_mac("00-1A-2B-3C-4D-5E").as_deref(),
            Some("00:1a:2b:3c:4d:5e")
        );
        assert_eq!(
            normalize_mac("001a2b3c4d5e").as_deref(),
            Some("00:1a:2b:3c:4d:5e")
        );
        assert_eq!(normalize_mac("00:1a:2b:3c:4d"), None);
        assert_eq!(normalize_mac("zz:1a:2b:3c:4d:5e"), None);
    }

    #[test]
    fn a_registrations_fields_are_checked_each_where_it_stands() {
        let fields = |extra: serde_json::Value| -> Vec<String> {
            let mut spec =
                serde_json::json!({"aor": "sip:trunk@pbx.example.com", "username": "trunk"});
            spec.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            let spec: SipRegistrationSpec = serde_json::from_value(spec).unwrap();
            validate_registration(&spec)
                .into_iter()
                .map(|e| e.field)
                .collect()
        };
        use serde_json::json;
        assert!(fields(json!({})).is_empty());
        assert!(fields(json!({"transport": "TLS", "port": 5061})).is_empty());
        assert_eq!(fields(json!({"aor": "trunk"})), ["spec.aor"]);
        assert_eq!(fields(json!({"port": 70000})), ["spec.port"]);
        assert_eq!(fields(json!({"port": 5061})), ["spec.port"]);
        assert_eq!(
            fields(json!({"transport": "TLS", "port": 5060})),
            ["spec.port"]
        );
        assert_eq!(fields(json!({"transport": "WS"})), ["spec.transport"]);
        assert_eq!(fields(json!({"expires": 30})), ["spec.expires"]);
        assert_eq!(
            fields(json!({"outboundProxy": "pbx.example.com:0"})),
            ["spec.outboundProxy"]
        );
        // A proxy's own transport wins over the UDP default, not over one set by hand.
        assert!(fields(json!({"proxy": "sip:pbx.example.com;transport=tcp"})).is_empty());
        assert_eq!(
            fields(json!({"transport": "TLS", "proxy": "sip:pbx.example.com;transport=tcp"})),
            ["spec.proxy"]
        );
        assert!(fields(json!({"target": {"device": "desk"}})).is_empty());
        assert_eq!(
            fields(json!({"target": {"device": "desk", "user": "ann", "site": "hq"}})),
            ["spec.target"]
        );
        assert_eq!(
            fields(json!({"target": {"extension": "100"}})),
            ["spec.target.site"]
        );
    }

    #[test]
    fn callback_url_must_be_http() {
        let spec = |url: &str| -> SipRegistrationSpec {
            serde_json::from_value(serde_json::json!({
                "aor": "sip:trunk@pbx.example.com",
                "username": "trunk",
                "callback": { "url": url, "secretRef": { "name": "hook" } },
            }))
            .unwrap()
        };
        assert!(validate_registration(&spec("https://hooks.example.com/sip?x=1")).is_empty());
        assert!(validate_registration(&spec("http://10.0.0.5:8080")).is_empty());
        for bad in [
            "ftp://hooks.example.com/",
            "https://",
            "https://a b/",
            "hooks.example.com",
        ] {
            let errors = validate_registration(&spec(bad));
            assert_eq!(errors.len(), 1, "{bad}: {errors:?}");
            assert_eq!(errors[0].field, "spec.callback.url");
        }
    }

    #[test]
    fn a_devices_limit_of_contacts_is_1_to_32() {
        let mut spec = SipDeviceSpec {
            mac_address: "00:1a:2b:3c:4d:5e".into(),
            sip_user: "desk".into(),
            credentials: None,
            assignment: None,
            max_contacts: Some(32),
        };
        assert!(validate_device(&spec).is_empty());
        for wrong in [0, 33] {
            spec.max_contacts = Some(wrong);
            let errors = summarize(&validate_device(&spec));
            assert!(errors.contains("spec.maxContacts"), "{errors}");
        }
    }

    #[test]
    fn cidrs() {
        assert!(parse_cidr("192.0.2.0/24").is_some());
        assert!(parse_cidr("2001:db8::/32").is_some());
        assert!(parse_cidr("192.0.2.1").is_some());
        assert!(parse_cidr("192.0.2.0/33").is_none());
        assert!(parse_cidr("example.com/8").is_none());
    }

    #[test]
    fn regex_error_message_is_one_line() {
        let spec = CallPatternSpec {
            rules: vec![],
            compact: Some("^8=7 (oops".into()),
            route: None,
        };
        let errors = validate_pattern(&spec);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "spec.compact[1]");
        assert!(!errors[0].message.contains('\n'), "{}", errors[0].message);
    }
}
