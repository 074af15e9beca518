//! A call arriving through an outbound registration, end to end with a real upstream: Debian's
//! `kamailio` (started on loopback from `uac_inbound_kamailio.cfg`: digest users in memory,
//! in-memory usrloc, INVITEs to a registered AOR looked up and relayed statefully) is the
//! upstream of a registration whose `target` is extension 1002 of the registrar's site. The
//! phone of 1002 is a sipp UAS that registers to the registrar with a real REGISTER; a sipp
//! UAC calls the registration's AOR through Kamailio; Kamailio relays the INVITE to the
//! registered Contact (the registrar), which routes it to the phone.
//!
//! Kamailio and sipp are required (`.ci/run` installs them); the test fails, not skips,
//! without them. Every wait polls a condition under a deadline.

mod common;

use common::kamailio::Kamailio;
use common::sipp::{
    answered, counter, first_line, once_within, register_phone, requests, scenario, scenario_with,
    sipp_args, spawn_sipp, user_args, wait_exit, wait_listening,
};
use common::{free_port, run_tool, temp_dir, wait_until, Options, Registrar, DEADLINE};
use std::path::Path;
use std::time::{Duration, Instant};
use switchboard_crds::config::ha1;

const KAM_CONFIG: &str = include_str!("uac_inbound_kamailio.cfg");
const DOMAIN: &str = "switchboard.local";
const IP: &str = "127.0.0.1";

/// Kamailio from `uac_inbound_kamailio.cfg`, trunk1 its one user.
fn kamailio() -> Kamailio {
    Kamailio::start("inbound", KAM_CONFIG, &[("trunk1", "secret1")], &[])
}

/// sipp's arguments for one call (within 30 s) of the scenario at `path` against `remote`
/// from [`IP`]`:port` over UDP.
fn base_args(remote: &str, path: &Path, port: u16) -> Vec<String> {
    let mut args = sipp_args(remote, path, IP, port, "u1");
    args.extend(once_within(30));
    args
}

#[test]
fn invite_from_kamailio_to_the_registered_contact_reaches_the_target_phone() {
    let kam = kamailio();

    // The site: extension 1002 (the phone) and a registration to Kamailio targeting it.
    let (md5, sha) = ha1("1002", DOMAIN, "pw-1002");
    let config = format!(
        "format: 1\nhash: \"\"\ndomains:\n  - domain: {DOMAIN}\n    site: default/hq\n    extensions: \"1000-1999\"\n    registration:\n      minExpires: 60\n      maxExpires: 3600\n      defaultExpires: 600\n      transports: [UDP]\n      digestAlgorithms: [MD5]\n    devices:\n      - id: default/desk-1002\n        sipUser: \"1002\"\n        ha1Md5: {md5}\n        ha1Sha256: {sha}\n        assignment: Site\n        extension: \"1002\"\nregistrations:\n  - id: default/kamailio-trunk1\n    aor: sip:trunk1@example.test\n    username: trunk1\n    password: secret1\n    host: {IP}\n    port: {}\n    transport: UDP\n    expires: 300\n    target:\n      site: hq\n      extension: \"1002\"\n",
        kam.port
    );
    let r = Registrar::start(
        "uac-inbound",
        Options {
            config: Some(&config),
            ..Default::default()
        },
    );

    // The phone registers to the registrar (digest) from the port it then answers on.
    let phone_port = free_port();
    let phone_dir = temp_dir("phone-1002");
    register_phone(
        &format!("{IP}:{}", r.sip_port),
        "1002",
        DOMAIN,
        "pw-1002",
        (IP, phone_port),
        &phone_dir,
        30,
    );
    let bindings = r.wait_bindings("default/desk-1002", 1);
    let phone_contact = format!("sip:1002@{IP}:{phone_port}");
    assert!(
        bindings[0]["contact"]
            .as_str()
            .is_some_and(|c| c.starts_with(&phone_contact)),
        "{bindings:?}"
    );

    // The registration is Successful upstream, and Kamailio holds its binding: the registrar.
    let view = r.wait_registration_successful(
        "the registration to Kamailio to succeed",
        "default/kamailio-trunk1",
    );
    assert_eq!(view["lastStatusCode"], 200, "{view}");
    let binding = wait_until("kamailio to hold the binding of trunk1", || {
        kam.lookup("trunk1")
    });
    assert!(
        binding.contains(&format!("sip:trunk1@{IP}:{}", r.sip_port)),
        "{binding}"
    );

    // The phone answers one call.
    let uas_path = scenario_with(&phone_dir, "proxy_uas.xml", &[("ANSWER_DELAY", "0")]);
    let mut uas = spawn_sipp(
        &base_args(&format!("{IP}:9"), &uas_path, phone_port),
        &phone_dir,
    );
    wait_listening("the phone's sipp UAS to listen", phone_port, false);

    // A caller sends the INVITE for the AOR to Kamailio, which relays it to the registrar.
    let caller_dir = temp_dir("kamailio-caller");
    let mut args = base_args(
        &format!("{IP}:{}", kam.port),
        &scenario("proxy_uac_noauth.xml"),
        free_port(),
    );
    args.extend(user_args("caller", "example.test", None));
    args.extend(["-s", "trunk1"].map(String::from));
    let out = run_tool("sipp", &args, &caller_dir, Duration::from_secs(60));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let context = || {
        format!(
            "{stdout}\ncaller:\n{}\nphone:\n{}\nregistrar:\n{}\nkamailio:\n{}",
            common::sipp_logs(&caller_dir),
            common::sipp_logs(&phone_dir),
            r.logs(),
            kam.log()
        )
    };
    assert!(
        out.status.success()
            && counter(&stdout, "Successful call") == Some(1)
            && counter(&stdout, "Failed call") == Some(0),
        "the call through kamailio failed ({}):\n{}",
        out.status,
        context()
    );

    // The phone's UAS got the INVITE at its Contact and completed the call (200, ACK, BYE).
    let Some(status) = wait_exit(&mut uas, DEADLINE) else {
        panic!("the phone's sipp did not finish:\n{}", context());
    };
    assert!(
        status.success(),
        "the phone's scenario failed ({status}):\n{}",
        context()
    );
    let callee = common::sipp_received(&phone_dir);
    let invites = requests(&callee, "INVITE");
    assert_eq!(invites.len(), 1, "{callee:?}");
    assert!(
        first_line(invites[0]).starts_with(&format!("INVITE {phone_contact}")),
        "the INVITE's Request-URI is the phone's Contact: {}",
        first_line(invites[0])
    );
    assert_eq!(requests(&callee, "ACK").len(), 1, "{callee:?}");
    assert_eq!(requests(&callee, "BYE").len(), 1, "{callee:?}");
    let caller = common::sipp_received(&caller_dir);
    assert!(answered(&caller), "{caller:?}");
    // Kamailio relayed it from its binding of trunk1 (the registrar's Contact).
    assert!(
        kam.log().contains("routed to the binding of trunk1"),
        "{}",
        kam.log()
    );
}

/// The Contacts Kamailio holds for `user` (`Address:` lines of `ul.lookup`).
fn upstream_contacts(kam: &Kamailio, user: &str) -> Vec<String> {
    kam.lookup(user)
        .map(|text| {
            text.lines()
                .filter_map(|l| l.trim().strip_prefix("Address:"))
                .map(|a| a.trim().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// `/debug/registrations` entry `id` of a replica, when its phase is `phase`.
fn registration_in_phase(r: &Registrar, id: &str, phase: &str) -> Option<serde_json::Value> {
    let (_, body) = r.debug_get("/debug/registrations")?;
    let doc: serde_json::Value = serde_json::from_str(&body).ok()?;
    doc["registrations"]
        .as_array()?
        .iter()
        .find(|v| v["id"] == id && v["phase"] == phase)
        .cloned()
}

#[test]
fn a_killed_replicas_registration_is_taken_over_and_kamailio_never_holds_two() {
    const ID: &str = "default/kamailio-trunk1";
    let kam = kamailio();
    let redis = common::RedisServer::start("uac-failover");
    let config = format!(
        "format: 1\nhash: \"\"\nnonceKey: \"00112233445566778899aabbccddeeff\"\ndomains: []\nregistrations:\n  - id: {ID}\n    aor: sip:trunk1@example.test\n    username: trunk1\n    password: secret1\n    host: {IP}\n    port: {}\n    transport: UDP\n    expires: 300\n",
        kam.port
    );
    let mut specs = [
        common::ReplicaSpec::new("failover-r1", IP),
        common::ReplicaSpec::new("failover-r2", IP),
    ];
    let peers: Vec<String> = specs.iter().map(|s| s.peer_arg()).collect();
    for spec in &mut specs {
        spec.config = Some(config.clone());
        spec.args = vec!["--redis-url".into(), redis.url()];
        for p in &peers {
            spec.args.extend(["--peer".into(), p.clone()]);
        }
    }
    let replicas: Vec<common::Replica> = specs.into_iter().map(common::Replica::start).collect();

    // Both agree on the owner once each sees the other.
    let owners: Vec<String> = replicas
        .iter()
        .map(|r| {
            wait_until("the cluster to settle with both replicas", || {
                let (_, body) = r.registrar.debug_get("/debug/cluster")?;
                let doc: serde_json::Value = serde_json::from_str(&body).ok()?;
                (doc["settled"] == true && doc["live"].as_array()?.len() == 2)
                    .then(|| doc["owners"][ID].as_str().map(str::to_string))
                    .flatten()
            })
        })
        .collect();
    assert_eq!(owners[0], owners[1]);
    let (owner, survivor) = if owners[0] == replicas[0].spec.name {
        (&replicas[0], &replicas[1])
    } else {
        (&replicas[1], &replicas[0])
    };
    let contact_of = |r: &common::Replica| format!("sip:trunk1@{IP}:{}", r.spec.sip_port);
    wait_until("the owner to register", || {
        registration_in_phase(&owner.registrar, ID, "Successful")
    });
    assert!(
        registration_in_phase(&survivor.registrar, ID, "Successful").is_none(),
        "only the owner registers"
    );
    // (While the replicas were starting, the first one up may have registered alone before the
    // other became the owner; the owner's first REGISTER removed that Contact.)
    wait_until("kamailio to hold the owner's Contact alone", || {
        (upstream_contacts(&kam, "trunk1") == vec![contact_of(owner)]).then_some(())
    });

    // Kamailio's bindings are watched throughout the takeover.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (samples, most) = std::thread::scope(|scope| {
        let watcher = scope.spawn(|| {
            let (mut samples, mut most) = (0u32, 0usize);
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let c = upstream_contacts(&kam, "trunk1");
                samples += 1;
                most = most.max(c.len());
                assert!(c.len() <= 1, "kamailio holds two registrations: {c:?}");
            }
            (samples, most)
        });
        owner.registrar.signal("KILL");
        let killed = Instant::now();
        let taken = wait_until("the survivor to take the registration over", || {
            registration_in_phase(&survivor.registrar, ID, "Successful")
        });
        eprintln!("taken over in {:?}", killed.elapsed());
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "Successful again after {:?}",
            killed.elapsed()
        );
        assert_eq!(taken["contact"], contact_of(survivor), "{taken}");
        wait_until("kamailio to hold the survivor's Contact alone", || {
            (upstream_contacts(&kam, "trunk1") == vec![contact_of(survivor)]).then_some(())
        });
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        watcher.join().unwrap()
    });
    assert!(
        samples > 5 && most == 1,
        "{samples} samples, at most {most}"
    );
    assert!(
        survivor
            .registrar
            .logs()
            .contains("cluster membership changed"),
        "{}",
        survivor.registrar.logs()
    );
}
