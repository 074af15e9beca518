//! A registration over TLS with a certificate made in the test, from a rustls client that
//! verifies the chain against the test CA, answering the challenge of a domain that opted in to
//! RFC 8760 (`digestAlgorithms: [SHA-256, MD5]`, SHA-256 first as it asks) with SHA-256. Also
//! checks the RFC 5626 CRLF keepalive on the TLS flow.

mod common;

use common::{
    authorization, demo_config, header_values, password, register_request, status_of, temp_dir,
    test_certificates, Options, Registrar, DOMAIN,
};
use rustls::pki_types::ServerName;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

async fn read_message(s: &mut TlsStream<TcpStream>) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk))
            .await
            .expect("a response in time")
            .unwrap();
        assert!(n > 0, "connection closed");
        buf.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8(buf).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_over_tls_with_sha256() {
    let dir = temp_dir("tls-client");
    let (ca, cert, key) = test_certificates(&dir);
    let r = tokio::task::spawn_blocking(move || {
        Registrar::start(
            "tls-client",
            Options {
                config: Some(&demo_config(Some("[SHA-256, MD5]"))),
                tls: Some((&cert, &key)),
                ..Default::default()
            },
        )
    })
    .await
    .unwrap();
    let port = r.tls_port.unwrap();

    let config = common::tls_client_config(&ca);
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let local = tcp.local_addr().unwrap().to_string();
    let mut tls = TlsConnector::from(config)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("the certificate verifies against the test CA");

    tls.write_all(
        register_request("TLS", &local, "1001", 1, "tls-call", "Expires: 300\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let challenge = read_message(&mut tls).await;
    assert_eq!(status_of(&challenge), 401, "{challenge}");
    let offers = header_values(&challenge, "WWW-Authenticate");
    assert_eq!(offers.len(), 2, "{challenge}");
    assert!(
        offers[0].contains("algorithm=SHA-256") && offers[1].contains("algorithm=MD5"),
        "{challenge}"
    );

    let auth = authorization(
        offers[0],
        "1001",
        &password("1001"),
        &format!("sip:{DOMAIN}"),
        1,
    );
    tls.write_all(
        register_request(
            "TLS",
            &local,
            "1001",
            2,
            "tls-call",
            &format!("Expires: 300\r\n{auth}"),
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let ok = read_message(&mut tls).await;
    assert_eq!(status_of(&ok), 200, "{ok}");
    let contacts = header_values(&ok, "Contact");
    assert_eq!(contacts.len(), 1);
    assert!(contacts[0].ends_with(";expires=300"), "{ok}");

    // RFC 5626 keepalive: a double CRLF is answered with a single CRLF.
    tls.write_all(b"\r\n\r\n").await.unwrap();
    let mut pong = [0u8; 2];
    tokio::time::timeout(Duration::from_secs(5), tls.read_exact(&mut pong))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&pong, b"\r\n");

    let bindings = tokio::task::spawn_blocking(move || {
        let b = r.wait_bindings("default/desk-1001", 1);
        drop(r);
        b
    })
    .await
    .unwrap();
    assert_eq!(bindings[0]["transport"], "TLS");
    assert_eq!(bindings[0]["source"], local.as_str());
}
