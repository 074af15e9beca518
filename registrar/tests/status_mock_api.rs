//! The status reporter against kube-rs's mock client (`tower-test`): the exact sequence of API
//! calls for a device's life — register, refresh (nothing), second contact, unregister of one
//! contact, unregister of the last, register again, expiry — and for a SipRegistration's
//! phases. Every status write is a server-side apply of the status subresource under field
//! manager `switchboard-registrar` (forced), carrying only the registrar's fields: for a device
//! `registration` and the `Registered` condition, whose `lastTransitionTime` moves only when
//! the state flips.

use http::{Method, Request, Response};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use switchboard_crds::common::Transport;
use switchboard_crds::device::ContactStatus;
use switchboard_crds::registration::{RegistrationPhase, SipRegistrationStatus};
use switchboard_registrar::metrics::Metrics;
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

fn device_status_path(name: &str) -> String {
    format!("/apis/sip.switchboard.dev/v1alpha1/namespaces/default/sipdevices/{name}/status?&force=true&fieldManager=switchboard-registrar")
}
const REGISTRATION_STATUS: &str = "/apis/sip.switchboard.dev/v1alpha1/namespaces/default/sipregistrations/trunk/status?&force=true&fieldManager=switchboard-registrar";

/// Checks alice's status apply; returns its `Registered` condition's `lastTransitionTime`.
fn assert_status_apply(call: &Call, state: &str, uris: &[&str]) -> String {
    assert_device_apply(call, "alice", state, uris)
}

fn assert_device_apply(call: &Call, name: &str, state: &str, uris: &[&str]) -> String {
    assert_eq!(call.method, Method::PATCH);
    assert_eq!(call.path, device_status_path(name));
    let b = &call.body;
    assert_eq!(b["apiVersion"], "sip.switchboard.dev/v1alpha1");
    assert_eq!(b["kind"], "SipDevice");
    // Only status.registration and the registrar's one condition: nothing of the operator's
    // (Accepted, Ready, effective, …).
    assert_eq!(b.as_object().unwrap().len(), 3, "{b}");
    assert_eq!(
        b["status"].as_object().unwrap().keys().collect::<Vec<_>>(),
        vec!["conditions", "registration"],
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
    assert_registered_condition(b, state, uris)
}

/// The body's conditions are exactly one `Registered`, agreeing with the state and naming the
/// contact count and first contact; returns its `lastTransitionTime`.
fn assert_registered_condition(b: &Value, state: &str, uris: &[&str]) -> String {
    let conditions = b["status"]["conditions"].as_array().unwrap();
    assert_eq!(conditions.len(), 1, "{b}");
    let c = &conditions[0];
    let (status, reason) = if state == "Registered" {
        ("True", "Registered")
    } else {
        ("False", "Unregistered")
    };
    assert_eq!(
        (&c["type"], &c["status"], &c["reason"]),
        (&json!("Registered"), &json!(status), &json!(reason)),
        "{b}"
    );
    let message = c["message"].as_str().unwrap();
    match uris.first() {
        Some(first) => assert!(
            message.starts_with(&format!("{} contact(s); {first} over ", uris.len())),
            "{message}"
        ),
        None => assert_eq!(message, "no live binding"),
    }
    assert!(c.get("observedGeneration").is_none(), "{b}");
    c["lastTransitionTime"].as_str().unwrap().to_string()
}

fn last_change_time(call: &Call) -> String {
    call.body["status"]["registration"]["lastChangeTime"]
        .as_str()
        .unwrap()
        .to_string()
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
    reporter_counting(Arc::new(Metrics::new()))
}

/// A reporter counting its writes into `metrics`.
fn reporter_counting(
    metrics: Arc<Metrics>,
) -> (status::StatusHandle, ApiHandle, tokio::task::JoinHandle<()>) {
    let (mock, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(mock, "default");
    let settings = StatusSettings {
        rate: 1000.0,
        burst: 100,
        replica: Some("registrar-0".into()),
        ..Default::default()
    };
    let (status, reporter) = status::reporter(settings);
    let reporter = reporter.with_metrics(metrics);
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

    // 1. First registration: one apply, one Registered event; the condition transitions now.
    assert_eq!(
        status.device_bindings("default/alice", vec![a()]),
        Offer::Queued
    );
    let call = next_call(&mut api).await;
    let registered_since = assert_status_apply(&call, "Registered", &["sip:alice@192.0.2.10:5060"]);
    assert_eq!(registered_since, last_change_time(&call));
    assert_event(&next_call(&mut api).await, "SipDevice", "Registered");

    // 2. Refresh: only the expiry moves; nothing is written.
    let mut refreshed = a();
    refreshed.expires = Time(Timestamp::from_second(Timestamp::now().as_second() + 7200).unwrap());
    assert_eq!(
        status.device_bindings("default/alice", vec![refreshed]),
        Offer::Unchanged
    );
    assert_eq!(status.pending(), 0);

    // 3. A second contact, a second later (times have whole seconds): one apply, no event
    // (still Registered); the change time moves, the condition's transition time does not.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        status.device_bindings("default/alice", vec![a(), b()]),
        Offer::Queued
    );
    let call = next_call(&mut api).await;
    let since = assert_status_apply(
        &call,
        "Registered",
        &[
            "sip:alice@192.0.2.10:5060",
            "sip:alice@192.0.2.11:5062;transport=tcp",
        ],
    );
    assert_eq!(since, registered_since);
    assert_ne!(last_change_time(&call), registered_since);

    // 4. One contact unregisters (Expires: 0): one apply, still the same transition time.
    status.device_bindings("default/alice", vec![a()]);
    let since = assert_status_apply(
        &next_call(&mut api).await,
        "Registered",
        &["sip:alice@192.0.2.10:5060"],
    );
    assert_eq!(since, registered_since);

    // 5. The last one unregisters: Unregistered, an event, and the condition transitions.
    status.device_bindings("default/alice", vec![]);
    let call = next_call(&mut api).await;
    let since = assert_status_apply(&call, "Unregistered", &[]);
    assert_eq!(since, last_change_time(&call));
    assert_ne!(since, registered_since);
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
    let metrics = Arc::new(Metrics::new());
    let (status, mut api, task) = reporter_counting(metrics.clone());
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
    let writes = |result| metrics.status_writes.with_label_values(&[result]).get();
    assert_eq!(
        (writes("written"), writes("gone"), writes("failed")),
        (1, 1, 1)
    );
    assert_eq!(metrics.status_pending.get(), 0);
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
    let mut b = contact("sip:bob@192.0.2.20:5060", "192.0.2.20:5060", 3600);
    b.replica = Some("registrar-0".into());
    // What the registrar wrote before the restart: the condition as it writes it.
    let registered = json!({
        "type": "Registered", "status": "True", "reason": "Registered",
        "message": "1 contact(s); sip:alice@192.0.2.10:5060 over UDP from 192.0.2.10:5060 (Linphone/5.2)",
        "lastTransitionTime": "2024-01-01T00:00:00Z",
    });
    let accepted = json!({
        "type": "Accepted", "status": "True", "reason": "Accepted", "message": "",
        "lastTransitionTime": "2023-12-01T00:00:00Z",
    });
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
                "status": {
                    "conditions": [accepted, registered],
                    "registration": {"state": "Registered", "contacts": [a], "lastChangeTime": "2024-01-01T00:00:00Z"},
                },
            }, {
                // Written by a registrar that did not write the condition yet.
                "apiVersion": "sip.switchboard.dev/v1alpha1", "kind": "SipDevice",
                "metadata": {"name": "bob", "namespace": "default"},
                "spec": {"macAddress": "aa:bb:cc:dd:ee:00", "sipUser": "bob"},
                "status": {
                    "conditions": [accepted],
                    "registration": {"state": "Registered", "contacts": [b], "lastChangeTime": "2024-01-02T00:00:00Z"},
                },
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
    assert_eq!(prime.await.unwrap().unwrap(), 2);
    let task = tokio::spawn(reporter.run(KubeSink::new(client, Some("registrar-0".into()))));

    // The phone comes back after the restart from the same address: nothing to write.
    let mut back = contact("sip:alice@192.0.2.10:5060", "192.0.2.10:5060", 7200);
    back.replica = None;
    assert_eq!(
        status.device_bindings("default/alice", vec![back]),
        Offer::Unchanged
    );
    // Bob comes back unchanged too, but his status lacks the condition: written once, without
    // an Event (nothing flipped), transitioned at the registration's last change.
    let mut bob = contact("sip:bob@192.0.2.20:5060", "192.0.2.20:5060", 7200);
    bob.replica = None;
    assert_eq!(
        status.device_bindings("default/bob", vec![bob.clone()]),
        Offer::Queued
    );
    let since = assert_device_apply(
        &next_call(&mut api).await,
        "bob",
        "Registered",
        &["sip:bob@192.0.2.20:5060"],
    );
    assert_eq!(since, "2024-01-02T00:00:00Z");
    wait_written(&status, 1).await;
    assert_eq!(
        status.device_bindings("default/bob", vec![bob]),
        Offer::Unchanged
    );
    // Alice unregisters: the flip from the primed state is written, with its event.
    status.device_bindings("default/alice", vec![]);
    let call = next_call(&mut api).await;
    let since = assert_status_apply(&call, "Unregistered", &[]);
    assert_eq!(since, last_change_time(&call));
    assert_event(&next_call(&mut api).await, "SipDevice", "Unregistered");
    task.abort();
}

#[tokio::test]
async fn dropped_for_new_credentials_the_status_and_event_say_so() {
    use switchboard_registrar::registrar::events::{ChangeKind, RegistrationEvent};
    let (status, mut api, task) = reporter();
    let a = contact("sip:alice@192.0.2.10:5060", "192.0.2.10:5060", 3600);
    status.device_bindings("default/alice", vec![a]);
    let _ = next_call(&mut api).await;
    assert_event(&next_call(&mut api).await, "SipDevice", "Registered");

    // The registrar dropped the bindings because the device's credentials were rotated.
    status.device_event(&RegistrationEvent {
        device_id: "default/alice".into(),
        kind: ChangeKind::CredentialsChanged,
        bindings: vec![],
        at: std::time::SystemTime::now(),
    });
    let call = next_call(&mut api).await;
    assert_eq!(call.path, device_status_path("alice"));
    let st = &call.body["status"];
    assert_eq!(st["registration"]["state"], "Unregistered");
    let cond = &st["conditions"][0];
    assert_eq!(
        (&cond["type"], &cond["status"], &cond["reason"]),
        (
            &json!("Registered"),
            &json!("False"),
            &json!("CredentialsChanged")
        )
    );
    assert!(
        cond["message"]
            .as_str()
            .unwrap()
            .contains("credentials changed"),
        "{cond}"
    );
    let event = next_call(&mut api).await;
    assert_event(&event, "SipDevice", "CredentialsChanged");
    assert!(
        event.body["note"]
            .as_str()
            .unwrap()
            .contains("credentials changed"),
        "{}",
        event.body
    );
    wait_written(&status, 2).await;
    task.abort();
}
