//! Phase-change callbacks (`spec.callback`) against a local HTTP receiver: a registration to a
//! real upstream (the registrar binary with the demo config) goes `InProgress` → `Successful`;
//! the owner POSTs the change, signed, to a local HTTP receiver (`testkit::http`), whose
//! requests the test checks with its own HMAC; it answers 503 to the first attempts. The UAC runs through
//! `uac::Manager` with short retry delays; every wait polls under a deadline.

mod common;

use common::{password, wait_async, Options, Registrar, DOMAIN};
use hmac::{Hmac, Mac};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use sha2::Sha256;
use std::time::Duration;
use switchboard_crds::config::{CallbackTarget, OutboundRegistration};
use switchboard_crds::registration::{CallbackStatus, RegistrationPhase, SipRegistrationStatus};
use switchboard_registrar::callback::retry::Policy;
use switchboard_registrar::status::{reporter, Desired, Key, Kind, StatusHandle, StatusSettings};
use switchboard_registrar::uac::{ContactAddrs, Manager, UacIndex};
use switchboard_testkit::http::{HttpReceiver, Received};

const ID: &str = "telephony/carrier";
const KEY: &str = "callback-signing-key";

/// Whether a request carries JSON and a signature that verifies under [`KEY`], computed here
/// with the `hmac` crate rather than the registrar's own code.
fn signed_ok(r: &Received) -> bool {
    let mut mac = Hmac::<Sha256>::new_from_slice(KEY.as_bytes()).unwrap();
    mac.update(format!("{}.", r.header("x-switchboard-timestamp")).as_bytes());
    mac.update(&r.body);
    let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    r.header("x-switchboard-signature") == expected
        && r.header("content-type") == "application/json"
        && r.line == "POST /hooks/sip HTTP/1.1"
}

fn body(r: &Received) -> serde_json::Value {
    serde_json::from_slice(&r.body).unwrap_or_default()
}

fn registration(upstream: &Registrar, url: &str) -> OutboundRegistration {
    registration_to(upstream.sip_port, url)
}

fn registration_to(port: u16, url: &str) -> OutboundRegistration {
    OutboundRegistration {
        id: ID.into(),
        aor: format!("sip:1001@{DOMAIN}"),
        username: "1001".into(),
        password: password("1001"),
        host: "127.0.0.1".into(),
        port,
        expires: 300,
        callback: Some(CallbackTarget {
            url: url.into(),
            key: Some(KEY.into()),
        }),
        ..Default::default()
    }
}

fn manager() -> (Manager, UacIndex) {
    manager_reporting(None)
}

fn manager_reporting(status: Option<StatusHandle>) -> (Manager, UacIndex) {
    let mut settings = common::uac_settings(
        Duration::from_millis(1500),
        ContactAddrs {
            udp: Some("127.0.0.1:15997".into()),
            ..Default::default()
        },
    );
    settings.callback = Policy {
        first_delay: Duration::from_millis(100),
        max_delay: Duration::from_millis(400),
        max_attempts: 4,
        timeout: Duration::from_secs(2),
    };
    let index = UacIndex::default();
    (Manager::new(settings, status, index.clone()), index)
}

fn callback(index: &UacIndex) -> CallbackStatus {
    index.get(ID).and_then(|v| v.callback).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phase_change_is_signed_and_retried_until_delivered() {
    let upstream = Registrar::start("callback-upstream", Options::default());
    let hook = HttpReceiver::start(|n| if n < 2 { 503 } else { 200 });
    let (mut m, index) = manager();
    m.apply(&[registration(&upstream, &hook.url("/hooks/sip"))]);

    let ok = wait_async(Duration::from_secs(15), || {
        callback(&index).last_delivered_phase == Some(RegistrationPhase::Successful)
    })
    .await;
    let got = hook.received();
    assert!(ok, "callback {:?}; received {got:?}", callback(&index));
    let cb = callback(&index);
    assert_eq!((cb.attempts, cb.last_error.as_deref()), (3, None), "{cb:?}");
    assert!(cb.last_delivered_time.is_some());
    assert_eq!(got.len(), 3, "two 503s, then 200: {got:?}");
    assert!(got.iter().all(signed_ok), "signatures: {got:?}");
    let delivery = got[0].header("x-switchboard-delivery");
    assert!(
        delivery.len() == 32
            && got
                .iter()
                .all(|r| r.header("x-switchboard-delivery") == delivery),
        "one delivery id across the attempts: {got:?}"
    );
    let body = &body(&got[2]);
    assert_eq!(body["registration"]["namespace"], "telephony", "{body}");
    assert_eq!(body["registration"]["name"], "carrier", "{body}");
    assert_eq!(body["oldPhase"], "InProgress", "{body}");
    assert_eq!(body["newPhase"], "Successful", "{body}");
    assert_eq!(body["statusCode"], 200, "{body}");
    assert_eq!(body["reason"], "200 OK", "{body}");
    assert!(
        body["time"]
            .as_str()
            .is_some_and(|t| t.parse::<k8s_openapi::jiff::Timestamp>().is_ok()),
        "{body}"
    );
    m.shutdown(Duration::from_secs(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_that_keeps_failing_is_given_up_and_a_refusal_at_once() {
    let upstream = Registrar::start("callback-upstream-2", Options::default());
    let hook = HttpReceiver::start(|_| 502);
    let (mut m, index) = manager();
    m.apply(&[registration(&upstream, &hook.url("/hooks/sip"))]);
    let ok = wait_async(Duration::from_secs(15), || {
        callback(&index).gave_up_phase == Some(RegistrationPhase::Successful)
    })
    .await;
    assert!(
        ok,
        "callback {:?}; received {:?}",
        callback(&index),
        hook.received()
    );
    let cb = callback(&index);
    assert_eq!(
        (
            cb.attempts,
            cb.last_error.as_deref(),
            cb.last_delivered_phase
        ),
        (4, Some("HTTP 502"), None),
        "{cb:?}"
    );
    assert!(cb.gave_up_time.is_some());
    assert_eq!(hook.received().len(), 4);
    m.shutdown(Duration::from_secs(3)).await;

    // 404: the request itself is wrong; one attempt, then given up.
    let hook = HttpReceiver::start(|_| 404);
    let (mut m, index) = manager();
    m.apply(&[registration(&upstream, &hook.url("/hooks/sip"))]);
    let ok = wait_async(Duration::from_secs(15), || {
        callback(&index).gave_up_phase == Some(RegistrationPhase::Successful)
    })
    .await;
    assert!(ok, "callback {:?}", callback(&index));
    assert_eq!(callback(&index).attempts, 1);
    assert_eq!(callback(&index).last_error.as_deref(), Some("HTTP 404"));
    assert_eq!(hook.received().len(), 1);
    m.shutdown(Duration::from_secs(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_listening_is_retried_with_the_connection_error() {
    let upstream = Registrar::start("callback-upstream-3", Options::default());
    let port = common::free_port();
    let url = format!("http://127.0.0.1:{port}/hooks/sip");
    let (mut m, index) = manager();
    m.apply(&[registration(&upstream, &url)]);
    let ok = wait_async(Duration::from_secs(15), || {
        callback(&index).gave_up_phase.is_some()
    })
    .await;
    let cb = callback(&index);
    assert!(ok, "{cb:?}");
    assert_eq!(cb.attempts, 4, "{cb:?}");
    assert!(
        cb.last_error
            .as_deref()
            .is_some_and(|e| e.contains("refused")),
        "{cb:?}"
    );
    m.shutdown(Duration::from_secs(3)).await;
}

/// A replica taking a registration over (or restarted) starts from the delivery state its
/// status already shows: the last delivery and give-up survive its first write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_owner_keeps_the_delivery_state_the_status_shows() {
    let t = |s: i64| Time(k8s_openapi::jiff::Timestamp::from_second(1_700_000_000 + s).unwrap());
    let known = CallbackStatus {
        last_delivered_phase: Some(RegistrationPhase::Successful),
        last_delivered_time: Some(t(10)),
        attempts: 3,
        last_error: None,
        gave_up_phase: Some(RegistrationPhase::Failed),
        gave_up_time: Some(t(5)),
    };
    let (status, _writer) = reporter(StatusSettings::default());
    status.prime(
        Key::parse(Kind::Registration, ID).unwrap(),
        Desired::Registration(SipRegistrationStatus {
            phase: Some(RegistrationPhase::Successful),
            callback: Some(known.clone()),
            ..Default::default()
        }),
    );
    // An upstream that never answers: the registration stays InProgress, no callback is sent.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let hook = HttpReceiver::start(|_| 200);
    let (mut m, index) = manager_reporting(Some(status.clone()));
    m.apply(&[registration_to(
        silent.local_addr().unwrap().port(),
        &hook.url("/hooks/sip"),
    )]);
    let want = CallbackStatus {
        attempts: 0,
        ..known
    };
    assert_eq!(callback(&index), want);
    let ok = wait_async(Duration::from_secs(5), || {
        status.registration_status(ID).is_some_and(|st| {
            st.phase == Some(RegistrationPhase::InProgress) && st.callback.as_ref() == Some(&want)
        })
    })
    .await;
    assert!(ok, "{:?}", status.registration_status(ID));
    m.shutdown(Duration::from_secs(1)).await;
}
