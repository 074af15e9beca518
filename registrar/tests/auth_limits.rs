//! The failed-authentication limiter as phones behind one NAT address meet it, over raw UDP
//! from 127.0.0.1 (every client shares that address, each on its own port): a phone with a
//! wrong password blocks itself and no neighbour, many users failing from one address block
//! the address, an unknown user name does not block the device it becomes, and a flood of
//! failures writes a few log lines, not one per attempt.

mod common;

use common::{password, status_of, wait_until, Options, Registrar, UdpClient, DEMO_CONFIG};
use std::net::SocketAddr;

fn start(name: &str, args: &'static [&'static str], config: Option<&str>) -> Registrar {
    Registrar::start(
        name,
        Options {
            config,
            args,
            ..Default::default()
        },
    )
}

fn sip_addr(r: &Registrar) -> SocketAddr {
    format!("127.0.0.1:{}", r.sip_port).parse().unwrap()
}

/// A REGISTER round trip from a fresh port of 127.0.0.1; the final status.
fn register(r: &Registrar, user: &str, pw: &str, call_id: &str) -> u16 {
    status_of(&UdpClient::new(sip_addr(r)).register(user, pw, call_id, ""))
}

/// Waits until the sweeper has set `sip_auth_blocked{scope}` to `n`.
fn wait_blocked(r: &Registrar, scope: &str, n: f64) {
    wait_until(&format!("{n} blocked {scope}(s)"), || {
        (r.metric(&format!("sip_auth_blocked{{scope=\"{scope}\"}}")) == n).then_some(())
    });
}

#[test]
fn a_phone_with_a_wrong_password_blocks_itself_not_its_neighbours() {
    let r = start("nat-pair", &["--auth-failure-limit", "3"], None);
    for i in 0..3 {
        assert_eq!(register(&r, "1001", "wrong", &format!("bad-{i}")), 403);
    }
    // Blocked: even the right password is refused now …
    assert_eq!(register(&r, "1001", &password("1001"), "good-1001"), 403);
    // … while the phones sharing the address register.
    assert_eq!(register(&r, "1002", &password("1002"), "good-1002"), 200);
    assert_eq!(register(&r, "1003", &password("1003"), "good-1003"), 200);
    wait_blocked(&r, "pair", 1.0);
    assert_eq!(r.metric("sip_auth_blocked{scope=\"source\"}"), 0.0);
    assert_eq!(r.metric("sip_auth_blocks_total{scope=\"pair\"}"), 1.0);
    assert_eq!(r.metric("sip_auth_failures_total{reason=\"blocked\"}"), 1.0);
    r.wait_bindings("default/softphone-1002", 1);
    assert!(r.device_bindings("default/desk-1001").is_empty());
}

#[test]
fn many_users_failing_from_one_address_block_the_address() {
    let r = start(
        "nat-source",
        &[
            "--auth-failure-limit",
            "5",
            "--auth-source-failure-limit",
            "4",
        ],
        None,
    );
    // A guesser tries a password on many names (known or not: the answers are the same).
    for (i, user) in ["1001", "1002", "4001", "4002"].iter().enumerate() {
        assert_eq!(register(&r, user, "guess", &format!("guess-{i}")), 403);
    }
    // The address is blocked: a right password from it is refused too.
    assert_eq!(register(&r, "1003", &password("1003"), "good-1003"), 403);
    wait_blocked(&r, "source", 1.0);
    assert_eq!(r.metric("sip_auth_blocks_total{scope=\"source\"}"), 1.0);
}

#[test]
fn a_device_failing_before_it_is_configured_registers_once_it_is() {
    let r = start("not-yet", &["--auth-failure-limit", "2"], Some(DEMO_CONFIG));
    let pw = "switchboard-1004";
    // The phone is set up before its device is applied: unknown, so refused, then blocked.
    for i in 0..3 {
        assert_eq!(register(&r, "1004", pw, &format!("early-{i}")), 403);
    }
    wait_blocked(&r, "pair", 1.0);
    // The device arrives (the operator's compile; here the config file is rewritten).
    let (md5, sha256) = switchboard_crds::config::ha1("1004", common::DOMAIN, pw);
    let device = format!(
        "      - id: default/new-1004\n        sipUser: \"1004\"\n        ha1Md5: {md5}\n        \
         ha1Sha256: {sha256}\n        assignment: Site\n        extension: \"1004\"\n"
    );
    let generation = r.metric("switchboard_config_generation");
    std::fs::write(r.dir.join("config.yaml"), format!("{DEMO_CONFIG}{device}")).unwrap();
    wait_until("the config with device 1004", || {
        (r.metric("switchboard_config_generation") > generation).then_some(())
    });
    // Its earlier failures were an unknown name's: the device itself is not blocked.
    assert_eq!(register(&r, "1004", pw, "configured"), 200, "{}", r.logs());
    r.wait_bindings("default/new-1004", 1);
}

#[test]
fn a_flood_of_failures_writes_a_few_log_lines() {
    let r = start("log-flood", &["--auth-failure-limit", "1000"], None);
    let attempts = 40;
    let client = UdpClient::new(sip_addr(&r));
    for i in 0..attempts {
        assert_eq!(
            status_of(&client.register("1001", "wrong", &format!("flood-{i}"), "")),
            403
        );
    }
    let lines = r.logs().matches("authentication failed").count();
    assert!(
        (1..=3).contains(&lines),
        "{lines} lines for {attempts} failures"
    );
    assert_eq!(
        r.metric("sip_auth_log_lines_suppressed_total"),
        f64::from(attempts) - lines as f64
    );
}
