//! Outbound registrations against a real upstream: Debian's `kamailio`, started by each test
//! (`common::kamailio`) on a loopback port from `uac_kamailio.cfg` (digest auth with in-memory
//! passwords, in-memory usrloc, a ctl socket for `kamcmd`). Kamailio is required: `.ci/run`
//! installs it (scripts/install-test-deps.sh); these tests fail, not skip, when it is missing.
//!
//! The UAC is driven through `uac::Manager` (what the registrar runs), with timers shortened
//! so that failures, retries and refreshes take a second or two. Every wait polls a condition
//! under a deadline.

mod common;

use common::kamailio::{Kamailio, IP};
use common::wait_async;
use std::sync::Arc;
use std::time::Duration;
use switchboard_crds::common::Transport;
use switchboard_crds::config::OutboundRegistration;
use switchboard_crds::config::{RegistrarConfig, CONFIG_FORMAT};
use switchboard_crds::registration::{RegistrationPhase, SubscriptionState};
use switchboard_registrar::config::ConfigHandle;
use switchboard_registrar::uac::{follow_config, ClientSettings, ContactAddrs, Manager, UacIndex};

const CONFIG: &str = include_str!("uac_kamailio.cfg");
/// Our (fictitious) registrar address put in the Contact.
const ADVERTISE: &str = "127.0.0.1:15999";

/// What a test changes in `uac_kamailio.cfg`.
struct KamOptions {
    /// `@ALGORITHM@`: the challenges' digest algorithm.
    algorithm: &'static str,
    /// `@MIN_EXPIRES@`: shorter requests get 423 Interval Too Brief.
    min_expires: u32,
    /// `@USERS@`: user names and passwords.
    users: &'static [(&'static str, &'static str)],
}

impl Default for KamOptions {
    fn default() -> Self {
        KamOptions {
            algorithm: "MD5",
            min_expires: 1,
            users: &[("trunk1", "secret1"), ("trunk2", "secret2")],
        }
    }
}

/// Kamailio from `uac_kamailio.cfg` with `opts`.
fn kamailio(name: &str, opts: KamOptions) -> Kamailio {
    Kamailio::start(
        &format!("uac-{name}"),
        CONFIG,
        opts.users,
        &[
            ("@ALGORITHM@", opts.algorithm),
            ("@MIN_EXPIRES@", &opts.min_expires.to_string()),
        ],
    )
}

fn settings() -> ClientSettings {
    common::uac_settings(
        Duration::from_millis(1500),
        ContactAddrs {
            udp: Some(ADVERTISE.into()),
            tcp: Some(ADVERTISE.into()),
            tls: Some(ADVERTISE.into()),
        },
    )
}

fn registration(
    id: &str,
    user: &str,
    password: &str,
    port: u16,
    transport: Transport,
    expires: u32,
) -> OutboundRegistration {
    OutboundRegistration {
        id: id.into(),
        aor: format!("sip:{user}@example.test"),
        username: user.into(),
        password: password.into(),
        host: IP.into(),
        port,
        transport,
        expires,
        ..Default::default()
    }
}

fn phase(index: &UacIndex, id: &str) -> Option<(RegistrationPhase, Option<u16>, String)> {
    index.get(id).map(|v| {
        (
            v.phase,
            v.last_status_code,
            v.last_reason.unwrap_or_default(),
        )
    })
}

async fn wait_phase(
    index: &UacIndex,
    id: &str,
    want: RegistrationPhase,
    limit: Duration,
) -> (RegistrationPhase, Option<u16>, String) {
    let ok = wait_async(limit, || phase(index, id).is_some_and(|p| p.0 == want)).await;
    let got = phase(index, id).expect("registration in index");
    assert!(ok, "{id}: wanted {want:?} within {limit:?}, have {got:?}");
    got
}

async fn wait_binding(
    kam: &Kamailio,
    user: &str,
    present: bool,
    limit: Duration,
) -> Option<String> {
    let ok = wait_async(limit, || kam.lookup(user).is_some() == present).await;
    assert!(
        ok,
        "binding of {user} present={} in kamailio, wanted {present}; log:\n{}",
        !present,
        kam.log()
    );
    kam.lookup(user)
}

/// Driven the way the registrar runs it: following the hot-swapped config.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_over_udp_and_unregisters_when_removed_from_the_config() {
    let kam = kamailio("udp", KamOptions::default());
    let index = UacIndex::default();
    let config = Arc::new(ConfigHandle::new());
    let reg = registration(
        "default/trunk1",
        "trunk1",
        "secret1",
        kam.port,
        Transport::Udp,
        600,
    );
    config.replace(RegistrarConfig {
        format: CONFIG_FORMAT,
        registrations: vec![reg],
        ..Default::default()
    });
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(follow_config(
        settings(),
        None,
        index.clone(),
        switchboard_registrar::cluster::Cluster::alone("test"),
        config.clone(),
        stopped,
    ));
    let (_, code, reason) = wait_phase(
        &index,
        "default/trunk1",
        RegistrationPhase::Successful,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!((code, reason.as_str()), (Some(200), "200 OK"));
    let binding = wait_binding(&kam, "trunk1", true, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(
        binding.contains(&format!("sip:trunk1@{ADVERTISE}")),
        "{binding}"
    );
    let view = index.get("default/trunk1").unwrap();
    assert!(view.expires_time.is_some() && view.last_attempt_time.is_some());
    assert_eq!(index.target_for_user("trunk1").unwrap().0, "default/trunk1");
    assert_eq!(index.to_json()["registrations"][0]["phase"], "Successful");

    // Removed from the config: Expires: 0, and the binding leaves kamailio.
    config.replace(RegistrarConfig {
        format: CONFIG_FORMAT,
        ..Default::default()
    });
    wait_binding(&kam, "trunk1", false, Duration::from_secs(5)).await;
    assert!(index.get("default/trunk1").is_none());
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_fails_with_401() {
    let kam = kamailio("badpw", KamOptions::default());
    let index = UacIndex::default();
    let mut m = Manager::new(settings(), None, index.clone());
    m.apply(&[registration(
        "default/bad",
        "trunk1",
        "not-the-password",
        kam.port,
        Transport::Udp,
        600,
    )]);
    let (_, code, reason) = wait_phase(
        &index,
        "default/bad",
        RegistrationPhase::Failed,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!((code, reason.as_str()), (Some(401), "401 Unauthorized"));
    assert!(kam.lookup("trunk1").is_none());
    // An unknown user is refused outright.
    m.apply(&[registration(
        "default/ghost",
        "ghost",
        "x",
        kam.port,
        Transport::Udp,
        600,
    )]);
    let (_, code, _) = wait_phase(
        &index,
        "default/ghost",
        RegistrationPhase::Failed,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(code, Some(403));
    m.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_down_times_out_and_recovers_by_itself() {
    let mut kam = kamailio("restart", KamOptions::default());
    let index = UacIndex::default();
    let mut m = Manager::new(settings(), None, index.clone());
    // 2 s granted: refreshed every second, so an outage shows quickly.
    m.apply(&[registration(
        "default/trunk2",
        "trunk2",
        "secret2",
        kam.port,
        Transport::Udp,
        2,
    )]);
    wait_phase(
        &index,
        "default/trunk2",
        RegistrationPhase::Successful,
        Duration::from_secs(10),
    )
    .await;

    kam.stop();
    let (_, code, reason) = wait_phase(
        &index,
        "default/trunk2",
        RegistrationPhase::Failed,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!((code, reason.as_str()), (Some(408), "408 timeout"));

    kam.restart();
    let (_, code, _) = wait_phase(
        &index,
        "default/trunk2",
        RegistrationPhase::Successful,
        Duration::from_secs(15),
    )
    .await;
    assert_eq!(code, Some(200));
    wait_binding(&kam, "trunk2", true, Duration::from_secs(5)).await;
    m.shutdown(Duration::from_secs(5)).await;
    wait_binding(&kam, "trunk2", false, Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_sha256_interval_too_brief_and_presence_subscription() {
    let kam = kamailio(
        "tcp",
        KamOptions {
            algorithm: "SHA-256",
            min_expires: 120,
            ..Default::default()
        },
    );
    let index = UacIndex::default();
    let mut m = Manager::new(settings(), None, index.clone());
    let mut reg = registration(
        "default/tcp",
        "trunk1",
        "secret1",
        kam.port,
        Transport::Tcp,
        60,
    );
    reg.subscribe = true;
    m.apply(&[reg]);
    let (_, code, _) = wait_phase(
        &index,
        "default/tcp",
        RegistrationPhase::Successful,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(code, Some(200));
    let binding = wait_binding(&kam, "trunk1", true, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(
        binding.contains(&format!("sip:trunk1@{ADVERTISE};transport=tcp")),
        "{binding}"
    );
    // 60 s asked, 423 with Min-Expires 120, registered for 120 s.
    let expires = index.get("default/tcp").unwrap().expires_time.unwrap();
    let expires: k8s_openapi::jiff::Timestamp = expires.parse().unwrap();
    let left = expires.as_second() - k8s_openapi::jiff::Timestamp::now().as_second();
    assert!((100..=121).contains(&left), "granted {left} s");
    // Both packages subscribed (this Kamailio answers SUBSCRIBE 200 statelessly).
    let ok = wait_async(Duration::from_secs(10), || {
        index
            .get("default/tcp")
            .and_then(|v| v.presence)
            .is_some_and(|p| {
                p.subscriptions.len() == 2
                    && p.subscriptions.iter().all(|s| {
                        s.state == SubscriptionState::Active && s.last_status_code == Some(200)
                    })
            })
    })
    .await;
    assert!(
        ok,
        "subscription: {:?}; log:\n{}",
        index.get("default/tcp"),
        kam.log()
    );
    m.shutdown(Duration::from_secs(5)).await;
    wait_binding(&kam, "trunk1", false, Duration::from_secs(5)).await;
}
