//! Credential rotation as the registrar sees it: a new config in which a device's HA1 changed.
//! The device's bindings are dropped at once (a stolen phone is no longer rung), a REGISTER
//! with the old password is refused, the new password registers; the phone that held the
//! binding is told to fetch its configuration again (`NOTIFY`, `Event: check-sync`).

mod common;

use common::sipp::{
    once_within, register_phone, requests, scenario, sipp_args, spawn_sipp, wait_exit,
    wait_listening,
};
use common::{
    free_port, password, status_of, temp_dir, wait_until, Options, Registrar, UdpClient, DEADLINE,
    DEMO_CONFIG, DOMAIN,
};
use std::net::SocketAddr;

const DEVICE: &str = "default/softphone-1002";

#[test]
fn rotation_drops_the_bindings_and_refuses_the_old_password() {
    let r = Registrar::start(
        "rotation",
        Options {
            config: Some(DEMO_CONFIG),
            ..Default::default()
        },
    );
    let sip: SocketAddr = format!("127.0.0.1:{}", r.sip_port).parse().unwrap();
    let phone = UdpClient::new(sip);
    let ok = phone.register("1002", &password("1002"), "before", "Expires: 3600\r\n");
    assert_eq!(status_of(&ok), 200, "{ok}");
    r.wait_bindings(DEVICE, 1);
    // 1001 stays registered through the rotation of 1002.
    let other = UdpClient::new(sip).register("1001", &password("1001"), "other", "");
    assert_eq!(status_of(&other), 200, "{other}");

    // The operator rotates 1002's password: a new config with new HA1 values.
    let (old_md5, old_sha) = switchboard_crds::config::ha1("1002", DOMAIN, &password("1002"));
    let (new_md5, new_sha) = switchboard_crds::config::ha1("1002", DOMAIN, "rotated-1002");
    assert!(DEMO_CONFIG.contains(&old_md5) && DEMO_CONFIG.contains(&old_sha));
    let rotated = rotated_config("1002", "rotated-1002");
    assert!(
        !rotated.contains(&old_md5) && rotated.contains(&new_md5) && rotated.contains(&new_sha)
    );
    rotate(&r, &rotated);
    r.wait_bindings(DEVICE, 0);
    assert_eq!(
        r.metric("sip_registration_events_total{kind=\"CredentialsChanged\"}"),
        1.0
    );
    assert_eq!(r.device_bindings("default/desk-1001").len(), 1);

    // The phone holding the old password cannot come back; the new password registers.
    let old = UdpClient::new(sip).register("1002", &password("1002"), "old-password", "");
    assert_eq!(status_of(&old), 403, "{old}");
    let new = UdpClient::new(sip).register("1002", "rotated-1002", "new-password", "");
    assert_eq!(status_of(&new), 200, "{new}");
    r.wait_bindings(DEVICE, 1);
}

/// The demo config with `user`'s password changed to `new_password`.
fn rotated_config(user: &str, new_password: &str) -> String {
    let (old_md5, old_sha) = switchboard_crds::config::ha1(user, DOMAIN, &password(user));
    let (new_md5, new_sha) = switchboard_crds::config::ha1(user, DOMAIN, new_password);
    DEMO_CONFIG
        .replace(&old_md5, &new_md5)
        .replace(&old_sha, &new_sha)
}

/// Writes `config` over the registrar's file and waits until it is in force.
fn rotate(r: &Registrar, config: &str) {
    let generation = r.metric("switchboard_config_generation");
    std::fs::write(r.dir.join("config.yaml"), config).unwrap();
    wait_until("the rotated config", || {
        (r.metric("switchboard_config_generation") > generation).then_some(())
    });
}

#[test]
fn rotation_tells_the_registered_phone_to_fetch_its_configuration_again() {
    let r = Registrar::start(
        "check-sync",
        Options {
            config: Some(DEMO_CONFIG),
            ..Default::default()
        },
    );
    // A sipp phone registers 1001 from `port`, then listens there as a UAS.
    let (port, dir) = (free_port(), temp_dir("check-sync-phone"));
    let remote = format!("127.0.0.1:{}", r.sip_port);
    register_phone(
        &remote,
        "1001",
        DOMAIN,
        &password("1001"),
        ("127.0.0.1", port),
        &dir,
        20,
    );
    r.wait_bindings("default/desk-1001", 1);
    let mut args = sipp_args(
        "127.0.0.1:9",
        &scenario("check_sync_uas.xml"),
        "127.0.0.1",
        port,
        "u1",
    );
    args.extend(once_within(30));
    let mut phone = spawn_sipp(&args, &dir);
    wait_listening("the sipp UAS to listen", port, false);

    rotate(&r, &rotated_config("1001", "rotated-1001"));
    let status = wait_exit(&mut phone, DEADLINE * 3);
    if status.is_none() {
        let _ = phone.kill();
    }
    let logs = common::sipp_logs(&dir);
    assert!(
        status.is_some_and(|s| s.success()),
        "the phone got no check-sync NOTIFY:\n{logs}"
    );
    let received = common::sipp_received(&dir);
    let notify = requests(&received, "NOTIFY");
    assert_eq!(notify.len(), 1, "{received:?}");
    assert!(
        notify[0].starts_with(&format!("NOTIFY sip:1001@127.0.0.1:{port}")),
        "{}",
        notify[0]
    );
    assert!(
        notify[0].contains("To: <sip:1001@switchboard.local>"),
        "{}",
        notify[0]
    );
    r.wait_bindings("default/desk-1001", 0);
    assert_eq!(r.metric("sip_check_sync_total{result=\"sent\"}"), 1.0);
}
