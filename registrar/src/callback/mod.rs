//! Phase-change callbacks of outbound registrations (`SipRegistration.spec.callback`).
//!
//! The replica that owns a registration is the one that sees its phase change, so it is the
//! one that tells the endpoint: one task per registration with a callback, fed the changes
//! in order by `uac::manager`, POSTs each as JSON ([`payload`]), signed with the key the
//! operator compiled into the config, and tries again with backoff ([`retry`]) until the
//! endpoint answers 2xx or the change is given up on. How it went is handed back as a
//! [`CallbackStatus`] (for `status.callback`; a give-up also makes a Warning Event).
//! Delivery is at least once: a change may arrive again after a retry whose answer was lost,
//! or after the registration moved to another replica (which reports its own phases anew);
//! `X-Switchboard-Delivery` identifies a change across its attempts.

pub mod payload;
pub mod retry;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use payload::{PhaseChange, DELIVERY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use retry::{Attempt, Next, Policy};
use std::sync::Arc;
use switchboard_crds::config::CallbackTarget;
use switchboard_crds::registration::CallbackStatus;
use tokio::sync::mpsc;
use tokio_rustls::rustls::ClientConfig;

/// Changes waiting per registration; phases change a few times a minute at most, so a full
/// queue means the endpoint has been failing for long: the newest change is dropped (logged).
pub const QUEUE: usize = 32;

/// The HTTP(S) client callbacks are sent with.
pub type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A client trusting `tls`'s roots (the UAC's: system roots plus `--uac-ca-file`), for
/// `http://` and `https://` URLs.
pub fn http_client(tls: Arc<ClientConfig>) -> HttpClient {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config((*tls).clone())
        .https_or_http()
        .enable_http1()
        .build();
    Client::builder(TokioExecutor::new()).build(https)
}

/// Where a delivery task reports its state; `true` when it just gave a change up.
pub type StatusFn = Arc<dyn Fn(CallbackStatus, bool) + Send + Sync>;

/// Delivers `changes` to `target` with `web` (not a Kubernetes client: the RBAC scan of
/// tests/src/apicalls.rs reads `client.request` as one) in order until the sender is dropped.
pub async fn run(
    id: String,
    target: CallbackTarget,
    policy: Policy,
    web: HttpClient,
    mut changes: mpsc::Receiver<PhaseChange>,
    on_status: StatusFn,
) {
    let mut status = CallbackStatus::default();
    while let Some(change) = changes.recv().await {
        let delivery = format!("{:032x}", rand::random::<u128>());
        let mut attempts = 0;
        loop {
            attempts += 1;
            let result = attempt(&web, &target, &change, &delivery, &policy).await;
            status.attempts = attempts;
            let next = policy.next(attempts, &result);
            match (&result, &next) {
                (_, Next::Done) => {
                    status.last_delivered_phase = Some(change.new_phase);
                    status.last_delivered_time = Some(Time(Timestamp::now()));
                    status.last_error = None;
                    on_status(status.clone(), false);
                    break;
                }
                (Attempt::Failed(e) | Attempt::Refused(e), _) => {
                    status.last_error = Some(e.clone())
                }
                (Attempt::Delivered, _) => {}
            }
            if let Next::Retry(wait) = next {
                tracing::debug!(registration = %id, attempts, error = ?status.last_error, ?wait, "callback failed; retrying");
                on_status(status.clone(), false);
                tokio::time::sleep(wait).await;
            } else {
                tracing::warn!(registration = %id, attempts, error = ?status.last_error, phase = ?change.new_phase, "callback given up");
                status.gave_up_phase = Some(change.new_phase);
                status.gave_up_time = Some(Time(Timestamp::now()));
                on_status(status.clone(), true);
                break;
            }
        }
    }
}

/// One POST.
async fn attempt(
    web: &HttpClient,
    target: &CallbackTarget,
    change: &PhaseChange,
    delivery: &str,
    policy: &Policy,
) -> Attempt {
    let body = change.to_body();
    let now = Timestamp::now().as_second().max(0).unsigned_abs();
    let mut req = http::Request::post(target.url.as_str())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(
            http::header::USER_AGENT,
            concat!("switchboard-registrar/", env!("CARGO_PKG_VERSION")),
        )
        .header(DELIVERY_HEADER, delivery)
        .header(TIMESTAMP_HEADER, now.to_string());
    if let Some(key) = &target.key {
        req = req.header(
            SIGNATURE_HEADER,
            payload::signature(key.as_bytes(), now, &body),
        );
    }
    let req = match req.body(Full::new(Bytes::from(body))) {
        Ok(r) => r,
        Err(e) => return Attempt::Refused(format!("invalid callback URL: {e}")),
    };
    match tokio::time::timeout(policy.timeout, web.request(req)).await {
        Err(_) => Attempt::Failed(format!("no answer within {:?}", policy.timeout)),
        Ok(Err(e)) => Attempt::Failed(error_chain(&e)),
        Ok(Ok(resp)) => Attempt::from_status(resp.status().as_u16()),
    }
}

/// An error with its causes (`client error (Connect): tcp connect error: Connection refused`).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}
