//! The status reporter against kube-rs's mock client (`tower-test`): the exact sequence of API
//! calls for a device's life — register, refresh (nothing), second contact, unregister of one
//! contact, unregister of the last, register again, expiry — and for a SipRegistration's
//! phases. Every status write is a server-side apply of the status subresource under field
//! manager `switchboard-registrar` (forced), carrying only the registrar's fields.

use http::{Method, Request, Response};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};
use std::time::Duration;
use switchboard_crds::common::Transport;
use switchboard_crds::device::ContactStatus;
use switchboard_crds::registration::{RegistrationPhase, SipRegistrationStatus};
use switchboard_registrar::status::{self, KubeSink, Offer, StatusSettings};
use tower_test::mock::{Handle, SendResponse};

type ApiHandle = Handle<Request<Body>, Response<Body>>;

struct Call {
    method: Method,
    path: String,
    body: Value,
}

/// Receives the next API call (within 5 s) and answers it like the API server would.
async fn next_call(handle: &mut ApiHandle) -> Call {
    let (req, send): (Request<Body>, SendResponse<Response<Body>>) =
        tokio::time::timeout(Duration::from_secs(5), handle.next_request())
            .await
            .expect("an API call within 5 s")
            .expect("client alive");
    let method = req.method().clone();
    let path = req.uri().to_string();
    let bytes = req.into_body().collect_bytes().await.unwrap();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let answer = if path.contains("/events") {
        let mut ev = body.clone();
        ev["metadata"]["resourceVersion"] = json!("1");
        ev
    } else {
        // The object after the apply: what the API server returns.
        let kind = body["kind"].as_str().unwrap_or_default().to_string();
        let spec = if kind == "SipDevice" {
            json!({ "macAddress": "aa:bb:cc:dd:ee:ff", "sipUser": "alice" })
        } else {
            json!({ "aor": "sip:trunk@example.test", "username": "trunk" })
        };
        let name = path.split('/').rev().nth(1).unwrap_or_default().to_string();
        json!({
            "apiVersion": "sip.switchboard.dev/v1alpha1",
            "kind": kind,
            "metadata": { "name": name, "namespace": "default", "uid": "uid-1", "resourceVersion": "2" },
            "spec": spec,
            "status": body["status"],
        })
    };
    send.send_response(
        Response::builder()
            .status(200)
            .body(Body::from(serde_json::to_vec(&answer).unwrap()))
            .unwrap(),
    );
    Call { method, path, body }
}

fn contact(uri: &str, from: &str, expires_in: i64) -> ContactStatus {
    ContactStatus {
        uri: uri.into(),
        transport: Transport::Udp,
        source_address: from.into(),
        user_agent: Some("Linphone/5.2".into()),
        expires: Time(Timestamp::from_second(Timestamp::now().as_second() + expires_in).unwrap()),
        replica: None,
    }
}

const DEVICE_STATUS: &str = "/apis/sip.switchboard.dev/v1alpha1/namespaces/default/sipdevices/alice/status?&force=true&fieldManager=switchboard-registrar";
const REGISTRATION_STATUS: &str = "/apis/sip.switchboard.dev/v1alpha1/namespaces/default/sipregistrations/trunk/status?&force=true&fieldManager=switchboard-registrar";

fn assert_status_apply(call: &Call, state: &str, uris: &[&str]) {
    assert_eq!(call.method, Method::PATCH);
    assert_eq!(call.path, DEVICE_STATUS);
    let b = &call.body;
    assert_eq!(b["apiVersion"], "sip.switchboard.dev/v1alpha1");
    assert_eq!(b["kind"], "SipDevice");
    // Only status.registration: nothing of the operator's (conditions, effective, …).
    assert_eq!(b.as_object().unwrap().len(), 3, "{b}");
    assert_eq!(
        b["status"].as_object().unwrap().keys().collect::<Vec<_>>(),
        vec!["registration"],
        "{b}"
    );
    let reg = &b["status"]["registration"];
    assert_eq!(reg["state"], state, "{b}");
    let got: Vec<&str> = reg["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["uri"].as_str().unwrap())
        .collect();
    assert_eq!(got, uris, "{b}");
    assert!(reg["lastChangeTime"].is_string());
    for c in reg["contacts"].as_array().unwrap() {
        assert_eq!(c["replica"], "registrar-0");
        assert_eq!(c["transport"], "UDP");
        assert!(
            c["expires"].is_string()
                && c["sourceAddress"].is_string()
                && c["userAgent"].is_string()
        );
    }
}

fn assert_event(call: &Call, kind: &str, reason: &str) {
    assert!(
        call.path
            .starts_with("/apis/events.k8s.io/v1/namespaces/default/events"),
        "{}",
        call.path
    );
    assert_eq!(call.body["reason"], reason, "{}", call.body);
    match call.method {
        // First of its kind: created; the same reason again within minutes: a series patch.
        Method::POST => {
            assert_eq!(call.body["regarding"]["kind"], kind);
            assert_eq!(call.body["reportingController"], "switchboard-registrar");
            assert_eq!(call.body["reportingInstance"], "registrar-0");
        }
        Method::PATCH => {}
        ref m => panic!("unexpected {m} {}", call.path),
    }
}

fn reporter() -> (status::StatusHandle, ApiHandle, tokio::task::JoinHandle<()>) {
    let (mock, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(mock, "default");
    let settings = StatusSettings {
        rate: 1000.0,
        burst: 100,
        replica: Some("registrar-0".into()),
        ..Default::default()
    };
    let (status, reporter) = status::reporter(settings);
    let task = tokio::spawn(reporter.run(KubeSink::new(client, Some("registrar-0".into()))));
    (status, handle, task)
}

async fn wait_written(status: &status::StatusHandle, n: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while status.counters().written < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            status.counters()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn device_status_patch_sequence() {
    let (status, mut api, task) = reporter();
    let a = || contact("sip:alice@192.0.2.10:5060", "192.0.2.10:5060", 3600);
    let b = || {
        contact(
            "sip:alice@192.0.2.11:5062;transport=tcp",
            "192.0.2.11:40000",
            600,
        )
    };

    // 1. First registration: one apply, one Registered event.
    assert_eq!(
        status.device_bindings("default/alice", vec![a()]),
        Offer::Queued
    );
    assert_status_apply(
        &next_call(&mut api).await,
        "Registered",
        &["sip:alice@192.0.2.10:5060"],
    );
    assert_event(&next_call(&mut api).await, "SipDevice", "Registered");

    // 2. Refresh: only the expiry moves; nothing is written.
    let mut refreshed = a();
    refreshed.expires = Time(Timestamp::from_second(Timestamp::now().as_second() + 7200).unwrap());
    assert_eq!(
        status.device_bindings("default/alice", vec![refreshed]),
        Offer::Unchanged
    );
    assert_eq!(status.pending(), 0);

    // 3. A second contact: one apply, no event (still Registered).
    assert_eq!(
        status.device_bindings("default/alice", vec![a(), b()]),
        Offer::Queued
    );
    assert_status_apply(
        &next_call(&mut api).await,
        "Registered",
        &[
            "sip:alice@192.0.2.10:5060",
            "sip:alice@192.0.2.11:5062;transport=tcp",
        ],
    );

    // 4. One contact unregisters (Expires: 0): one apply.
    status.device_bindings("default/alice", vec![a()]);
    assert_status_apply(
        &next_call(&mut api).await,
        "Registered",
        &["sip:alice@192.0.2.10:5060"],
    );

    // 5. The last one unregisters: Unregistered, and an event.
    status.device_bindings("default/alice", vec![]);
    assert_status_apply(&next_call(&mut api).await, "Unregistered", &[]);
    assert_event(&next_call(&mut api).await, "SipDevice", "Unregistered");

    // 6. Registers again, then 7. the binding expires.
    status.device_bindings("default/alice", vec![b()]);
    assert_status_apply(
        &next_call(&mut api).await,
        "Registered",
        &["sip:alice@192.0.2.11:5062;transport=tcp"],
    );
    assert_event(&next_call(&mut api).await, "SipDevice", "Registered");
    status.device_bindings("default/alice", vec![]);
    assert_status_apply(&next_call(&mut api).await, "Unregistered", &[]);
    assert_event(&next_call(&mut api).await, "SipDevice", "Unregistered");

    // Nothing else was sent.
    wait_written(&status, 6).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(100), api.next_request())
            .await
            .is_err()
    );
    let c = status.counters();
    assert_eq!((c.written, c.unchanged), (6, 1));
    task.abort();
}

#[tokio::test]
async fn registration_phase_patches_and_events() {
    let (status, mut api, task) = reporter();
    let now = || Time(Timestamp::now());

    status.registration(
        "default/trunk",
        SipRegistrationStatus {
            phase: Some(RegistrationPhase::InProgress),
            last_reason: Some("registering".into()),
            ..Default::default()
        },
    );
    let call = next_call(&mut api).await;
    assert_eq!(
        (call.method.clone(), call.path.as_str()),
        (Method::PATCH, REGISTRATION_STATUS)
    );
    assert_eq!(call.body["kind"], "SipRegistration");
    assert_eq!(call.body["status"]["phase"], "InProgress");
    assert_eq!(call.body["status"]["replica"], "registrar-0");
    assert!(
        call.body["status"].get("conditions").is_none(),
        "conditions are the operator's"
    );
    assert_event(&next_call(&mut api).await, "SipRegistration", "InProgress");

    let ok = SipRegistrationStatus {
        phase: Some(RegistrationPhase::Successful),
        last_status_code: Some(200),
        last_reason: Some("200 OK".into()),
        last_attempt_time: Some(now()),
        expires_time: Some(now()),
        ..Default::default()
    };
    status.registration("default/trunk", ok.clone());
    let call = next_call(&mut api).await;
    let st = &call.body["status"];
    assert_eq!(
        (
            st["phase"].as_str(),
            st["lastStatusCode"].as_u64(),
            st["lastReason"].as_str()
        ),
        (Some("Successful"), Some(200), Some("200 OK"))
    );
    assert!(st["lastAttemptTime"].is_string() && st["expiresTime"].is_string());
    let ev = next_call(&mut api).await;
    assert_event(&ev, "SipRegistration", "Successful");
    assert_eq!(ev.body["type"], "Normal");

    // The same report again writes nothing; a failure writes, with a Warning event.
    wait_written(&status, 2).await;
    assert_eq!(status.registration("default/trunk", ok), Offer::Unchanged);
    status.registration(
        "default/trunk",
        SipRegistrationStatus {
            phase: Some(RegistrationPhase::Failed),
            last_status_code: Some(403),
            last_reason: Some("403 Forbidden".into()),
            last_attempt_time: Some(now()),
            ..Default::default()
        },
    );
    let call = next_call(&mut api).await;
    assert_eq!(call.body["status"]["lastReason"], "403 Forbidden");
    assert!(
        call.body["status"].get("expiresTime").is_none(),
        "left out of the apply, so the server removes it"
    );
    let ev = next_call(&mut api).await;
    assert_event(&ev, "SipRegistration", "Failed");
    assert_eq!(
        (ev.body["type"].as_str(), ev.body["note"].as_str()),
        (Some("Warning"), Some("403 Forbidden"))
    );
    task.abort();
}

fn api_error(code: u16, reason: &str) -> Response<Body> {
    let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code, "message": reason});
    Response::builder()
        .status(code)
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap()
}

#[tokio::test]
async fn deleted_resource_is_forgotten_and_api_errors_are_retried() {
    let (status, mut api, task) = reporter();
    status.device_bindings(
        "default/gone",
        vec![contact("sip:g@192.0.2.1", "192.0.2.1:5060", 60)],
    );
    let (_, send) = api.next_request().await.unwrap();
    send.send_response(api_error(404, "NotFound"));
    status.device_bindings(
        "default/alice",
        vec![contact("sip:alice@192.0.2.10:5060", "192.0.2.10:5060", 60)],
    );
    let (_, send) = api.next_request().await.unwrap();
    send.send_response(api_error(500, "InternalError"));
    // Retried after a pause, and succeeds.
    assert_status_apply(
        &next_call(&mut api).await,
        "Registered",
        &["sip:alice@192.0.2.10:5060"],
    );
    assert_event(&next_call(&mut api).await, "SipDevice", "Registered");
    wait_written(&status, 1).await;
    let c = status.counters();
    assert_eq!((c.written, c.retried), (1, 1));
    task.abort();
}

#[tokio::test]
async fn restart_primes_from_the_api_so_unchanged_devices_write_nothing() {
    let (mock, mut api) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(mock, "default");
    let settings = StatusSettings {
        rate: 1000.0,
        burst: 100,
        replica: Some("registrar-0".into()),
        ..Default::default()
    };
    let (status, reporter) = status::reporter(settings);
    let mut a = contact("sip:alice@192.0.2.10:5060", "192.0.2.10:5060", 3600);
    a.replica = Some("registrar-0".into());
    let prime = tokio::spawn({
        let (status, client) = (status.clone(), client.clone());
        async move { status.prime_from_cluster(&client).await }
    });
    let lists = [
        (
            "/apis/sip.switchboard.dev/v1alpha1/sipdevices",
            json!([{
                "apiVersion": "sip.switchboard.dev/v1alpha1", "kind": "SipDevice",
                "metadata": {"name": "alice", "namespace": "default"},
                "spec": {"macAddress": "aa:bb:cc:dd:ee:ff", "sipUser": "alice"},
                "status": {"registration": {"state": "Registered", "contacts": [a], "lastChangeTime": "2024-01-01T00:00:00Z"}},
            }]),
        ),
        (
            "/apis/sip.switchboard.dev/v1alpha1/sipregistrations",
            json!([]),
        ),
    ];
    for (path, items) in lists {
        let (req, send) = api.next_request().await.unwrap();
        assert_eq!((req.method(), req.uri().path()), (&Method::GET, path));
        let list = json!({"apiVersion": "sip.switchboard.dev/v1alpha1", "kind": "List", "metadata": {}, "items": items});
        send.send_response(
            Response::builder()
                .status(200)
                .body(Body::from(serde_json::to_vec(&list).unwrap()))
                .unwrap(),
        );
    }
    assert_eq!(prime.await.unwrap().unwrap(), 1);
    let task = tokio::spawn(reporter.run(KubeSink::new(client, Some("registrar-0".into()))));

    // The phone comes back after the restart from the same address: nothing to write.
    let mut back = contact("sip:alice@192.0.2.10:5060", "192.0.2.10:5060", 7200);
    back.replica = None;
    assert_eq!(
        status.device_bindings("default/alice", vec![back]),
        Offer::Unchanged
    );
    // It unregisters: the flip from the primed state is written, with its event.
    status.device_bindings("default/alice", vec![]);
    assert_status_apply(&next_call(&mut api).await, "Unregistered", &[]);
    assert_event(&next_call(&mut api).await, "SipDevice", "Unregistered");
    task.abort();
}
