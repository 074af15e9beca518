//! The outbound registrations as the runtime wires them: one registrar binary (the upstream,
//! demo config) and another whose config file holds a registration to it. The second
//! registers with its own listen address as Contact, shows the registration in
//! `/debug/registrations`, and removes it upstream (`Expires: 0`) when it is stopped.

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
         \x20   expires: 300\n",
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
