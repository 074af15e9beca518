//! Credential rotation as the registrar sees it: a new config in which a device's HA1 changed.
//! The device's bindings are dropped at once (a stolen phone is no longer rung), a REGISTER
//! with the old password is refused, the new password registers.

mod common;

use common::{password, status_of, wait_until, Options, Registrar, UdpClient, DEMO_CONFIG, DOMAIN};
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
    let rotated = DEMO_CONFIG
        .replace(&old_md5, &new_md5)
        .replace(&old_sha, &new_sha);
    let generation = r.metric("switchboard_config_generation");
    std::fs::write(r.dir.join("config.yaml"), rotated).unwrap();
    wait_until("the rotated config", || {
        (r.metric("switchboard_config_generation") > generation).then_some(())
    });
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
