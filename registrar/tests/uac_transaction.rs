//! The UAC's REGISTER as a client transaction against a scripted UDP upstream (a socket in this
//! test): a 100 Trying moves it to Proceeding, where Timer E keeps retransmitting the same
//! request (RFC 3261 §17.1.2.2; the UAC's former copy stopped at a provisional); the final
//! response ends it and the registration succeeds. Every wait has a deadline.

mod common;

use common::{password, wait_async, DOMAIN};
use std::time::Duration;
use switchboard_crds::config::OutboundRegistration;
use switchboard_crds::registration::RegistrationPhase;
use switchboard_registrar::uac::{ContactAddrs, Manager, UacIndex};
use tokio::net::UdpSocket;

const ID: &str = "telephony/trying";

/// The first value of header `name` in `msg`.
fn header<'a>(msg: &'a str, name: &str) -> &'a str {
    msg.lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then_some(v.trim())
        })
        .unwrap_or_else(|| panic!("no {name} in {msg}"))
}

/// A response to `req` echoing its transaction headers.
fn response(req: &str, status: &str, extra: &str) -> String {
    format!(
        "SIP/2.0 {status}\r\nVia: {}\r\nFrom: {}\r\nTo: {};tag=up\r\nCall-ID: {}\r\nCSeq: {}\r\n{extra}Content-Length: 0\r\n\r\n",
        header(req, "Via"),
        header(req, "From"),
        header(req, "To"),
        header(req, "Call-ID"),
        header(req, "CSeq"),
    )
}

/// The next request from the UAC within `limit`, with where it came from.
async fn next(sock: &UdpSocket, limit: Duration) -> (String, std::net::SocketAddr) {
    let mut buf = vec![0u8; 65536];
    let (n, from) = tokio::time::timeout(limit, sock.recv_from(&mut buf))
        .await
        .expect("a request before the deadline")
        .unwrap();
    (String::from_utf8_lossy(&buf[..n]).into_owned(), from)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisional_keeps_retransmitting_until_the_final_response() {
    let upstream = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut settings = common::uac_settings(
        Duration::from_secs(10),
        ContactAddrs {
            udp: Some("127.0.0.1:15996".into()),
            ..Default::default()
        },
    );
    // T1 of 1 s leaves the 100 Trying ample time to arrive before Timer E first fires.
    settings.t1 = Duration::from_secs(1);
    let index = UacIndex::default();
    let mut m = Manager::new(settings, None, index.clone());
    m.apply(&[OutboundRegistration {
        id: ID.into(),
        aor: format!("sip:1001@{DOMAIN}"),
        username: "1001".into(),
        password: password("1001"),
        host: "127.0.0.1".into(),
        port: upstream.local_addr().unwrap().port(),
        expires: 300,
        ..Default::default()
    }]);

    let (first, from) = next(&upstream, Duration::from_secs(5)).await;
    assert!(first.starts_with("REGISTER "), "{first}");
    upstream
        .send_to(response(&first, "100 Trying", "").as_bytes(), from)
        .await
        .unwrap();
    // Timer E, armed at T1 before the 100, fires next, then every T2 (4 s; in Trying it
    // would have doubled to 2 s).
    let (again, _) = next(&upstream, Duration::from_secs(3)).await;
    let at = std::time::Instant::now();
    let (third, _) = next(&upstream, Duration::from_secs(6)).await;
    for r in [&again, &third] {
        assert_eq!(
            (header(r, "Via"), header(r, "CSeq")),
            (header(&first, "Via"), header(&first, "CSeq")),
            "the same request retransmitted in Proceeding: {r}"
        );
    }
    assert!(
        at.elapsed() >= Duration::from_secs(3),
        "retransmitted at T2 once proceeding, not {:?} later",
        at.elapsed()
    );
    let contact = header(&first, "Contact");
    upstream
        .send_to(
            response(
                &first,
                "200 OK",
                &format!("Contact: {contact};expires=300\r\n"),
            )
            .as_bytes(),
            from,
        )
        .await
        .unwrap();
    let ok = wait_async(Duration::from_secs(5), || {
        index
            .get(ID)
            .is_some_and(|v| v.phase == RegistrationPhase::Successful)
    })
    .await;
    assert!(ok, "{:?}", index.get(ID));
    assert_eq!(index.get(ID).unwrap().last_status_code, Some(200));
    m.shutdown(Duration::from_millis(100)).await;
}
