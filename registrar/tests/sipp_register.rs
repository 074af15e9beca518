//! REGISTER scenarios played by sipp (package `sip-tester`) against the built registrar, with
//! the binding state checked through `/debug/bindings` and counters through `/metrics`.
//!
//! sipp 3.6 answers only MD5 challenges and reads the first `algorithm=` of the challenges, so
//! the demo domain here offers `digestAlgorithms: [MD5, SHA-256]` (both challenges, MD5
//! first); SHA-256 is covered end to end by `tls_client.rs`.

mod common;

use common::{demo_config, password, sipp, Options, Registrar, DOMAIN};

fn registrar(name: &str, extra: &'static [&'static str]) -> Registrar {
    let config = demo_config(Some("[MD5, SHA-256]"));
    Registrar::start(
        name,
        Options {
            config: Some(&config),
            args: extra,
            ..Default::default()
        },
    )
}

fn keys(user: &str) -> [(&str, &str); 2] {
    [("user", user), ("domain", DOMAIN)]
}

#[test]
fn register_and_reregister_over_udp_and_tcp() {
    let r = registrar("register", &[]);
    for (transport, user, device) in [
        ("u1", "1001", "default/desk-1001"),
        ("t1", "1002", "default/softphone-1002"),
    ] {
        let pw = password(user);
        let run = sipp(
            &r,
            "register.xml",
            transport,
            &keys(user),
            Some((user, &pw)),
        );
        run.assert_ok();
        let b = r.wait_bindings(device, 1);
        let expires_in = b[0]["expiresIn"].as_u64().unwrap();
        assert!(
            (590..=600).contains(&expires_in),
            "re-registration set 600 s: {b:?}"
        );
        assert_eq!(
            b[0]["transport"],
            if transport == "u1" { "UDP" } else { "TCP" }
        );
        assert_eq!(b[0]["replica"], "test-replica");
        assert_eq!(b[0]["userAgent"], "sipp switchboard-tests");
        assert_eq!(b[0]["cseq"], 3);
        assert!(b[0]["source"].as_str().unwrap().starts_with("127.0.0.1:"));
    }
    assert_eq!(
        r.metric("sip_requests_total{code=\"200\",method=\"REGISTER\"}"),
        4.0
    );
    assert_eq!(
        r.metric("sip_requests_total{code=\"401\",method=\"REGISTER\"}"),
        2.0
    );
    assert_eq!(r.metric("sip_auth_failures_total{reason=\"replay\"}"), 0.0);
}

#[test]
fn unregister_with_expires_zero() {
    let r = registrar("unregister", &[]);
    sipp(
        &r,
        "unregister.xml",
        "u1",
        &keys("1003"),
        Some(("1003", &password("1003"))),
    )
    .assert_ok();
    r.wait_bindings("default/lobby-1003", 0);
    assert!(r.bindings()["devices"].as_array().unwrap().is_empty());
}

#[test]
fn contact_star_removes_all_bindings() {
    let r = registrar("star", &[]);
    sipp(
        &r,
        "star.xml",
        "u1",
        &keys("1001"),
        Some(("1001", &password("1001"))),
    )
    .assert_ok();
    r.wait_bindings("default/desk-1001", 0);
    assert_eq!(
        r.metric("sip_requests_total{code=\"400\",method=\"REGISTER\"}"),
        1.0
    );
}

#[test]
fn wrong_password_and_unknown_user_both_get_403() {
    let r = registrar("rejected", &[]);
    sipp(
        &r,
        "rejected.xml",
        "u1",
        &keys("1001"),
        Some(("1001", "not-the-password")),
    )
    .assert_ok();
    sipp(
        &r,
        "rejected.xml",
        "u1",
        &keys("4242"),
        Some(("4242", "whatever")),
    )
    .assert_ok();
    assert!(r.bindings()["devices"].as_array().unwrap().is_empty());
    assert_eq!(
        r.metric("sip_requests_total{code=\"403\",method=\"REGISTER\"}"),
        2.0
    );
    assert_eq!(
        r.metric("sip_auth_failures_total{reason=\"wrong_password\"}"),
        1.0
    );
    assert_eq!(
        r.metric("sip_auth_failures_total{reason=\"unknown_user\"}"),
        1.0
    );
}

#[test]
fn failures_beyond_the_limit_block_the_phone() {
    let r = registrar(
        "limit",
        &["--auth-failure-limit", "2", "--auth-cooldown", "60"],
    );
    for _ in 0..2 {
        sipp(
            &r,
            "rejected.xml",
            "u1",
            &keys("1001"),
            Some(("1001", "nope")),
        )
        .assert_ok();
    }
    // Now even the right password is refused (403 without a challenge).
    let run = sipp(
        &r,
        "register.xml",
        "u1",
        &keys("1001"),
        Some(("1001", &password("1001"))),
    );
    assert_ne!(run.code, 0, "{}", run.report);
    assert!(run.report.contains("403 Forbidden"), "{}", run.report);
    assert!(r.metric("sip_auth_failures_total{reason=\"blocked\"}") >= 1.0);
}

#[test]
fn stale_nonce_is_rechallenged_with_stale_true() {
    let r = registrar("stale", &["--nonce-ttl", "1"]);
    sipp(
        &r,
        "stale.xml",
        "u1",
        &keys("1002"),
        Some(("1002", &password("1002"))),
    )
    .assert_ok();
    r.wait_bindings("default/softphone-1002", 1);
    assert_eq!(
        r.metric("sip_auth_failures_total{reason=\"stale_nonce\"}"),
        1.0
    );
}

#[test]
fn too_brief_expiry_gets_423() {
    let r = registrar("too-brief", &[]);
    sipp(
        &r,
        "too_brief.xml",
        "u1",
        &keys("1003"),
        Some(("1003", &password("1003"))),
    )
    .assert_ok();
    let b = r.wait_bindings("default/lobby-1003", 1);
    assert!(b[0]["expiresIn"].as_u64().unwrap() <= 60);
}

#[test]
fn several_contacts_with_q_values() {
    let r = registrar("contacts", &[]);
    sipp(
        &r,
        "contacts.xml",
        "u1",
        &keys("1001"),
        Some(("1001", &password("1001"))),
    )
    .assert_ok();
    let b = r.wait_bindings("default/desk-1001", 3);
    let mut q: Vec<u64> = b.iter().map(|b| b["q"].as_u64().unwrap()).collect();
    q.sort();
    assert_eq!(q, vec![100, 700, 1000]);
}
