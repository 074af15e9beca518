//! What every vendor's file says, worked out once from the device, its Site, its credentials
//! and the registrar's public address. Pure.

use crate::digitmap;
use switchboard_crds::common::Transport;
use switchboard_crds::device::AssignmentKind;
use switchboard_crds::{SipDevice, Site};

/// The registrar as phones reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SipServer {
    /// Host name or address phones register to.
    pub host: String,
    /// Preferred transport; a site that does not allow it gets the first one it allows.
    pub transport: Transport,
    /// Ports for UDP, TCP and TLS.
    pub ports: Ports,
    /// `host[:port]` of an outbound proxy phones send everything through, if any.
    pub outbound_proxy: Option<String>,
}

/// The registrar's port per transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ports {
    /// UDP.
    pub udp: u16,
    /// TCP.
    pub tcp: u16,
    /// TLS.
    pub tls: u16,
}

impl Default for Ports {
    fn default() -> Self {
        Ports {
            udp: 5060,
            tcp: 5060,
            tls: 5061,
        }
    }
}

impl Ports {
    /// The port for a transport.
    pub fn of(&self, t: Transport) -> u16 {
        match t {
            Transport::Udp => self.udp,
            // WebSocket is never a desk phone's ([`profile`] picks UDP, TCP or TLS).
            Transport::Tcp | Transport::Ws => self.tcp,
            Transport::Tls | Transport::Wss => self.tls,
        }
    }
}

/// The file a phone gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Profile {
    /// A SIP account to register.
    Account(Box<Account>),
    /// No account: the phone shows `reason` instead.
    Unassigned {
        /// What the phone should display.
        reason: String,
    },
}

/// What the phone shows when its device is unassigned.
pub const UNASSIGNED_REASON: &str = "Unassigned - ask your administrator";

/// One SIP account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// Name shown to callees (the user for a companion phone, else the device's name).
    pub display_name: String,
    /// The line key's label: the extension, else the display name.
    pub label: String,
    /// The extension, if any.
    pub extension: Option<String>,
    /// SIP user (user part of the address of record).
    pub user: String,
    /// Digest user name (the SIP user).
    pub auth_user: String,
    /// Digest password.
    pub password: String,
    /// SIP domain and digest realm.
    pub domain: String,
    /// Registrar host.
    pub server: String,
    /// Registrar port.
    pub port: u16,
    /// Transport.
    pub transport: Transport,
    /// Outbound proxy, `host[:port]`.
    pub outbound_proxy: Option<String>,
    /// Registration expiry asked for, seconds.
    pub expires: u32,
    /// Digit-map entries (`1xxx`, `112`, `x.T`).
    pub digit_map: Vec<String>,
}

/// The profile of `device` at `site` (`None` for an unassigned device) with its SIP user and
/// password.
pub fn profile(
    server: &SipServer,
    device: &SipDevice,
    site: Option<&Site>,
    user: &str,
    password: &str,
) -> Profile {
    let Some(site) = site.filter(|_| device.spec.assignment_kind() != AssignmentKind::Unassigned)
    else {
        return Profile::Unassigned {
            reason: UNASSIGNED_REASON.to_string(),
        };
    };
    // Desk phones speak UDP, TCP or TLS; WS/WSS are for browser phones.
    let allowed: Vec<Transport> = site
        .spec
        .registration
        .transports
        .iter()
        .copied()
        .filter(|t| !t.is_websocket())
        .collect();
    let transport = if allowed.contains(&server.transport) || allowed.is_empty() {
        server.transport
    } else {
        allowed[0]
    };
    let (display_name, extension) = identity(device, site);
    Profile::Account(Box::new(Account {
        label: extension.clone().unwrap_or_else(|| display_name.clone()),
        display_name,
        extension,
        user: user.to_string(),
        auth_user: user.to_string(),
        password: password.to_string(),
        domain: site.spec.domain.clone(),
        server: server.host.clone(),
        port: server.ports.of(transport),
        transport,
        outbound_proxy: server.outbound_proxy.clone(),
        expires: site.spec.registration.default_expires,
        digit_map: dial_plan(device, site),
    }))
}

/// Display name and extension: a companion phone's are its user's, a site phone's its own.
fn identity(device: &SipDevice, site: &Site) -> (String, Option<String>) {
    let name = device.metadata.name.clone().unwrap_or_default();
    let a = device.spec.assignment.as_ref();
    if let Some(s) = a.and_then(|a| a.site.as_ref()) {
        return (name, Some(s.extension.clone()));
    }
    if let Some(u) = a.and_then(|a| a.user.as_ref()) {
        let ext = site
            .spec
            .users
            .iter()
            .find(|su| su.name == u.user)
            .and_then(|su| su.extension.clone());
        return (u.user.clone(), ext);
    }
    (name, None)
}

/// The digit map the device's site and patterns imply: its site's extensions, its emergency
/// numbers, and anything else after a pause when some CallPattern may accept it.
fn dial_plan(device: &SipDevice, site: &Site) -> Vec<String> {
    let assigned = device
        .spec
        .assignment
        .as_ref()
        .and_then(|a| a.site.as_ref());
    let restrictions = assigned
        .and_then(|s| s.call_restrictions.as_ref())
        .unwrap_or(&site.spec.call_restrictions);
    let patterns = match assigned {
        Some(s) => {
            let o = &s.call_patterns;
            let kept = site
                .spec
                .call_patterns
                .iter()
                .filter(|p| !o.remove.contains(p));
            kept.count() + o.add.len()
        }
        None => site.spec.call_patterns.len(),
    };
    digitmap::entries(
        site.spec.extension_range(),
        &restrictions.emergency_numbers,
        patterns > 0,
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The examples' site, a site phone and a companion phone, as YAML.
    pub fn fixture() -> (Site, SipDevice, SipDevice, SipDevice) {
        let site: Site = serde_yaml::from_str(
            r#"
apiVersion: sip.switchboard.dev/v1alpha1
kind: Site
metadata: { name: hq, namespace: acme }
spec:
  domain: acme.sip.example.com
  extensions: "1000-1999"
  callPatterns: [national]
  users: [{ name: alice, extension: "1100" }]
  registration: { transports: [UDP, TLS], defaultExpires: 300 }
"#,
        )
        .unwrap();
        let device = |name: &str, assignment: &str| -> SipDevice {
            serde_yaml::from_str(&format!(
                "apiVersion: sip.switchboard.dev/v1alpha1\nkind: SipDevice\nmetadata: {{ name: {name}, namespace: acme }}\nspec:\n  macAddress: '00:15:65:a1:b2:c3'\n  sipUser: {name}\n{assignment}"
            ))
            .unwrap()
        };
        (
            site,
            device(
                "lobby",
                "  assignment: { site: { site: hq, extension: '1001', callPatterns: { remove: [national] } } }",
            ),
            device("alice-desk", "  assignment: { user: { site: hq, user: alice } }"),
            device("spare", ""),
        )
    }

    pub fn server(transport: Transport) -> SipServer {
        SipServer {
            host: "sip.example.com".into(),
            transport,
            ports: Ports {
                udp: 5070,
                tcp: 5070,
                tls: 5071,
            },
            outbound_proxy: Some("edge.example.com:5080".into()),
        }
    }

    #[test]
    fn a_site_phone_gets_its_extension_the_site_policy_and_no_outside_catch_all() {
        let (site, lobby, _, _) = fixture();
        let Profile::Account(a) = profile(
            &server(Transport::Udp),
            &lobby,
            Some(&site),
            "x1-lobby",
            "pw",
        ) else {
            panic!("assigned")
        };
        assert_eq!(
            (a.display_name.as_str(), a.label.as_str()),
            ("lobby", "1001")
        );
        assert_eq!(
            (a.user.as_str(), a.auth_user.as_str(), a.password.as_str()),
            ("x1-lobby", "x1-lobby", "pw")
        );
        assert_eq!(
            (a.domain.as_str(), a.server.as_str(), a.port),
            ("acme.sip.example.com", "sip.example.com", 5070)
        );
        assert_eq!(a.expires, 300);
        // Its only pattern is removed: extensions and emergency numbers alone.
        assert_eq!(a.digit_map, ["1xxx", "112", "911"]);
    }

    #[test]
    fn a_companion_phone_is_its_user_and_a_transport_the_site_refuses_is_replaced() {
        let (site, _, alice, _) = fixture();
        let Profile::Account(a) = profile(&server(Transport::Tcp), &alice, Some(&site), "u", "p")
        else {
            panic!("assigned")
        };
        assert_eq!(
            (a.display_name.as_str(), a.extension.as_deref()),
            ("alice", Some("1100"))
        );
        assert_eq!(
            (a.transport, a.port),
            (Transport::Udp, 5070),
            "TCP is not allowed at hq"
        );
        assert_eq!(a.digit_map.last().map(String::as_str), Some("x.T"));
        let Profile::Account(a) = profile(&server(Transport::Tls), &alice, Some(&site), "u", "p")
        else {
            panic!("assigned")
        };
        assert_eq!((a.transport, a.port), (Transport::Tls, 5071));
        // A site that lists a browser transport first: the phone gets the first it speaks.
        let mut browsers_first = site.clone();
        browsers_first.spec.registration.transports =
            vec![Transport::Wss, Transport::Ws, Transport::Tcp];
        let Profile::Account(a) = profile(
            &server(Transport::Udp),
            &alice,
            Some(&browsers_first),
            "u",
            "p",
        ) else {
            panic!("assigned")
        };
        assert_eq!(a.transport, Transport::Tcp);
    }

    #[test]
    fn an_unassigned_device_gets_the_reason_and_no_credentials() {
        let (site, _, _, spare) = fixture();
        let p = profile(&server(Transport::Udp), &spare, Some(&site), "u", "secret");
        assert_eq!(
            p,
            Profile::Unassigned {
                reason: UNASSIGNED_REASON.into()
            }
        );
    }
}
