//! Linphone's remote provisioning file: `lpconfig` XML of sections and entries, the same keys
//! as its `linphonerc` (`proxy_0`, `auth_info_0`).

use super::xml;
use crate::profile::Profile;

/// The file for a profile. An unassigned phone gets an account that does not register, its
/// display name saying why.
pub fn render(profile: &Profile) -> String {
    let mut sections: Vec<(&str, Vec<(&str, String)>)> = Vec::new();
    match profile {
        Profile::Unassigned { reason } => {
            let identity = format!("\"{}\" <sip:unassigned@invalid>", quote(reason));
            sections.push((
                "proxy_0",
                vec![
                    ("reg_identity", identity),
                    ("reg_proxy", "<sip:invalid>".into()),
                    ("reg_sendregister", "0".into()),
                ],
            ));
        }
        Profile::Account(a) => {
            let t = a.transport.as_sip_param();
            let proxy = format!("<sip:{}:{};transport={t}>", a.server, a.port);
            let mut proxy_0 = vec![
                ("reg_proxy", proxy),
                (
                    "reg_identity",
                    format!(
                        "\"{}\" <sip:{}@{}>",
                        quote(&a.display_name),
                        a.user,
                        a.domain
                    ),
                ),
                ("realm", a.domain.clone()),
                ("reg_expires", a.expires.to_string()),
                ("reg_sendregister", "1".into()),
            ];
            if let Some(p) = &a.outbound_proxy {
                proxy_0.push(("reg_route", format!("<sip:{p};transport={t};lr>")));
            }
            sections.push(("proxy_0", proxy_0));
            sections.push((
                "auth_info_0",
                vec![
                    ("username", a.user.clone()),
                    ("userid", a.auth_user.clone()),
                    ("passwd", a.password.clone()),
                    ("realm", a.domain.clone()),
                    ("domain", a.domain.clone()),
                ],
            ));
        }
    }
    sections.push(("sip", vec![("default_proxy", "0".into())]));
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<config xmlns=\"http://www.linphone.org/xsds/lpconfig.xsd\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xsi:schemaLocation=\"http://www.linphone.org/xsds/lpconfig.xsd lpconfig.xsd\">\n",
    );
    for (name, entries) in sections {
        out += &format!("  <section name=\"{name}\">\n");
        for (k, v) in entries {
            out += &format!(
                "    <entry name=\"{k}\" overwrite=\"true\">{}</entry>\n",
                xml(&v)
            );
        }
        out += "  </section>\n";
    }
    out += "</config>\n";
    out
}

/// A display name inside SIP quotes.
fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::tests::{fixture, server};
    use crate::profile::{profile, UNASSIGNED_REASON};
    use crate::vendor::tests::entries;
    use switchboard_crds::common::Transport;

    #[test]
    fn proxy_and_auth_info_read_back() {
        let (site, _, alice, _) = fixture();
        let p = profile(
            &server(Transport::Tls),
            &alice,
            Some(&site),
            "x1-alice",
            "<pw>",
        );
        let e = entries(&render(&p));
        assert_eq!(
            e[&("proxy_0".into(), "reg_proxy".into())],
            "<sip:sip.example.com:5071;transport=tls>"
        );
        assert_eq!(
            e[&("proxy_0".into(), "reg_identity".into())],
            "\"alice\" <sip:x1-alice@acme.sip.example.com>"
        );
        assert_eq!(
            e[&("proxy_0".into(), "reg_route".into())],
            "<sip:edge.example.com:5080;transport=tls;lr>"
        );
        assert_eq!(e[&("proxy_0".into(), "reg_expires".into())], "300");
        assert_eq!(e[&("auth_info_0".into(), "username".into())], "x1-alice");
        assert_eq!(e[&("auth_info_0".into(), "passwd".into())], "<pw>");
        assert_eq!(
            e[&("auth_info_0".into(), "realm".into())],
            "acme.sip.example.com"
        );
        assert_eq!(e[&("sip".into(), "default_proxy".into())], "0");
    }

    #[test]
    fn unassigned_does_not_register_and_shows_why() {
        let e = entries(&render(&Profile::Unassigned {
            reason: UNASSIGNED_REASON.into(),
        }));
        assert_eq!(e[&("proxy_0".into(), "reg_sendregister".into())], "0");
        assert!(e[&("proxy_0".into(), "reg_identity".into())].contains(UNASSIGNED_REASON));
        assert!(!e.keys().any(|(s, _)| s == "auth_info_0"));
    }
}
