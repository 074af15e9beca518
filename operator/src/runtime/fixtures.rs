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
        // A list (the label migration's): empty.
        Method::GET if call.path().ends_with("/secrets") => (
            StatusCode::OK,
            json!({"kind": "List", "apiVersion": "v1", "metadata": {}, "items": []}),
        ),
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
        fence: super::leader::Fence::open(),
        secret_namespaces: Vec::new(),
    };
    (ctx, calls)
}

/// A context with a writer task, the way the runtime runs passes: [`Harness::settle`] runs a
/// pass, waits for the writer, folds its outcomes in, and passes again until nothing is left.
pub struct Harness {
    /// The context (fake API).
    pub ctx: Context,
    writer: super::writer::Writer,
    outcomes: tokio::sync::mpsc::UnboundedReceiver<super::writer::Outcome>,
}

/// A harness on the fake server, and the server's log.
pub fn harness() -> (Harness, Calls) {
    let (ctx, calls) = context();
    let (tx, outcomes) = tokio::sync::mpsc::unbounded_channel();
    let writer = super::writer::spawn(
        super::writer::Io {
            client: ctx.client.clone(),
            recorder: ctx.recorder.clone(),
            metrics: ctx.metrics.clone(),
            fence: ctx.fence.clone(),
        },
        tx,
    );
    (
        Harness {
            ctx,
            writer,
            outcomes,
        },
        calls,
    )
}

impl Harness {
    /// Passes until the writer is idle and no outcome calls for another pass; the reports
    /// added up (`published` if any pass published).
    pub async fn settle(
        &mut self,
        memory: &mut super::reconcile::Memory,
        index: &mut crate::index::Index,
        rng: &mut rand::rngs::StdRng,
    ) -> super::reconcile::Report {
        let mut total = super::reconcile::Report::default();
        for _ in 0..5 {
            let r = super::reconcile::pass(&self.ctx, &self.writer, memory, index, rng)
                .await
                .expect("pass");
            total.credentials += r.credentials;
            total.statuses += r.statuses;
            total.published |= r.published;
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
            while !self.writer.is_idle() {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the writer never went idle"
                );
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            let mut again = !r.skipped.is_empty();
            while let Ok(outcome) = self.outcomes.try_recv() {
                again |= super::apply_outcome(index, outcome).1;
            }
            if !again {
                break;
            }
        }
        total
    }
}
