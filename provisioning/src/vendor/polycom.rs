//! Polycom (Poly UC Software): the phone reads its master file `<mac>.cfg` (an `APPLICATION`
//! element whose `CONFIG_FILES` names the files to load, from the same folder), then
//! `<mac>-switchboard.cfg`: a `polycomConfig` XML whose attributes are the parameters.

use super::xml;
use super::yealink::split_host_port;
use crate::mac::Mac;
use crate::profile::Profile;

/// The master file: no firmware (`APP_FILE_PATH` empty), the settings file to load.
pub fn master(mac: &Mac) -> String {
    format!(
        "<?xml version=\"1.0\" standalone=\"yes\"?>\n<APPLICATION APP_FILE_PATH=\"\" \
         CONFIG_FILES=\"{}\" MISC_FILES=\"\" LOG_FILE_DIRECTORY=\"\" OVERRIDES_DIRECTORY=\"\" \
         CONTACTS_DIRECTORY=\"\" LICENSE_DIRECTORY=\"\" />\n",
        super::Vendor::Polycom.file_name_of(mac, super::Part::Settings)
    )
}
use switchboard_crds::common::Transport;

/// The file for a profile: line 1 (`reg.1.*`) and the digit map; an unassigned phone's line
/// has no address and its label says why.
pub fn render(profile: &Profile) -> String {
    let mut reg = Vec::new();
    let mut dial = Vec::new();
    match profile {
        Profile::Unassigned { reason } => {
            reg.push(("reg.1.address", String::new()));
            reg.push(("reg.1.label", reason.clone()));
            reg.push(("reg.1.displayName", reason.clone()));
        }
        Profile::Account(a) => {
            let transport = match a.transport {
                Transport::Udp => "UDPOnly",
                // Never WebSocket for a desk phone (profile.rs).
                Transport::Tcp | Transport::Ws => "TCPOnly",
                Transport::Tls | Transport::Wss => "TLS",
            };
            reg.push(("reg.1.address", format!("{}@{}", a.user, a.domain)));
            reg.push(("reg.1.label", a.label.clone()));
            reg.push(("reg.1.displayName", a.display_name.clone()));
            reg.push(("reg.1.auth.userId", a.auth_user.clone()));
            reg.push(("reg.1.auth.password", a.password.clone()));
            reg.push(("reg.1.server.1.address", a.server.clone()));
            reg.push(("reg.1.server.1.port", a.port.to_string()));
            reg.push(("reg.1.server.1.transport", transport.to_string()));
            reg.push(("reg.1.server.1.expires", a.expires.to_string()));
            if let Some(p) = &a.outbound_proxy {
                let (host, port) = split_host_port(p, a.port);
                reg.push(("reg.1.outboundProxy.address", host));
                reg.push(("reg.1.outboundProxy.port", port.to_string()));
                reg.push(("reg.1.outboundProxy.transport", transport.to_string()));
            }
            if !a.digit_map.is_empty() {
                dial.push(("dialplan.digitmap", a.digit_map.join("|")));
            }
        }
    }
    let attrs = |list: &[(&str, String)]| -> String {
        list.iter()
            .map(|(k, v)| format!(" {k}=\"{}\"", xml(v)))
            .collect()
    };
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n<polycomConfig>\n",
    );
    out += &format!("  <reg{} />\n", attrs(&reg));
    if !dial.is_empty() {
        out += &format!("  <dialplan{} />\n", attrs(&dial));
    }
    out += "</polycomConfig>\n";
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::tests::{fixture, server};
    use crate::profile::{profile, UNASSIGNED_REASON};
    use crate::vendor::tests::attributes;

    #[test]
    fn the_line_reads_back() {
        let (site, _, alice, _) = fixture();
        let p = profile(
            &server(Transport::Udp),
            &alice,
            Some(&site),
            "x1-alice",
            "a\"<&'>b",
        );
        let body = render(&p);
        let reg = attributes(&body, "reg");
        assert_eq!(reg["reg.1.address"], "x1-alice@acme.sip.example.com");
        assert_eq!(reg["reg.1.auth.userId"], "x1-alice");
        assert_eq!(reg["reg.1.auth.password"], "a\"<&'>b");
        assert_eq!(reg["reg.1.displayName"], "alice");
        assert_eq!(reg["reg.1.label"], "1100");
        assert_eq!(reg["reg.1.server.1.address"], "sip.example.com");
        assert_eq!(reg["reg.1.server.1.port"], "5070");
        assert_eq!(reg["reg.1.server.1.transport"], "UDPOnly");
        assert_eq!(reg["reg.1.server.1.expires"], "300");
        assert_eq!(reg["reg.1.outboundProxy.address"], "edge.example.com");
        assert_eq!(reg["reg.1.outboundProxy.port"], "5080");
        let dial = attributes(&body, "dialplan");
        assert_eq!(dial["dialplan.digitmap"], "1xxx|112|911|x.T");
    }

    #[test]
    fn the_master_file_names_the_settings_file() {
        let mac = Mac::parse("0004f2d4e5f6").unwrap();
        let app = attributes(&master(&mac), "APPLICATION");
        assert_eq!(app["CONFIG_FILES"], "0004f2d4e5f6-switchboard.cfg");
        assert_eq!(app["APP_FILE_PATH"], "");
    }

    #[test]
    fn unassigned_has_no_address_and_says_why() {
        let body = render(&Profile::Unassigned {
            reason: UNASSIGNED_REASON.into(),
        });
        let reg = attributes(&body, "reg");
        assert_eq!(reg["reg.1.address"], "");
        assert_eq!(reg["reg.1.label"], UNASSIGNED_REASON);
        assert!(!reg.contains_key("reg.1.auth.password"));
    }
}
