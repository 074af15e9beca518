//! Outbound registration over TLS, to our own registrar (the binary, started with a test CA's
//! certificate): the UAC verifies the server against an extra CA file, answers the registrar's
//! digest challenge, and the binding shows in `/debug/bindings`; stopping unregisters it.
//! Without the CA (system roots only) the handshake fails and the registration says so.

mod common;

use common::{password, test_certificates, Options, Registrar, DOMAIN};
use std::time::{Duration, Instant};
use switchboard_crds::common::Transport;
use switchboard_crds::config::OutboundRegistration;
use switchboard_crds::registration::RegistrationPhase;
use switchboard_registrar::uac::flow::tls_client_config;
use switchboard_registrar::uac::{ClientSettings, ContactAddrs, Manager, UacIndex};

fn settings(ca: Option<&std::path::Path>) -> ClientSettings {
    let extra: Vec<&std::path::Path> = ca.into_iter().collect();
    ClientSettings {
        tls: Some(tls_client_config(&extra).expect("TLS client config")),
        ..common::uac_settings(
            Duration::from_secs(2),
            ContactAddrs {
                tls: Some("127.0.0.1:15998".into()),
                ..Default::default()
            },
        )
    }
}

fn registration(port: u16) -> OutboundRegistration {
    OutboundRegistration {
        id: "default/tls-trunk".into(),
        aor: format!("sip:1001@{DOMAIN}"),
        username: "1001".into(),
        password: password("1001"),
        host: "localhost".into(),
        port,
        transport: Transport::Tls,
        expires: 300,
        ..Default::default()
    }
}

async fn wait_phase(index: &UacIndex, want: RegistrationPhase) -> (Option<u16>, String) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = index.get("default/tls-trunk") {
            if v.phase == want {
                return (v.last_status_code, v.last_reason.unwrap_or_default());
            }
        }
        assert!(
            Instant::now() < deadline,
            "wanted {want:?}, have {:?}",
            index.get("default/tls-trunk")
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_over_tls_with_a_private_ca_and_unregisters() {
    let dir = common::temp_dir("uac-tls-certs");
    let (ca, cert, key) = test_certificates(&dir);
    let registrar = tokio::task::spawn_blocking(move || {
        Registrar::start(
            "uac-tls",
            Options {
                tls: Some((&cert, &key)),
                ..Default::default()
            },
        )
    })
    .await
    .unwrap();
    let port = registrar.tls_port.unwrap();

    // System roots only: the private CA is not trusted.
    let index = UacIndex::default();
    let mut m = Manager::new(settings(None), None, index.clone());
    m.apply(&[registration(port)]);
    let (code, reason) = wait_phase(&index, RegistrationPhase::Failed).await;
    assert_eq!(code, Some(503));
    assert!(reason.contains("connection failed"), "{reason}");
    m.shutdown(Duration::from_secs(3)).await;

    // With the CA: registered, and the registrar holds the binding.
    let index = UacIndex::default();
    let mut m = Manager::new(settings(Some(&ca)), None, index.clone());
    m.apply(&[registration(port)]);
    let (code, _) = wait_phase(&index, RegistrationPhase::Successful).await;
    assert_eq!(code, Some(200));
    let registrar = tokio::task::spawn_blocking(move || {
        let b = registrar.wait_bindings("default/desk-1001", 1);
        assert_eq!(
            b[0]["contact"], "sip:1001@127.0.0.1:15998;transport=tls",
            "{b:?}"
        );
        registrar
    })
    .await
    .unwrap();

    // Shutdown unregisters.
    m.shutdown(Duration::from_secs(5)).await;
    tokio::task::spawn_blocking(move || {
        registrar.wait_bindings("default/desk-1001", 0);
    })
    .await
    .unwrap();
}
