//! Latencies of the whole loop on a real control plane (release binaries of the operator and
//! the registrar under the chart's ServiceAccounts, kube-apiserver and etcd on this machine):
//!
//! 1. apply → first successful REGISTER, over 50 devices one after another: with generated
//!    credentials (the client waits for the Secret the operator writes, as an administrator
//!    would) and with a referenced Secret applied beside the device;
//! 2. the 200 OK → `status.registration` visible through the API (a watch);
//! 3. 1 000 phones registering at once (sipp): time until every device shows `Registered`,
//!    the API requests that took and the API server's latency for them meanwhile.
//!
//! `cargo build --release --bins && cargo bench -p switchboard-tests --bench controlplane`
//! (`DEVICES=50 PHONES=1000` by default). Needs Go once for the control plane, and sipp.

use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use kube::runtime::{watcher, WatchStreamExt as _};
use kube::Client;
use serde_json::json;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchboard_crds::device::RegistrationState;
use switchboard_crds::SipDevice;
use switchboard_testkit::controlplane::ControlPlane;
use switchboard_testkit::sip::{authorization, header_values, register_request, status_of};
use switchboard_testkit::{http_get, metric_sum, repo_root, temp_dir};
use switchboard_tests::installation::{ensure_namespace, Installation};
use tokio::net::UdpSocket;

/// The 1 000 phones' domain: the one bench/register/register_auth.xml names.
const BURST_DOMAIN: &str = "bench.test";
/// The latency devices' domain (a Site's domain is unique across namespaces).
const LATENCY_DOMAIN: &str = "latency.bench.test";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// When each device was first seen `Registered` through a watch on its namespace.
#[derive(Clone, Default)]
struct SeenRegistered(Arc<Mutex<HashMap<String, Instant>>>);

impl SeenRegistered {
    fn watch(&self, client: Client, namespace: &str) {
        let api: Api<SipDevice> = Api::namespaced(client, namespace);
        let seen = self.clone();
        tokio::spawn(async move {
            let mut events = watcher::watcher(api, watcher::Config::default())
                .applied_objects()
                .boxed();
            while let Ok(Some(d)) = events.try_next().await {
                let registered = d
                    .status
                    .as_ref()
                    .and_then(|s| s.registration.as_ref())
                    .is_some_and(|r| r.state == RegistrationState::Registered);
                if registered {
                    let name = d.metadata.name.clone().unwrap_or_default();
                    seen.0
                        .lock()
                        .unwrap()
                        .entry(name)
                        .or_insert_with(Instant::now);
                }
            }
        });
    }

    fn get(&self, name: &str) -> Option<Instant> {
        self.0.lock().unwrap().get(name).copied()
    }

    fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

fn device(name: &str, i: usize, secret: Option<&str>) -> SipDevice {
    let mut spec = json!({
        "macAddress": format!("02:00:00:{:02x}:{:02x}:{:02x}", (i >> 16) & 255, (i >> 8) & 255, i & 255),
        "sipUser": name,
        "assignment": {"site": {"site": "hq", "extension": format!("{}", 10000 + i)}},
    });
    if let Some(s) = secret {
        spec["credentials"] = json!({"secretRef": {"name": s}});
    }
    serde_json::from_value(json!({
        "apiVersion": "sip.switchboard.dev/v1alpha1", "kind": "SipDevice",
        "metadata": {"name": name}, "spec": spec,
    }))
    .expect("a SipDevice")
}

fn secret(name: &str, password: &str) -> Secret {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "labels": {"sip.switchboard.dev/credentials": "true"}},
        "stringData": {"password": password},
    }))
    .expect("a Secret")
}

/// REGISTER → 401 → REGISTER with digest until a 200 comes back; the time of that 200.
async fn register_until_ok(
    target: SocketAddr,
    domain: &str,
    user: &str,
    password: &str,
) -> Instant {
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("a UDP socket");
    let local = sock.local_addr().expect("local address").to_string();
    for attempt in 0u32.. {
        let call_id = format!("bench-{user}-{attempt}");
        let first = register_request(
            domain,
            "UDP",
            &local,
            user,
            1,
            &call_id,
            "Expires: 3600\r\n",
        );
        let Some(challenge) = exchange(&sock, target, &first).await else {
            continue;
        };
        if let Some(www) = header_values(&challenge, "WWW-Authenticate").first() {
            let auth = authorization(www, "REGISTER", user, password, &format!("sip:{domain}"), 1);
            let second = register_request(
                domain,
                "UDP",
                &local,
                user,
                2,
                &call_id,
                &format!("Expires: 3600\r\n{auth}"),
            );
            if exchange(&sock, target, &second)
                .await
                .is_some_and(|r| status_of(&r) == 200)
            {
                return Instant::now();
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    unreachable!()
}

async fn exchange(sock: &UdpSocket, target: SocketAddr, msg: &str) -> Option<String> {
    sock.send_to(msg.as_bytes(), target).await.ok()?;
    let mut buf = vec![0u8; 65536];
    let (n, _) = tokio::time::timeout(Duration::from_millis(500), sock.recv_from(&mut buf))
        .await
        .ok()?
        .ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// The SIP user the operator gave a device (`status.sipUri`), once it has.
async fn sip_user(api: &Api<SipDevice>, name: &str) -> String {
    loop {
        if let Ok(d) = api.get(name).await {
            if let Some(uri) = d.status.and_then(|s| s.sip_uri) {
                let user = uri
                    .trim_start_matches("sip:")
                    .split('@')
                    .next()
                    .unwrap_or("");
                return user.to_string();
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A generated Secret's password, once the operator has written it.
async fn generated_password(api: &Api<Secret>, name: &str) -> String {
    loop {
        if let Ok(s) = api.get(&format!("{name}-sip-credentials")).await {
            if let Some(p) = s.data.and_then(|d| d.get("password").cloned()) {
                return String::from_utf8(p.0).expect("UTF-8");
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

struct Sample {
    apply_to_register: Duration,
    ok_to_visible: Duration,
}

/// One device applied and registered; `referenced`: its Secret applied beside it.
async fn one_device(
    client: &Client,
    ns: &str,
    target: SocketAddr,
    seen: &SeenRegistered,
    i: usize,
    referenced: bool,
) -> Sample {
    let devices: Api<SipDevice> = Api::namespaced(client.clone(), ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let name = format!("{}{i}", if referenced { "ref" } else { "gen" });
    let start = Instant::now();
    let password = if referenced {
        let password = format!("pw-{name}-0123456789");
        secrets
            .create(&PostParams::default(), &secret(&name, &password))
            .await
            .expect("create Secret");
        devices
            .create(&PostParams::default(), &device(&name, i, Some(&name)))
            .await
            .expect("create device");
        password
    } else {
        devices
            .create(&PostParams::default(), &device(&name, i, None))
            .await
            .expect("create device");
        generated_password(&secrets, &name).await
    };
    let user = sip_user(&devices, &name).await;
    let ok = register_until_ok(target, LATENCY_DOMAIN, &user, &password).await;
    let visible = loop {
        if let Some(t) = seen.get(&name) {
            break t;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    Sample {
        apply_to_register: ok - start,
        ok_to_visible: visible.saturating_duration_since(ok),
    }
}

fn percentile(values: &mut [Duration], p: f64) -> Duration {
    values.sort();
    let i = ((values.len() as f64 - 1.0) * p).round() as usize;
    values[i]
}

fn report(what: &str, samples: &[Sample]) {
    let mut a: Vec<Duration> = samples.iter().map(|s| s.apply_to_register).collect();
    let mut b: Vec<Duration> = samples.iter().map(|s| s.ok_to_visible).collect();
    println!(
        "{what}: apply → first 200 OK p50 {:?} p99 {:?} max {:?}; 200 OK → Registered visible p50 {:?} p99 {:?} max {:?} ({} devices)",
        percentile(&mut a, 0.5), percentile(&mut a, 0.99), a.last().unwrap(),
        percentile(&mut b, 0.5), percentile(&mut b, 0.99), b.last().unwrap(), samples.len()
    );
}

fn site(ns: &str, domain: &str) -> String {
    format!("apiVersion: sip.switchboard.dev/v1alpha1\nkind: Site\nmetadata:\n  name: hq\n  namespace: {ns}\nspec:\n  domain: {domain}\n  extensions: \"10000-19999\"\n")
}

async fn latencies(cp: &ControlPlane, client: &Client, target: SocketAddr, count: usize) {
    let ns = "bench-latency";
    ensure_namespace(cp, ns);
    cp.kubectl_ok(&["apply", "-f", "-"], Some(&site(ns, LATENCY_DOMAIN)));
    let seen = SeenRegistered::default();
    seen.watch(client.clone(), ns);
    for referenced in [false, true] {
        let mut samples = Vec::new();
        for i in 0..count {
            samples.push(
                one_device(
                    client,
                    ns,
                    target,
                    &seen,
                    i + if referenced { count } else { 0 },
                    referenced,
                )
                .await,
            );
        }
        report(
            if referenced {
                "referenced Secret"
            } else {
                "generated credentials"
            },
            &samples,
        );
    }
}

/// The API server's own counters: requests and latency for the registrar's status writes.
fn apiserver_metrics(cp: &ControlPlane) -> String {
    cp.kubectl_ok(&["get", "--raw", "/metrics"], None)
}

fn status_requests(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("apiserver_request_total{")
                && l.contains("resource=\"sipdevices\"")
                && l.contains("subresource=\"status\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Cumulative buckets (le → count) of the API server's latency for SipDevice status writes.
fn latency_buckets(metrics: &str) -> Vec<(f64, f64)> {
    let mut buckets: HashMap<String, f64> = HashMap::new();
    for l in metrics.lines().filter(|l| {
        l.starts_with("apiserver_request_duration_seconds_bucket{")
            && l.contains("resource=\"sipdevices\"")
            && l.contains("subresource=\"status\"")
    }) {
        let le = l
            .split("le=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or("")
            .to_string();
        let v: f64 = l
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        *buckets.entry(le).or_default() += v;
    }
    let mut out: Vec<(f64, f64)> = buckets
        .into_iter()
        .map(|(le, v)| (le.parse().unwrap_or(f64::INFINITY), v))
        .collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// The bucket bound under which `p` of the requests between `before` and `after` fell.
fn bucket_quantile(before: &[(f64, f64)], after: &[(f64, f64)], p: f64) -> f64 {
    let delta: Vec<(f64, f64)> = after
        .iter()
        .map(|(le, v)| {
            (
                *le,
                v - before.iter().find(|b| b.0 == *le).map_or(0.0, |b| b.1),
            )
        })
        .collect();
    let total = delta.last().map_or(0.0, |d| d.1);
    delta
        .iter()
        .find(|(_, c)| *c >= total * p)
        .map_or(f64::NAN, |d| d.0)
}

async fn burst(cp: &ControlPlane, client: &Client, inst: &Installation, phones: usize) {
    let ns = "bench-burst";
    ensure_namespace(cp, ns);
    cp.kubectl_ok(&["apply", "-f", "-"], Some(&site(ns, BURST_DOMAIN)));
    let devices: Api<SipDevice> = Api::namespaced(client.clone(), ns);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let password = "burst-password-0123456789";
    futures::stream::iter(0..phones)
        .map(|i| {
            let (devices, secrets) = (devices.clone(), secrets.clone());
            async move {
                let name = format!("phone{i}");
                secrets
                    .create(&PostParams::default(), &secret(&name, password))
                    .await
                    .expect("Secret");
                devices
                    .create(&PostParams::default(), &device(&name, i, Some(&name)))
                    .await
                    .expect("device");
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    let mut users = String::new();
    for i in 0..phones {
        let user = sip_user(&devices, &format!("phone{i}")).await;
        users +=
            &format!("{user};{password};[authentication username={user} password={password}]\n");
    }
    while configured_devices(inst) < phones as f64 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seen = SeenRegistered::default();
    seen.watch(client.clone(), ns);
    let metrics_before = apiserver_metrics(cp);
    let start = Instant::now();
    let sipp = run_sipp(inst.sip_addr(), &users, phones);
    while seen.count() < phones {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "only {} of {phones} shown Registered after 120 s",
            seen.count()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let all = start.elapsed();
    let metrics_after = apiserver_metrics(cp);
    let requests = status_requests(&metrics_after) - status_requests(&metrics_before);
    let (b, a) = (
        latency_buckets(&metrics_before),
        latency_buckets(&metrics_after),
    );
    println!(
        "{phones} phones at once: sipp {}; all shown Registered after {all:?}; {requests} status requests to the API server; its latency for them p50 ≤ {} s, p99 ≤ {} s",
        sipp.await.expect("sipp task"), bucket_quantile(&b, &a, 0.5), bucket_quantile(&b, &a, 0.99)
    );
}

fn configured_devices(inst: &Installation) -> f64 {
    http_get(inst.registrar_http, "/metrics").map_or(0.0, |(_, m)| metric_sum(&m, "sip_devices"))
}

/// sipp registering every user of `users` once, as fast as it can start them.
fn run_sipp(target: SocketAddr, users: &str, phones: usize) -> tokio::task::JoinHandle<String> {
    let dir = temp_dir("bench-sipp");
    std::fs::write(dir.join("users.csv"), format!("SEQUENTIAL\n{users}")).expect("users.csv");
    let scenario = repo_root().join("bench/register/register_auth.xml");
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new("sipp")
            .current_dir(&dir)
            .arg(target.to_string())
            .arg("-sf")
            .arg(scenario)
            .args(["-inf", "users.csv", "-i", "127.0.0.1"])
            .args([
                "-r",
                &phones.to_string(),
                "-m",
                &phones.to_string(),
                "-timeout",
                "60s",
                "-nostdin",
            ])
            .output()
            .expect("sipp must be installed");
        format!("exit {}", out.status)
    })
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` and `cargo test --benches` probe with it.
    }
    let cp = ControlPlane::shared().expect("the benchmark needs the control plane (Go, once)");
    let inst = Installation::start_with(cp, &["--auth-failure-limit", "1000000"]);
    let config = kube::config::Kubeconfig::read_from(&cp.kubeconfig).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(config, &Default::default())
        .await
        .expect("client config");
    let client = Client::try_from(config).expect("client");
    latencies(cp, &client, inst.sip_addr(), env_usize("DEVICES", 50)).await;
    burst(cp, &client, &inst, env_usize("PHONES", 1000)).await;
}
