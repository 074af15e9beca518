//! The generic file: the same facts as JSON, for clients and scripts of any kind.

use crate::mac::Mac;
use crate::profile::Profile;
use serde_json::json;

/// The file for a profile: `assigned`, and either `account` or `reason`.
pub fn render(mac: &Mac, profile: &Profile) -> String {
    let v = match profile {
        Profile::Unassigned { reason } => json!({
            "mac": mac.as_str(),
            "assigned": false,
            "reason": reason,
        }),
        Profile::Account(a) => json!({
            "mac": mac.as_str(),
            "assigned": true,
            "account": {
                "displayName": a.display_name,
                "label": a.label,
                "extension": a.extension,
                "user": a.user,
                "authUser": a.auth_user,
                "password": a.password,
                "domain": a.domain,
                "server": a.server,
                "port": a.port,
                "transport": a.transport,
                "outboundProxy": a.outbound_proxy,
                "expires": a.expires,
                "digitMap": a.digit_map,
            },
        }),
    };
    serde_json::to_string_pretty(&v).expect("JSON of plain values") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::profile;
    use crate::profile::tests::{fixture, server};
    use switchboard_crds::common::Transport;

    #[test]
    fn the_account_reads_back() {
        let (site, lobby, _, spare) = fixture();
        let mac = Mac::parse("001565a1b2c3").unwrap();
        let p = profile(
            &server(Transport::Tcp),
            &lobby,
            Some(&site),
            "x1-lobby",
            "pw",
        );
        let v: serde_json::Value = serde_json::from_str(&render(&mac, &p)).unwrap();
        assert_eq!(v["assigned"], true);
        let a = &v["account"];
        assert_eq!(
            (a["user"].as_str(), a["password"].as_str()),
            (Some("x1-lobby"), Some("pw"))
        );
        assert_eq!(
            (a["transport"].as_str(), a["port"].as_u64()),
            (Some("UDP"), Some(5070))
        );
        assert_eq!(a["extension"], "1001");
        let p = profile(
            &server(Transport::Tcp),
            &spare,
            Some(&site),
            "x1-spare",
            "pw",
        );
        let v: serde_json::Value = serde_json::from_str(&render(&mac, &p)).unwrap();
        assert_eq!(v["assigned"], false);
        assert!(v["account"].is_null() && v["reason"].is_string());
    }
}
