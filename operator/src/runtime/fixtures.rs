//! A fake API server for pass tests: kube's mock service (`tower-test`), answering the calls a
//! pass makes and recording them so each test can check exactly which writes happened.

use super::metrics::Metrics;
use super::Context;
use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use kube::runtime::events::{Recorder, Reporter};
use kube::Client;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

/// One call the operator made.
#[derive(Clone, Debug)]
pub struct Call {
    /// HTTP method.
    pub method: Method,
    /// Path and query.
    pub uri: String,
    /// JSON body, if any.
    pub body: Value,
}

impl Call {
    /// The path without the query.
    pub fn path(&self) -> &str {
        self.uri.split('?').next().unwrap_or_default()
    }
}

/// The fake server's log.
#[derive(Clone, Default)]
pub struct Calls(Arc<Mutex<Vec<Call>>>);

impl Calls {
    /// Every call so far; clears the log.
    pub fn take(&self) -> Vec<Call> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

fn answer(call: &Call) -> (StatusCode, Value) {
    match call.method {
        Method::PATCH => {
            // Server-side apply: echo the applied object as stored.
            let mut obj = call.body.clone();
            let segments: Vec<&str> = call.path().split('/').collect();
            let (ns, name) = match segments.iter().position(|s| *s == "namespaces") {
                Some(i) => (segments[i + 1], segments[i + 3]),
                None => ("", ""),
            };
            let meta = obj
                .as_object_mut()
                .unwrap()
                .entry("metadata")
                .or_insert_with(|| json!({}));
            meta["name"] = json!(name);
            meta["namespace"] = json!(ns);
            meta["resourceVersion"] = json!("1");
            (StatusCode::OK, obj)
        }
        Method::POST => (StatusCode::CREATED, call.body.clone()),
        Method::DELETE => (
            StatusCode::OK,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "metadata": {}}),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404, "reason": "NotFound", "message": "not found", "metadata": {}}),
        ),
    }
}

/// A context whose client talks to the fake server, and the server's log.
pub fn context() -> (Context, Calls) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let calls = Calls::default();
    let log = calls.clone();
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.unwrap();
            let call = Call {
                method: parts.method.clone(),
                uri: parts.uri.to_string(),
                body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            };
            let (status, value) = answer(&call);
            log.0.lock().unwrap().push(call);
            let response = Response::builder()
                .status(status)
                .body(Body::from(serde_json::to_vec(&value).unwrap()))
                .unwrap();
            send.send_response(response);
        }
    });
    let client = Client::new(service, "default");
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: crate::MANAGER.into(),
            instance: Some("test".into()),
        },
    );
    let ctx = Context {
        client,
        recorder,
        metrics: Metrics::new(),
    };
    (ctx, calls)
}
