//! Several registrar replicas sharing one Redis location store (`--redis-url`), as processes:
//! Redis going away and coming back while phones register, and a rolling restart of every
//! replica while phones (sipp) keep re-registering.
//!
//! Needs `redis-server` and `sipp` (scripts/install-test-deps.sh installs both). Every test
//! starts its own redis-server on a free port in a temporary directory.

mod common;

use common::{
    demo_config, http_get, metric_sum, password, status_of, wait_until, wait_until_within,
    RedisServer, Replica, ReplicaSpec, SippLoop, UdpClient, DEMO_CONFIG,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Shared by every replica, so any of them (or a restarted one) accepts another's challenge.
const NONCE_KEY: &str = "5c2b7f0e9a4d41c8b6e3f1a27d90c4e1";

/// The store error counter every replica exposes.
const STORE_ERRORS: &str = "switchboard_location_store_errors_total";

/// The demo config (users 1001-1003, MD5) with a shared nonce key.
fn demo_with_nonce_key() -> String {
    let config = demo_config(Some("[MD5]"));
    assert!(DEMO_CONFIG.contains("hash: \"\"\n"));
    config.replacen(
        "hash: \"\"\n",
        &format!("hash: \"\"\nnonceKey: \"{NONCE_KEY}\"\n"),
        1,
    )
}

/// Replica specs named `r1`, `r2`, ... on 127.0.0.1, 127.0.0.2, ..., each with
/// `--redis-url` and a `--peer` for every sibling.
fn cluster_specs(n: usize, redis_url: &str, config: &str) -> Vec<ReplicaSpec> {
    let mut specs: Vec<ReplicaSpec> = (1..=n)
        .map(|i| ReplicaSpec::new(&format!("r{i}"), &format!("127.0.0.{i}")))
        .collect();
    let peers: Vec<String> = specs.iter().map(ReplicaSpec::peer_arg).collect();
    for (i, spec) in specs.iter_mut().enumerate() {
        spec.config = Some(config.to_string());
        spec.args = vec!["--redis-url".into(), redis_url.into()];
        for (j, peer) in peers.iter().enumerate() {
            if i != j {
                spec.args.extend(["--peer".into(), peer.clone()]);
            }
        }
    }
    specs
}

/// Fails if any process of any replica panicked.
fn assert_no_panic(replicas: &[&Replica]) {
    for r in replicas {
        let logs = r.all_logs();
        assert!(
            !logs.contains("panicked"),
            "{} panicked:\n{logs}",
            r.spec.name
        );
    }
}

/// The sum of the store error counters of `r`.
fn store_errors(r: &Replica) -> f64 {
    let (_, body) = r.registrar.get("/metrics").expect("HTTP reachable");
    metric_sum(&body, STORE_ERRORS)
}

/// One REGISTER with digest through `r` from a fresh socket; the final answer, if any.
fn try_register(r: &Replica, user: &str, call_id: &str) -> Option<String> {
    UdpClient::new(r.spec.sip_addr()).try_register(
        user,
        &password(user),
        call_id,
        "Expires: 600\r\n",
        Duration::from_secs(3),
    )
}

#[test]
fn redis_restart_registrations_continue() {
    let mut redis = RedisServer::start("restart");
    let specs = cluster_specs(2, &redis.url(), &demo_with_nonce_key());
    let mut r1 = Replica::start(specs[0].clone());
    let mut r2 = Replica::start(specs[1].clone());

    // Phones register through either replica and are seen by both.
    for (r, user) in [(&r1, "1001"), (&r2, "1002")] {
        let resp = try_register(r, user, &format!("before-{user}")).expect("an answer");
        assert_eq!(status_of(&resp), 200, "{resp}");
    }
    for r in [&r1, &r2] {
        r.registrar.wait_bindings("default/desk-1001", 1);
        r.registrar.wait_bindings("default/softphone-1002", 1);
    }
    assert_eq!(
        r1.registrar.device_bindings("default/softphone-1002")[0]["replica"],
        "r2"
    );
    let errors_before = store_errors(&r1) + store_errors(&r2);

    redis.kill();

    // While Redis is away, REGISTERs are refused with 500 (or go unanswered), never accepted.
    for r in [&r1, &r2] {
        let mut attempt = 0;
        let mut unanswered = 0;
        let start = Instant::now();
        loop {
            attempt += 1;
            match try_register(r, "1003", &format!("down-{}-{attempt}", r.spec.name)) {
                Some(resp) => {
                    assert_eq!(status_of(&resp), 500, "while Redis is down: {resp}");
                    assert!(resp.contains("Location Store Unavailable"), "{resp}");
                    break;
                }
                None => unanswered += 1,
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{}: no 500 within 30 s while Redis is down ({unanswered} REGISTERs unanswered)",
                r.spec.name
            );
        }
    }
    // The processes stay up, healthy, and count and log the failures.
    for r in [&mut r1, &mut r2] {
        assert!(r.running(), "{} exited:\n{}", r.spec.name, r.all_logs());
        assert_eq!(
            r.registrar.get("/healthz").map(|(s, _)| s),
            Some(200),
            "{}",
            r.spec.name
        );
    }
    wait_until("the store error counter to rise", || {
        (store_errors(&r1) + store_errors(&r2) > errors_before).then_some(())
    });
    wait_until("a log line about the store failure", || {
        [&r1, &r2]
            .iter()
            .any(|r| {
                r.all_logs().lines().any(|l| {
                    let l = l.to_ascii_lowercase();
                    (l.contains("warn") || l.contains("error")) && l.contains("location store")
                })
            })
            .then_some(())
    });

    // Redis back on the same port (empty): new registrations succeed again and are shared.
    redis.restart();
    for (r, user) in [(&r1, "1003"), (&r2, "1001")] {
        let mut attempt = 0;
        wait_until_within(
            &format!(
                "a REGISTER of {user} through {} to succeed again",
                r.spec.name
            ),
            Duration::from_secs(30),
            || {
                attempt += 1;
                let resp = try_register(r, user, &format!("after-{user}-{attempt}"))?;
                let code = status_of(&resp);
                assert!(code == 200 || code == 500, "{resp}");
                (code == 200).then_some(())
            },
        );
    }
    let b = r2.registrar.wait_bindings("default/lobby-1003", 1);
    assert_eq!(b[0]["replica"], "r1", "{b:?}");
    let b = r1.registrar.wait_bindings("default/desk-1001", 1);
    assert_eq!(b[0]["replica"], "r2", "{b:?}");
    assert!(r1.running() && r2.running());
    assert_no_panic(&[&r1, &r2]);
}

// ------------------------------------------------------------------------------------------
// Rolling restart.

const PHONES_PER_REPLICA: usize = 4;
/// Registrations per second of each replica's sipp: each of its phones every 2 s.
const RATE: u32 = 2;
/// The phones' Expires: a phone whose re-registrations all failed for this long loses its
/// binding, so the polls (which go on for longer than this after the first restart) see a
/// broken re-registration, not only a deleted binding.
const EXPIRES: u32 = 10;
/// sipp gives up on a registration after this long without an answer.
const RECV_TIMEOUT: Duration = Duration::from_secs(3);
const DOMAIN: &str = "scale.test";

/// sipp: one registration with digest per call, user and credentials from the injection file
/// (field0 = user, field2 = `[authentication username=U password=P]`: sipp 3.6 does not expand
/// fields nested in the keyword), Expires from `-key reg_expires`.
const SCENARIO: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="phone re-registering">
  <send retrans="500"><![CDATA[

REGISTER sip:[domain] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
Max-Forwards: 70
From: <sip:[field0]@[domain]>;tag=[pid]SIPpTag[call_number]
To: <sip:[field0]@[domain]>
Call-ID: [call_id]
CSeq: 1 REGISTER
Contact: <sip:[field0]@[local_ip]:[local_port];transport=[transport]>
Expires: [reg_expires]
User-Agent: sipp switchboard-tests
Content-Length: 0

  ]]></send>
  <recv response="401" auth="true"/>
  <send retrans="500"><![CDATA[

REGISTER sip:[domain] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
Max-Forwards: 70
From: <sip:[field0]@[domain]>;tag=[pid]SIPpTag[call_number]
To: <sip:[field0]@[domain]>
Call-ID: [call_id]
CSeq: 2 REGISTER
Contact: <sip:[field0]@[local_ip]:[local_port];transport=[transport]>
[field2]
Expires: [reg_expires]
User-Agent: sipp switchboard-tests
Content-Length: 0

  ]]></send>
  <recv response="200"/>
</scenario>
"#;

/// A phone: SIP user, password, device id.
struct Phone {
    user: String,
    password: String,
    device: String,
}

fn phones(n: usize) -> Vec<Phone> {
    (0..n)
        .map(|i| Phone {
            user: format!("phone{i:02}"),
            password: format!("pw{i:02}-rolling"),
            device: format!("scale/phone{i:02}"),
        })
        .collect()
}

/// A registrar config for `phones` in domain scale.test (MD5, UDP, one contact each,
/// Expires from 10 s), with the shared nonce key.
fn phones_config(phones: &[Phone]) -> String {
    use md5::Digest as _;
    let mut out = format!(
        "format: 1\nhash: \"\"\nnonceKey: \"{NONCE_KEY}\"\ndomains:\n  - domain: \"{DOMAIN}\"\n    \
         site: \"scale/phones\"\n    registration:\n      minExpires: 10\n      maxExpires: 3600\n      \
         defaultExpires: 60\n      maxContacts: 1\n      transports: [UDP]\n      \
         digestAlgorithms: [MD5]\n    devices:\n"
    );
    for p in phones {
        let a1 = format!("{}:{DOMAIN}:{}", p.user, p.password);
        out.push_str(&format!(
            "      - id: \"{}\"\n        sipUser: \"{}\"\n        ha1Md5: \"{}\"\n        \
             ha1Sha256: \"{}\"\n        assignment: Site\n",
            p.device,
            p.user,
            hex::encode(md5::Md5::digest(a1.as_bytes())),
            hex::encode(sha2::Sha256::digest(a1.as_bytes())),
        ));
    }
    out
}

/// sipp's injection file for `phones`.
fn injection(dir: &Path, name: &str, phones: &[Phone]) -> PathBuf {
    let mut text = String::from("SEQUENTIAL\n");
    for p in phones {
        text.push_str(&format!(
            "{u};{pw};[authentication username={u} password={pw}]\n",
            u = p.user,
            pw = p.password
        ));
    }
    let path = dir.join(format!("{name}.csv"));
    std::fs::write(&path, text).unwrap();
    path
}

/// `device -> (call_id, updatedAt, replica)` of the live bindings in a `/debug/bindings` body.
fn live_bindings(json: &serde_json::Value) -> HashMap<String, (String, u64, String)> {
    let mut out = HashMap::new();
    for d in json["devices"].as_array().into_iter().flatten() {
        for b in d["bindings"].as_array().into_iter().flatten() {
            if b["expiresIn"].as_u64().unwrap_or(0) > 0 {
                out.insert(
                    d["id"].as_str().unwrap_or_default().to_string(),
                    (
                        b["callId"].as_str().unwrap_or_default().to_string(),
                        b["updatedAt"].as_u64().unwrap_or(0),
                        b["replica"].as_str().unwrap_or_default().to_string(),
                    ),
                );
            }
        }
    }
    out
}

/// What the background poller saw.
#[derive(Default)]
struct PollLog {
    /// Polls answered by some replica.
    polls: u64,
    /// Polls per debug port that answered them.
    by_port: HashMap<u16, u64>,
    /// Every poll where a phone had no live binding, or no replica answered.
    violations: Vec<String>,
}

/// Polls `/debug/bindings` of the replicas in turn (skipping one that does not answer), every
/// 100 ms until `stop`, and records every phone without a live binding.
fn poll_bindings(
    ports: Vec<u16>,
    devices: Vec<String>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<PollLog> {
    std::thread::spawn(move || {
        let mut log = PollLog::default();
        let start = Instant::now();
        let mut attempt = 0;
        while !stop.load(Ordering::SeqCst) {
            // Round robin over the replicas, skipping one that does not answer (restarting).
            let first = attempt % ports.len();
            attempt += 1;
            let answer = (0..ports.len())
                .map(|i| ports[(first + i) % ports.len()])
                .find_map(|port| match http_get(port, "/debug/bindings") {
                    Some((200, body)) => Some((port, body)),
                    _ => None,
                });
            match answer {
                Some((port, body)) => {
                    log.polls += 1;
                    *log.by_port.entry(port).or_default() += 1;
                    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
                    let live = live_bindings(&json);
                    let missing: Vec<&String> =
                        devices.iter().filter(|d| !live.contains_key(*d)).collect();
                    if !missing.is_empty() {
                        log.violations.push(format!(
                            "at {:.1}s, debug port {port}: no live binding for {missing:?}",
                            start.elapsed().as_secs_f64()
                        ));
                    }
                }
                None => log.violations.push(format!(
                    "at {:.1}s: no replica answered /debug/bindings",
                    start.elapsed().as_secs_f64()
                )),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        log
    })
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn rolling_restart_loses_no_registration() {
    let redis = RedisServer::start("rolling");
    let all = phones(3 * PHONES_PER_REPLICA);
    let specs = cluster_specs(3, &redis.url(), &phones_config(&all));
    let mut replicas: Vec<Replica> = specs.into_iter().map(Replica::start).collect();
    let slices: Vec<&[Phone]> = all.chunks(PHONES_PER_REPLICA).collect();

    // One sipp per replica, each re-registering its own phones in a loop.
    let work = common::temp_dir("rolling");
    let scenario = work.join("register_loop.xml");
    std::fs::write(&scenario, SCENARIO).unwrap();
    let expires = EXPIRES.to_string();
    let recv_timeout = RECV_TIMEOUT.as_millis().to_string();
    let mut sipps: Vec<SippLoop> = replicas
        .iter()
        .zip(&slices)
        .map(|(r, phones)| {
            let inf = injection(&work, &r.spec.name, phones);
            SippLoop::start(
                &r.spec.name,
                r.spec.sip_addr(),
                &scenario,
                &inf,
                RATE,
                &[
                    "-key",
                    "domain",
                    DOMAIN,
                    "-key",
                    "reg_expires",
                    &expires,
                    "-recv_timeout",
                    &recv_timeout,
                ],
            )
        })
        .collect();

    // Every phone registered (seen from replica 1, whichever replica it went through).
    let devices: Vec<String> = all.iter().map(|p| p.device.clone()).collect();
    wait_until("every phone to have a live binding", || {
        let live = live_bindings(&replicas[0].registrar.bindings());
        devices.iter().all(|d| live.contains_key(d)).then_some(())
    });
    for (k, s) in sipps.iter_mut().enumerate() {
        assert!(s.running(), "sipp {k} exited:\n{}", s.report());
    }

    let stop = Arc::new(AtomicBool::new(false));
    let ports: Vec<u16> = replicas.iter().map(|r| r.spec.debug_port).collect();
    let poller = poll_bindings(ports.clone(), devices.clone(), stop.clone());

    let mut downtime = Vec::new();
    let started = Instant::now();
    for k in 0..replicas.len() {
        let other = (k + 1) % replicas.len();
        let t0 = Instant::now();
        let status = replicas[k].stop();
        assert!(
            status.success(),
            "{} exited with {status} on SIGTERM:\n{}",
            replicas[k].spec.name,
            replicas[k].all_logs()
        );
        // The old process is gone: any later change of its phones' bindings went through the
        // new one (each phone only talks to its replica).
        let before = live_bindings(&replicas[other].registrar.bindings());
        let spawned_at = unix_now();
        replicas[k].start_again();
        downtime.push(t0.elapsed());
        let name = replicas[k].spec.name.clone();
        wait_until_within(
            &format!("every phone of {name} to re-register through the restarted {name}"),
            Duration::from_secs(30),
            || {
                let live = live_bindings(&replicas[other].registrar.bindings());
                slices[k]
                    .iter()
                    .all(|p| {
                        let (Some(old), Some(new)) = (before.get(&p.device), live.get(&p.device))
                        else {
                            return false;
                        };
                        new.0 != old.0 && new.1 >= spawned_at && new.2 == name
                    })
                    .then_some(())
            },
        );
    }
    // Keep watching until the bindings written before the first restart have lapsed: from
    // then on only re-registrations (through the restarted replicas) keep the phones bound.
    let watch = Duration::from_secs(u64::from(EXPIRES) + 2);
    while started.elapsed() < watch {
        std::thread::sleep(Duration::from_millis(100));
    }
    let elapsed = started.elapsed();

    stop.store(true, Ordering::SeqCst);
    let polls = poller.join().expect("the poller thread");
    let counts: Vec<_> = sipps
        .iter_mut()
        .map(|s| s.finish(RECV_TIMEOUT + Duration::from_secs(10)))
        .collect();

    assert!(
        polls.violations.is_empty(),
        "phones lost their binding during the rolling restart ({} of {} polls):\n{}",
        polls.violations.len(),
        polls.polls,
        polls.violations.join("\n")
    );
    assert!(
        polls.polls >= 10 && polls.by_port.len() == ports.len(),
        "too few polls to mean anything: {} over ports {:?}",
        polls.polls,
        polls.by_port
    );
    // sipp's failures are the registrations sent to a replica while it was down (or answered
    // after sipp gave up): at most RATE per second of downtime plus the receive timeout.
    for (k, c) in counts.iter().enumerate() {
        let window = downtime[k] + RECV_TIMEOUT + Duration::from_secs(2);
        let bound = (f64::from(RATE) * window.as_secs_f64()).ceil() as u64 + 2;
        assert!(
            c.failed <= bound,
            "sipp of {}: {c:?}, more failures than registrations sent while it was down \
             ({:?} down, bound {bound}):\n{}",
            replicas[k].spec.name,
            downtime[k],
            sipps[k].report()
        );
        let expected = (f64::from(RATE) * elapsed.as_secs_f64() / 2.0) as u64;
        assert!(
            c.successful >= expected,
            "sipp of {}: {c:?}, fewer than {expected} successful registrations in {elapsed:?}:\n{}",
            replicas[k].spec.name,
            sipps[k].report()
        );
    }
    let refs: Vec<&Replica> = replicas.iter().collect();
    assert_no_panic(&refs);
}
