//! Grandstream `cfg<mac>.xml`: a `gs_provision` XML of P-values (account 1).

use super::xml;
use crate::mac::Mac;
use crate::profile::Profile;
use switchboard_crds::common::Transport;

/// The file for a profile. P271 turns account 1 on or off; P270, its name, says why an
/// unassigned phone has none.
pub fn render(mac: &Mac, profile: &Profile) -> String {
    let mut p: Vec<(&str, String)> = Vec::new();
    match profile {
        Profile::Unassigned { reason } => {
            p.push(("P271", "0".into()));
            p.push(("P270", reason.clone()));
        }
        Profile::Account(a) => {
            let transport = match a.transport {
                Transport::Udp => "0",
                // Never WebSocket for a desk phone (profile.rs).
                Transport::Tcp | Transport::Ws => "1",
                Transport::Tls | Transport::Wss => "2",
            };
            p.push(("P271", "1".into()));
            p.push(("P270", a.label.clone()));
            p.push(("P47", format!("{}:{}", a.server, a.port)));
            p.push(("P48", a.outbound_proxy.clone().unwrap_or_default()));
            p.push(("P35", a.user.clone()));
            p.push(("P36", a.auth_user.clone()));
            p.push(("P34", a.password.clone()));
            p.push(("P3", a.display_name.clone()));
            p.push(("P130", transport.into()));
            // Minutes, at least one.
            p.push(("P32", a.expires.div_ceil(60).max(1).to_string()));
            if !a.digit_map.is_empty() {
                let entries: Vec<String> = a
                    .digit_map
                    .iter()
                    .map(|e| {
                        if e == "x.T" {
                            "x+".to_string()
                        } else {
                            e.clone()
                        }
                    })
                    .collect();
                p.push(("P290", format!("{{ {} }}", entries.join(" | "))));
            }
        }
    }
    let mut out =
        String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<gs_provision version=\"1\">\n");
    out += &format!("  <mac>{mac}</mac>\n  <config version=\"1\">\n");
    for (k, v) in p {
        out += &format!("    <{k}>{}</{k}>\n", xml(&v));
    }
    out += "  </config>\n</gs_provision>\n";
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::tests::{fixture, server};
    use crate::profile::{profile, UNASSIGNED_REASON};
    use crate::vendor::tests::elements;

    #[test]
    fn the_p_values_read_back() {
        let (site, lobby, _, _) = fixture();
        let mac = Mac::parse("001565a1b2c3").unwrap();
        let p = profile(
            &server(Transport::Udp),
            &lobby,
            Some(&site),
            "x1-lobby",
            "s&cret",
        );
        let e = elements(&render(&mac, &p));
        assert_eq!(e["mac"], "001565a1b2c3");
        assert_eq!(e["P271"], "1");
        assert_eq!(e["P47"], "sip.example.com:5070");
        assert_eq!(e["P48"], "edge.example.com:5080");
        assert_eq!(e["P35"], "x1-lobby");
        assert_eq!(e["P36"], "x1-lobby");
        assert_eq!(e["P34"], "s&cret");
        assert_eq!(e["P3"], "lobby");
        assert_eq!(e["P270"], "1001");
        assert_eq!(e["P130"], "0");
        assert_eq!(e["P32"], "5");
        assert_eq!(e["P290"], "{ 1xxx | 112 | 911 }");
    }

    #[test]
    fn unassigned_turns_the_account_off_and_names_why() {
        let mac = Mac::parse("001565a1b2c3").unwrap();
        let e = elements(&render(
            &mac,
            &Profile::Unassigned {
                reason: UNASSIGNED_REASON.into(),
            },
        ));
        assert_eq!(e["P271"], "0");
        assert_eq!(e["P270"], UNASSIGNED_REASON);
        assert!(!e.contains_key("P34"));
    }
}
