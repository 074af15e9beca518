//! The outbound registrations as the runtime wires them: one registrar binary (the upstream,
//! demo config) and another whose config file holds a registration to it. The second
//! registers with its own listen address as Contact, shows the registration in
//! `/debug/registrations` (with its presence subscriptions, which this upstream refuses), and
//! removes it upstream (`Expires: 0`) when it is stopped.

mod common;

use common::{password, Options, Registrar, DOMAIN};

#[test]
fn registers_upstream_from_the_config_and_unregisters_on_shutdown() {
    let upstream = Registrar::start("uac-upstream", Options::default());
    let config = format!(
        "format: 1\n\
         hash: \"\"\n\
         domains: []\n\
         registrations:\n\
         \x20 - id: default/upstream-1001\n\
         \x20   aor: sip:1001@{DOMAIN}\n\
         \x20   username: \"1001\"\n\
         \x20   password: {}\n\
         \x20   host: 127.0.0.1\n\
         \x20   port: {}\n\
         \x20   transport: UDP\n\
         \x20   expires: 300\n\
         \x20   subscribe: true\n",
        password("1001"),
        upstream.sip_port
    );
    let mut r = Registrar::start(
        "uac-runtime",
        Options {
            config: Some(&config),
            ..Default::default()
        },
    );

    let view = r.wait_registration_successful(
        "the outbound registration to succeed",
        "default/upstream-1001",
    );
    assert_eq!(view["lastStatusCode"], 200, "{view}");
    // The upstream (this registrar) is no presence server: both SUBSCRIBEs are refused, and
    // /debug/registrations says so per package.
    let refused = common::wait_until("both subscriptions refused", || {
        let (_, body) = r.debug_get("/debug/registrations")?;
        let doc: serde_json::Value = serde_json::from_str(&body).ok()?;
        let subs = doc["registrations"][0]["presence"]["subscriptions"]
            .as_array()?
            .clone();
        (subs.len() == 2 && subs.iter().all(|s| s["state"] == "Failed")).then_some(subs)
    });
    assert_eq!(
        (refused[0]["event"].as_str(), refused[1]["event"].as_str()),
        (Some("dialog"), Some("presence")),
        "{refused:?}"
    );
    assert!(
        refused[0]["lastStatusCode"]
            .as_u64()
            .is_some_and(|c| c >= 400),
        "{refused:?}"
    );
    let b = upstream.wait_bindings("default/desk-1001", 1);
    assert_eq!(
        b[0]["contact"],
        format!("sip:1001@127.0.0.1:{}", r.sip_port),
        "the Contact is the registrar's listen address: {b:?}"
    );
    assert!(
        r.logs().contains("status reporter disabled (no cluster)"),
        "{}",
        r.logs()
    );

    assert!(r.terminate().success());
    upstream.wait_bindings("default/desk-1001", 0);
}
