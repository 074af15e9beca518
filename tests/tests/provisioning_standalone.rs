//! The standalone demo (the README's quick start) with real clients: the registrar on its demo
//! config and the provisioning service on the matching demo devices. linphonec, configured
//! only with the provisioning URL and the provisioning login, fetches its file over HTTPS
//! (HTTP digest) and registers; a rotation tells a sipp phone registered as the device to
//! fetch again (`NOTIFY`, `Event: check-sync`), and that fetch carries the new password.

use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use switchboard_testkit::daemon::Daemon;
use switchboard_testkit::https::{basic_auth, https_get};
use switchboard_testkit::linphone::{Linphone, ProvisioningLogin};
use switchboard_testkit::{free_port, http_get, repo_root, temp_dir, wait_until_within};
use switchboard_tests::installation::workspace_binary;

const DOMAIN: &str = "switchboard.local";

/// The registrar and the provisioning service on copies of the demo files.
struct Demo {
    dir: PathBuf,
    registrar: Daemon,
    provisioning: Daemon,
    sip_port: u16,
    debug_port: u16,
    https_port: u16,
    ca: PathBuf,
}

impl Demo {
    fn start(name: &str) -> Demo {
        let dir = temp_dir(name);
        let examples = repo_root().join("examples/registrar");
        for f in ["standalone.yaml", "provisioning.yaml"] {
            std::fs::copy(examples.join(f), dir.join(f)).expect("copying a demo file");
        }
        let (sip_port, http_port, debug_port) = (free_port(), free_port(), free_port());
        let mut reg = Command::new(workspace_binary("switchboard-registrar"));
        reg.env("NO_COLOR", "1")
            .arg("--config")
            .arg(dir.join("standalone.yaml"))
            .args(["--udp", &format!("127.0.0.1:{sip_port}")])
            .args(["--tcp", &format!("127.0.0.1:{sip_port}")])
            .args(["--http", &format!("127.0.0.1:{http_port}")])
            .args(["--debug-http", &format!("127.0.0.1:{debug_port}")]);
        let registrar = Daemon::spawn("registrar", reg, &dir);
        let (https_port, ca) = (free_port(), dir.join("ca.pem"));
        let port = sip_port.to_string();
        let mut prov = Command::new(workspace_binary("switchboard-provisioning"));
        prov.env("NO_COLOR", "1")
            .arg("--manifests")
            .arg(dir.join("provisioning.yaml"))
            .args(["--listen", &format!("127.0.0.1:{https_port}")])
            .args(["--http", &format!("127.0.0.1:{}", free_port())])
            .arg("--self-signed-cert-out")
            .arg(&ca)
            .args([
                "--sip-server",
                "127.0.0.1",
                "--sip-udp-port",
                &port,
                "--sip-tcp-port",
                &port,
            ]);
        let provisioning = Daemon::spawn("provisioning", prov, &dir);
        let demo = Demo {
            dir,
            registrar,
            provisioning,
            sip_port,
            debug_port,
            https_port,
            ca,
        };
        wait_until_within("the registrar to be ready", Duration::from_secs(30), || {
            http_get(http_port, "/readyz").filter(|(s, _)| *s == 200)
        });
        wait_until_within("provisioning to answer", Duration::from_secs(30), || {
            demo.ca
                .exists()
                .then(|| https_get(demo.https_port, "/healthz", &[], &demo.ca))
                .flatten()
        });
        demo
    }

    /// The live bindings of a device, from the registrar's debug endpoint.
    fn bindings(&self, device: &str) -> Vec<Value> {
        let (_, body) = http_get(self.debug_port, &format!("/debug/bindings?device={device}"))
            .expect("the debug endpoint answers");
        let v: Value = serde_json::from_str(&body).expect("JSON");
        v["devices"][0]["bindings"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    fn logs(&self) -> String {
        format!(
            "--- registrar:\n{}\n--- provisioning:\n{}",
            self.registrar.output(),
            self.provisioning.output()
        )
    }
}

#[test]
fn linphonec_given_only_the_provisioning_url_fetches_its_file_and_registers() {
    let demo = Demo::start("provisioning-linphone");
    let url = format!(
        "https://demo@localhost:{}/provisioning/linphone/001565001002.xml",
        demo.https_port
    );
    let login = ProvisioningLogin {
        user: "demo".into(),
        password: "provision-demo".into(),
        realm: "switchboard-provisioning".into(),
    };
    let mut phone = Linphone::provisioned(&url, &demo.ca, &login);
    let registered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_until_within(
            "linphonec to register as 1002",
            Duration::from_secs(30),
            || {
                demo.bindings("default/softphone-1002")
                    .into_iter()
                    .find(|b| {
                        b["userAgent"]
                            .as_str()
                            .is_some_and(|ua| ua.starts_with("Linphone"))
                    })
            },
        )
    }));
    let Ok(binding) = registered else {
        panic!(
            "linphonec did not register:\n{}\n--- linphonec:\n{}",
            demo.logs(),
            phone.log()
        );
    };
    assert!(
        binding["contact"]
            .as_str()
            .unwrap()
            .starts_with("sip:1002@"),
        "{binding}"
    );
    let log = phone.log();
    // It was challenged for digest, answered, and got the file with 1002's password.
    assert!(
        log.contains("www-authenticate: Digest realm=\"switchboard-provisioning\""),
        "{log}"
    );
    assert!(log.contains("passwd = switchboard-1002"), "{log}");
    assert!(
        demo.provisioning
            .output()
            .contains("default/softphone-1002"),
        "{}",
        demo.logs()
    );
    phone.stop();
    wait_until_within("linphonec to unregister", Duration::from_secs(15), || {
        demo.bindings("default/softphone-1002")
            .is_empty()
            .then_some(())
    });
}

/// sipp registers `user` from `port`, then waits there for one check-sync NOTIFY.
fn sipp_phone(demo: &Demo, user: &str, port: u16) -> std::process::Child {
    let scenarios = repo_root().join("registrar/tests/sipp");
    let remote = format!("127.0.0.1:{}", demo.sip_port);
    let common = |scenario: &str| -> Vec<String> {
        let path = scenarios.join(scenario).display().to_string();
        [
            &remote,
            "-sf",
            &path,
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-t",
            "u1",
        ]
        .map(String::from)
        .into_iter()
        .chain(
            [
                "-nostdin",
                "-trace_msg",
                "-trace_err",
                "-m",
                "1",
                "-timeout",
                "30",
                "-timeout_error",
            ]
            .map(String::from),
        )
        .collect()
    };
    let mut register = common("proxy_register.xml");
    register.extend(
        [
            "-key", "user", user, "-key", "domain", DOMAIN, "-au", user, "-ap",
        ]
        .map(String::from),
    );
    register.push(format!("switchboard-{user}"));
    let out = Command::new("sipp")
        .args(&register)
        .current_dir(&demo.dir)
        .output()
        .expect("sipp must be installed (.ci/run installs sip-tester)");
    assert!(
        out.status.success(),
        "REGISTER failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    Command::new("sipp")
        .args(common("check_sync_uas.xml"))
        .current_dir(&demo.dir)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("sipp")
}

#[test]
fn rotation_sends_check_sync_and_the_next_fetch_carries_the_new_password() {
    let demo = Demo::start("provisioning-rotation");
    let port = free_port();
    let mut uas = sipp_phone(&demo, "1001", port);
    wait_until_within("sipp to listen", Duration::from_secs(10), || {
        std::net::UdpSocket::bind(("127.0.0.1", port))
            .is_err()
            .then_some(())
    });

    // Rotation as the operator does it: the Secret first, then the registrar config.
    let manifest = demo.dir.join("provisioning.yaml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replace("password: switchboard-1001", "password: rotated-1001"),
    )
    .unwrap();
    let config = demo.dir.join("standalone.yaml");
    let (old_md5, old_sha) = switchboard_crds::config::ha1("1001", DOMAIN, "switchboard-1001");
    let (new_md5, new_sha) = switchboard_crds::config::ha1("1001", DOMAIN, "rotated-1001");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains(&old_md5));
    std::fs::write(
        &config,
        text.replace(&old_md5, &new_md5).replace(&old_sha, &new_sha),
    )
    .unwrap();

    let status = wait_until_within("the check-sync NOTIFY", Duration::from_secs(40), || {
        uas.try_wait().ok().flatten()
    });
    assert!(
        status.success(),
        "sipp got no check-sync NOTIFY:\n{}",
        demo.logs()
    );

    // What a Yealink phone fetches next.
    let auth = basic_auth("demo", "provision-demo");
    let headers = [
        ("User-Agent", "Yealink SIP-T46S 66.86.0.15"),
        ("Authorization", auth.as_str()),
    ];
    let r = https_get(
        demo.https_port,
        "/provisioning/yealink/001565001001.cfg",
        &headers,
        &demo.ca,
    )
    .expect("an HTTPS answer");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        r.body.contains("account.1.password = rotated-1001"),
        "{}",
        r.body
    );
}
