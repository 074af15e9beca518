//! A real softphone, baresip (package `baresip-core`), registering headless over UDP, TCP and
//! TLS; the binding is checked in `/debug/bindings`, and baresip's unregistration on exit
//! (`Expires: 0`) must remove it.
//!
//! baresip 1.0 (libre 1.1) gives up on a challenge set that contains any algorithm but MD5, so
//! the demo domain here offers `digestAlgorithms: [MD5]` alone.

mod common;

use common::{
    demo_config, password, temp_dir, test_certificates, wait_until, Options, Registrar, DOMAIN,
};
use std::path::Path;
use switchboard_testkit::baresip::{Account, Baresip};

/// baresip with `user`'s account, registering to `r` over `transport`.
fn baresip(
    r: &Registrar,
    user: &str,
    pass: &str,
    transport: &'static str,
    ca: Option<&Path>,
) -> Baresip {
    let port = match transport {
        "tls" => r.tls_port.unwrap(),
        _ => r.sip_port,
    };
    let mut account = Account::udp(user, DOMAIN, pass, ([127, 0, 0, 1], port).into());
    account.transport = transport;
    account.ca_file = ca.map(Path::to_path_buf);
    Baresip::start(&account)
}

fn register_and_unregister(
    r: &Registrar,
    user: &str,
    device: &str,
    transport: &'static str,
    ca: Option<&Path>,
) {
    let phone = baresip(r, user, &password(user), transport, ca);
    registered_then_unregistered(r, phone, device, transport);
}

fn registered_then_unregistered(
    r: &Registrar,
    mut phone: Baresip,
    device: &str,
    transport: &'static str,
) -> String {
    let expected = transport.to_ascii_uppercase();
    let binding = wait_until(&format!("baresip to register over {transport}"), || {
        r.device_bindings(device)
            .into_iter()
            .find(|b| b["transport"] == expected.as_str())
    });
    assert!(
        binding["userAgent"]
            .as_str()
            .unwrap()
            .starts_with("baresip"),
        "{binding}"
    );
    assert!(
        binding["contact"].as_str().unwrap().contains("127.0.0.1"),
        "{binding}"
    );
    let expires_in = binding["expiresIn"].as_u64().unwrap();
    assert!((590..=600).contains(&expires_in), "{binding}");
    phone.stop();
    wait_until("baresip's unregistration to remove the binding", || {
        r.device_bindings(device).is_empty().then_some(())
    });
    let log = phone.log();
    assert!(log.contains("200 OK"), "{log}");
    log
}

/// Zoiper and others send the auth name with the domain (`username="1003@realm"`), their digest
/// computed over that name; baresip does the same with `auth_user`.
#[test]
fn baresip_registers_with_an_auth_name_carrying_the_domain() {
    let r = Registrar::start(
        "baresip-authdomain",
        Options {
            config: Some(&demo_config(Some("[MD5]"))),
            ..Default::default()
        },
    );
    let mut account = Account::udp(
        "1003",
        DOMAIN,
        &password("1003"),
        ([127, 0, 0, 1], r.sip_port).into(),
    );
    account.auth_user = Some(format!("1003@{DOMAIN}"));
    let phone = Baresip::start(&account);
    // The trace (baresip -s) shows which name the digest was computed over.
    let log = registered_then_unregistered(&r, phone, "default/lobby-1003", "udp");
    assert!(
        log.contains(&format!("username=\"1003@{DOMAIN}\"")),
        "baresip authenticated as 1003@{DOMAIN}: {log}"
    );
}

#[test]
fn baresip_registers_over_udp_and_tcp() {
    let r = Registrar::start(
        "baresip",
        Options {
            config: Some(&demo_config(Some("[MD5]"))),
            ..Default::default()
        },
    );
    register_and_unregister(&r, "1002", "default/softphone-1002", "udp", None);
    register_and_unregister(&r, "1002", "default/softphone-1002", "tcp", None);
}

#[test]
fn baresip_registers_over_tls() {
    let dir = temp_dir("tls-certs");
    let (ca, cert, key) = test_certificates(&dir);
    let r = Registrar::start(
        "baresip-tls",
        Options {
            tls: Some((&cert, &key)),
            config: Some(&demo_config(Some("[MD5]"))),
            ..Default::default()
        },
    );
    register_and_unregister(&r, "1003", "default/lobby-1003", "tls", Some(&ca));
}

#[test]
fn baresip_with_a_wrong_password_is_refused() {
    let r = Registrar::start(
        "baresip-wrong",
        Options {
            config: Some(&demo_config(Some("[MD5]"))),
            ..Default::default()
        },
    );
    let mut phone = baresip(&r, "1001", "not-the-password", "udp", None);
    wait_until("baresip to be refused with 403", || {
        (r.metric("sip_requests_total{code=\"403\",method=\"REGISTER\"}") >= 1.0).then_some(())
    });
    phone.stop();
    assert!(phone.log().contains("403 Forbidden"), "{}", phone.log());
    assert!(r.device_bindings("default/desk-1001").is_empty());
}
