//! Status write-back under a registration storm: N devices (10 000 by default) register at
//! once, as after a registrar restart. The status reporter runs unchanged (coalescing map,
//! token bucket, `KubeSink` with the real kube client) against a fake API server in-process
//! (tower-test's mock service answering every PATCH and Event with 200), on tokio's paused
//! clock, so the figure "seconds until all show Registered" is the rate limiter's, measured
//! without waiting for it. Then every device refreshes, which must write nothing.
//!
//!   cargo bench -p switchboard-registrar --bench status_burst
//!   DEVICES=10000 RATES="20 50 200" BURST=50 cargo bench -p switchboard-registrar --bench status_burst

use http::{Method, Request, Response};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::client::Body;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use switchboard_crds::common::Transport;
use switchboard_crds::device::ContactStatus;
use switchboard_registrar::status::{self, KubeSink, StatusSettings};

#[derive(Default)]
struct Counts {
    status_patches: AtomicU64,
    event_creates: AtomicU64,
    event_patches: AtomicU64,
}

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn contact(d: usize, expires: i64) -> ContactStatus {
    ContactStatus {
        uri: format!(
            "sip:dev{d}@10.{}.{}.{}:5060",
            d >> 16 & 255,
            d >> 8 & 255,
            d & 255
        ),
        transport: Transport::Udp,
        source_address: format!("10.{}.{}.{}:5060", d >> 16 & 255, d >> 8 & 255, d & 255),
        user_agent: Some("bench-phone/1.0".into()),
        expires: Time(Timestamp::from_second(1_800_000_000 + expires).unwrap()),
        replica: None,
    }
}

/// Answers like the API server: the applied object for a status PATCH, the event for events.
async fn fake_api(
    mut handle: tower_test::mock::Handle<Request<Body>, Response<Body>>,
    counts: Arc<Counts>,
) {
    while let Some((req, send)) = handle.next_request().await {
        let is_event = req.uri().path().contains("/events");
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let bytes = req.into_body().collect_bytes().await.unwrap_or_default();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let answer = if is_event {
            match method {
                Method::POST => counts.event_creates.fetch_add(1, Ordering::Relaxed),
                _ => counts.event_patches.fetch_add(1, Ordering::Relaxed),
            };
            body
        } else {
            counts.status_patches.fetch_add(1, Ordering::Relaxed);
            let name = path.rsplit('/').nth(1).unwrap_or_default();
            json!({
                "apiVersion": "sip.switchboard.dev/v1alpha1", "kind": "SipDevice",
                "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
                "spec": {"macAddress": "aa:bb:cc:dd:ee:ff", "sipUser": name},
                "status": body["status"],
            })
        };
        send.send_response(
            Response::builder()
                .status(200)
                .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                .unwrap(),
        );
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Scenario {
    /// No status known before (first start): every device flips to Registered.
    Fresh,
    /// Registrar restart; statuses read from the API; phones come back from the same address.
    RestartSame,
    /// Registrar restart; phones come back from new source ports (NAT rebinding).
    RestartMoved,
}

fn run(devices: usize, rate: f64, burst: u32, scenario: Scenario) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let (mock, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let counts = Arc::new(Counts::default());
        tokio::spawn(fake_api(handle, counts.clone()));
        let client = kube::Client::new(mock, "default");
        let settings = StatusSettings { rate, burst, replica: Some("registrar-0".into()), ..Default::default() };
        let (status, reporter) = status::reporter(settings);
        let writer = tokio::spawn(reporter.run(KubeSink::new(client, Some("registrar-0".into()))));

        if scenario != Scenario::Fresh {
            for d in 0..devices {
                let mut c = contact(d, 0);
                c.replica = Some("registrar-0".into());
                let key = status::Key::parse(status::Kind::Device, &format!("default/dev{d}")).unwrap();
                status.prime(key, status::Desired::Device(status::desired::device_status(vec![c], Time(Timestamp::now()))));
            }
        }
        let fresh_contact = |d: usize, e: i64| {
            let mut c = contact(d, e);
            if scenario == Scenario::RestartMoved {
                c.source_address = c.source_address.replace(":5060", ":40000");
            }
            c
        };
        let wall = std::time::Instant::now();
        let t0 = tokio::time::Instant::now();
        for d in 0..devices {
            status.device_bindings(&format!("default/dev{d}"), vec![fresh_contact(d, 3600)]);
        }
        let offer_cost = wall.elapsed();
        // Each device refreshes once while the storm drains (phones retry, re-REGISTER).
        for d in 0..devices {
            status.device_bindings(&format!("default/dev{d}"), vec![fresh_contact(d, 7200)]);
        }
        let expect = if scenario == Scenario::RestartSame { 0 } else { devices };
        let mut half = None;
        let limit = t0 + Duration::from_secs_f64(devices as f64 * 4.0 / rate + 60.0);
        loop {
            let w = status.counters().written;
            if half.is_none() && w as usize >= expect / 2 {
                half = Some(t0.elapsed());
            }
            if w as usize >= expect && status.pending() == 0 {
                break;
            }
            assert!(tokio::time::Instant::now() < limit, "stuck at {w} written");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let all = t0.elapsed();
        let patches = counts.status_patches.load(Ordering::Relaxed);
        let events = counts.event_creates.load(Ordering::Relaxed) + counts.event_patches.load(Ordering::Relaxed);

        // Steady state: every device refreshes again; nothing may be written.
        for d in 0..devices {
            status.device_bindings(&format!("default/dev{d}"), vec![fresh_contact(d, 10_800)]);
        }
        tokio::time::sleep(Duration::from_secs(120)).await;
        let refresh_writes = counts.status_patches.load(Ordering::Relaxed) - patches;
        let c = status.counters();
        let name = match scenario {
            Scenario::Fresh => "first start",
            Scenario::RestartSame => "restart, same addr",
            Scenario::RestartMoved => "restart, new ports",
        };
        println!(
            "{name:<19} {devices:>7} {rate:>6} {burst:>5} {patches:>8} {events:>7} {:>9.1} {:>9.1} {:>9.1} {refresh_writes:>9} {:>10} {:>9.1} {:>9.2}",
            (patches + events) as f64 / all.as_secs_f64().max(1e-9),
            half.unwrap_or_default().as_secs_f64(),
            all.as_secs_f64(),
            c.unchanged,
            offer_cost.as_secs_f64() * 1e6 / devices as f64,
            wall.elapsed().as_secs_f64(),
        );
        writer.abort();
    });
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing special: run small.
    let quick = std::env::args().any(|a| a == "--test") || std::env::var("QUICK").is_ok();
    let devices: usize = env("DEVICES", if quick { 500 } else { 10_000 });
    let burst: u32 = env("BURST", 50);
    let rates: Vec<f64> = std::env::var("RATES")
        .unwrap_or_else(|_| "20 50 200".into())
        .split_whitespace()
        .filter_map(|r| r.parse().ok())
        .collect();
    println!("status write-back: {devices} devices register at once, each refreshes during and after the storm");
    println!("(API calls = status PATCH + Event; time is the rate limiter's, on a paused clock; `wall` is real CPU time)");
    println!(
        "{:<19} {:>7} {:>6} {:>5} {:>8} {:>7} {:>9} {:>9} {:>9} {:>9} {:>10} {:>9} {:>9}",
        "scenario",
        "devices",
        "rate/s",
        "burst",
        "PATCHes",
        "events",
        "calls/s",
        "50% (s)",
        "100% (s)",
        "refresh",
        "unchanged",
        "offer µs",
        "wall (s)"
    );
    for rate in &rates {
        run(devices, *rate, burst, Scenario::Fresh);
    }
    run(devices, rates[0], burst, Scenario::RestartSame);
    run(devices, rates[0], burst, Scenario::RestartMoved);
}
