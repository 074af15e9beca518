//! Yealink's `<mac>.cfg`: `key = value` lines after the `#!version` marker.

use crate::profile::Profile;
use std::fmt::Write;
use switchboard_crds::common::Transport;

/// The file for a profile. Account 1 only; an unassigned phone's account is disabled and its
/// label says why.
pub fn render(profile: &Profile) -> String {
    let mut out = String::from("#!version:1.0.0.1\n");
    let mut set = |k: &str, v: &str| {
        // A value runs to the end of its line: no line breaks inside.
        let v: String = v.chars().filter(|c| !c.is_control()).collect();
        let _ = writeln!(out, "{k} = {v}");
    };
    match profile {
        Profile::Unassigned { reason } => {
            set("account.1.enable", "0");
            set("account.1.label", reason);
            set("account.1.display_name", reason);
        }
        Profile::Account(a) => {
            let transport = match a.transport {
                Transport::Udp => "0",
                // Never WebSocket for a desk phone (profile.rs).
                Transport::Tcp | Transport::Ws => "1",
                Transport::Tls | Transport::Wss => "2",
            };
            set("account.1.enable", "1");
            set("account.1.label", &a.label);
            set("account.1.display_name", &a.display_name);
            set("account.1.user_name", &a.user);
            set("account.1.auth_name", &a.auth_user);
            set("account.1.password", &a.password);
            set("account.1.sip_server.1.address", &a.server);
            set("account.1.sip_server.1.port", &a.port.to_string());
            set("account.1.sip_server.1.transport_type", transport);
            set("account.1.sip_server.1.expires", &a.expires.to_string());
            let (host, port) = match &a.outbound_proxy {
                Some(p) => split_host_port(p, a.port),
                None => (String::new(), a.port),
            };
            set(
                "account.1.outbound_proxy_enable",
                if host.is_empty() { "0" } else { "1" },
            );
            set("account.1.outbound_proxy.1.address", &host);
            set("account.1.outbound_proxy.1.port", &port.to_string());
            set(
                "account.1.dialplan.digitmap.enable",
                if a.digit_map.is_empty() { "0" } else { "1" },
            );
            set("account.1.dialplan.digitmap.string", &a.digit_map.join("|"));
        }
    }
    out
}

/// `host[:port]` into host and port (`default` when none).
pub(super) fn split_host_port(s: &str, default: u16) -> (String, u16) {
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') || h.ends_with(']') => match p.parse() {
            Ok(p) => (h.to_string(), p),
            Err(_) => (s.to_string(), default),
        },
        _ => (s.to_string(), default),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::tests::{fixture, server};
    use crate::profile::{profile, UNASSIGNED_REASON};
    use std::collections::HashMap;

    /// Reads the file back as Yealink does: `key = value` after the version line.
    pub fn parse(s: &str) -> HashMap<String, String> {
        let mut lines = s.lines();
        assert_eq!(lines.next(), Some("#!version:1.0.0.1"));
        lines
            .filter_map(|l| l.split_once(" = "))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_account_reads_back() {
        let (site, lobby, _, _) = fixture();
        let p = profile(
            &server(Transport::Tls),
            &lobby,
            Some(&site),
            "x1-lobby",
            "p=w\nx",
        );
        let f = parse(&render(&p));
        assert_eq!(f["account.1.enable"], "1");
        assert_eq!(f["account.1.user_name"], "x1-lobby");
        assert_eq!(f["account.1.auth_name"], "x1-lobby");
        assert_eq!(f["account.1.password"], "p=wx", "no line break survives");
        assert_eq!(f["account.1.label"], "1001");
        assert_eq!(f["account.1.sip_server.1.address"], "sip.example.com");
        assert_eq!(f["account.1.sip_server.1.port"], "5071");
        assert_eq!(f["account.1.sip_server.1.transport_type"], "2");
        assert_eq!(f["account.1.sip_server.1.expires"], "300");
        assert_eq!(f["account.1.outbound_proxy.1.address"], "edge.example.com");
        assert_eq!(f["account.1.outbound_proxy.1.port"], "5080");
        assert_eq!(f["account.1.dialplan.digitmap.string"], "1xxx|112|911");
    }

    #[test]
    fn unassigned_disables_the_account_and_says_why() {
        let f = parse(&render(&Profile::Unassigned {
            reason: UNASSIGNED_REASON.into(),
        }));
        assert_eq!(f["account.1.enable"], "0");
        assert_eq!(f["account.1.label"], UNASSIGNED_REASON);
        assert!(!f.contains_key("account.1.password"));
    }

    #[test]
    fn host_and_port() {
        assert_eq!(split_host_port("a.b:5080", 1), ("a.b".into(), 5080));
        assert_eq!(split_host_port("a.b", 1), ("a.b".into(), 1));
        assert_eq!(split_host_port("[::1]:5080", 1), ("[::1]".into(), 5080));
    }
}
