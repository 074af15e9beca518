//! A real softphone, baresip (package `baresip-core`), registering headless over UDP, TCP and
//! TLS; the binding is checked in `/debug/bindings`, and baresip's unregistration on exit
//! (`Expires: 0`) must remove it.
//!
//! baresip 1.0 (libre 1.1) gives up on a challenge set that contains any algorithm but MD5, so
//! the demo domain here offers `digestAlgorithms: [MD5]` alone.

mod common;

use common::{
    demo_config, free_port, password, temp_dir, test_certificates, wait_until, Options, Registrar,
    DOMAIN,
};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

struct Baresip {
    child: Option<Child>,
    out: PathBuf,
}

impl Baresip {
    fn start(r: &Registrar, user: &str, pass: &str, transport: &str, ca: Option<&Path>) -> Baresip {
        let dir = temp_dir(&format!("baresip-{transport}"));
        let port = free_port();
        let mut config = format!(
            "poll_method\t\tepoll\nsip_listen\t\t127.0.0.1:{port}\naudio_player\t\taufile,/dev/null\n\
             audio_source\t\tausine,440\nmodule_path\t\t/usr/lib/baresip/modules\nmodule\t\t\tg711.so\n\
             module\t\t\taufile.so\nmodule\t\t\tausine.so\nmodule_app\t\taccount.so\nmodule_app\t\tmenu.so\n"
        );
        if let Some(ca) = ca {
            config.push_str(&format!("sip_cafile\t\t{}\n", ca.display()));
        }
        std::fs::write(dir.join("config"), config).unwrap();
        let (proxy_port, param) = match transport {
            "udp" => (r.sip_port, String::new()),
            "tcp" => (r.sip_port, ";transport=tcp".to_string()),
            "tls" => (r.tls_port.unwrap(), ";transport=tls".to_string()),
            _ => unreachable!(),
        };
        std::fs::write(
            dir.join("accounts"),
            format!(
                "<sip:{user}@{DOMAIN}{param}>;auth_pass={pass};outbound=\"sip:127.0.0.1:{proxy_port}{param}\";regint=600\n"
            ),
        )
        .unwrap();
        let out = dir.join("baresip.log");
        let child = Command::new("baresip")
            .arg("-f")
            .arg(&dir)
            .arg("-s")
            .stdin(Stdio::null())
            .stdout(Stdio::from(std::fs::File::create(&out).unwrap()))
            .stderr(Stdio::from(
                std::fs::File::create(dir.join("stderr.log")).unwrap(),
            ))
            .spawn()
            .expect("baresip must be installed (package baresip-core; .ci/run installs it)");
        Baresip {
            child: Some(child),
            out,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// SIGTERM: baresip unregisters, then exits.
    fn stop(&mut self) {
        let mut child = self.child.take().unwrap();
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        wait_until("baresip to exit", || child.try_wait().unwrap());
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn register_and_unregister(
    r: &Registrar,
    user: &str,
    device: &str,
    transport: &str,
    ca: Option<&Path>,
) {
    let mut phone = Baresip::start(r, user, &password(user), transport, ca);
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
    assert!(phone.log().contains("200 OK"), "{}", phone.log());
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
    let mut phone = Baresip::start(&r, "1001", "not-the-password", "udp", None);
    wait_until("baresip to be refused with 403", || {
        (r.metric("sip_requests_total{code=\"403\",method=\"REGISTER\"}") >= 1.0).then_some(())
    });
    phone.stop();
    assert!(phone.log().contains("403 Forbidden"), "{}", phone.log());
    assert!(r.device_bindings("default/desk-1001").is_empty());
}
