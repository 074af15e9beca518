//! Outbound registrations against a real upstream: Debian's `kamailio`, started by each test
//! on a loopback port from `uac_kamailio.cfg` (digest auth with in-memory passwords,
//! in-memory usrloc, a ctl socket for `kamcmd`). Kamailio is required: `.ci/run` installs
//! it (scripts/install-test-deps.sh); these tests fail, not skip, when it is missing.
//!
//! The UAC is driven through `uac::Manager` (what the registrar runs), with timers shortened
//! so that failures, retries and refreshes take a second or two. Every wait polls a condition
//! under a deadline.

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_crds::common::Transport;
use switchboard_crds::config::OutboundRegistration;
use switchboard_crds::config::{RegistrarConfig, CONFIG_FORMAT};
use switchboard_crds::registration::RegistrationPhase;
use switchboard_registrar::config::ConfigHandle;
use switchboard_registrar::uac::{
    follow_config, ClientSettings, ContactAddrs, Manager, Timing, UacIndex,
};

const CONFIG: &str = include_str!("uac_kamailio.cfg");
const IP: &str = "127.0.0.1";
/// Our (fictitious) registrar address put in the Contact.
const ADVERTISE: &str = "127.0.0.1:15999";

fn require(tool: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"] {
        let p = Path::new(dir).join(tool);
        if p.exists() {
            return p;
        }
    }
    panic!("{tool} is not installed: these tests need Debian's kamailio (scripts/install-test-deps.sh installs it)");
}

fn free_port() -> u16 {
    // A port free for both UDP and TCP.
    for _ in 0..50 {
        let udp = UdpSocket::bind((IP, 0)).expect("bind udp");
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind((IP, port)).is_ok() {
            return port;
        }
    }
    panic!("no free port");
}

struct Kamailio {
    dir: PathBuf,
    port: u16,
    config: PathBuf,
    child: Option<Child>,
}

struct KamOptions {
    algorithm: &'static str,
    min_expires: u32,
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

impl Kamailio {
    fn start(name: &str, opts: KamOptions) -> Kamailio {
        let kam = require("kamailio");
        let dir =
            std::env::temp_dir().join(format!("switchboard-uac-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        let users: String = opts
            .users
            .iter()
            .map(|(u, p)| format!("\tif ($au == \"{u}\") {{ $var(pw) = \"{p}\"; }}\n"))
            .collect();
        let cfg = CONFIG
            .replace("@IP@", IP)
            .replace("@PORT@", &port.to_string())
            .replace("@DIR@", dir.to_str().unwrap())
            .replace("@ALGORITHM@", opts.algorithm)
            .replace("@MIN_EXPIRES@", &opts.min_expires.to_string())
            .replace("@USERS@", &users);
        let config = dir.join("kamailio.cfg");
        std::fs::write(&config, cfg).unwrap();
        let check = Command::new(&kam)
            .arg("-c")
            .arg("-f")
            .arg(&config)
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "kamailio config check failed: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        let mut k = Kamailio {
            dir,
            port,
            config,
            child: None,
        };
        k.spawn();
        k
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("kamailio.log"))
            .unwrap();
        let child = Command::new(require("kamailio"))
            .arg("-f")
            .arg(&self.config)
            .args(["-DD", "-E", "-m", "64", "-M", "8", "-Y"])
            .arg(&self.dir)
            .arg("-w")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start kamailio");
        self.child = Some(child);
        let sock = UdpSocket::bind((IP, 0)).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let me = sock.local_addr().unwrap();
        let opts = format!(
            "OPTIONS sip:ping@{IP}:{p} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKping\r\nFrom: <sip:t@{IP}>;tag=1\r\nTo: <sip:ping@{IP}>\r\nCall-ID: ping@test\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            p = self.port
        );
        let ok = wait_until(Duration::from_secs(10), || {
            let _ = sock.send_to(opts.as_bytes(), (IP, self.port));
            let mut buf = [0u8; 2048];
            matches!(sock.recv_from(&mut buf), Ok((n, _)) if buf[..n].starts_with(b"SIP/2.0 200"))
        });
        assert!(
            ok,
            "kamailio did not answer OPTIONS on {IP}:{}; log:\n{}",
            self.port,
            self.log()
        );
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if child.try_wait().ok().flatten().is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("kamailio.log")).unwrap_or_default()
    }

    /// `ul.lookup location USER`: the bindings' output, or None when the AOR has none.
    fn lookup(&self, user: &str) -> Option<String> {
        let out = Command::new(require("kamcmd"))
            .arg("-s")
            .arg(format!("unix:{}", self.dir.join("ctl").display()))
            .args(["ul.lookup", "location", user])
            .output()
            .expect("kamcmd");
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success() && text.contains("Contact")).then_some(text)
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        self.stop();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("kamailio run directory kept: {}", self.dir.display());
        }
    }
}

fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

async fn wait_async(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn settings() -> ClientSettings {
    ClientSettings {
        timing: Timing {
            backoff_base: Duration::from_millis(200),
            backoff_max: Duration::from_secs(1),
            min_refresh: Duration::from_millis(500),
        },
        t1: Duration::from_millis(100),
        transaction_timeout: Duration::from_millis(1500),
        contacts: ContactAddrs {
            udp: Some(ADVERTISE.into()),
            tcp: Some(ADVERTISE.into()),
            tls: Some(ADVERTISE.into()),
        },
        ..ClientSettings::default()
    }
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
    let kam = Kamailio::start("udp", KamOptions::default());
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
    let kam = Kamailio::start("badpw", KamOptions::default());
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
    let mut kam = Kamailio::start("restart", KamOptions::default());
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

    kam.spawn();
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
    let kam = Kamailio::start(
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
    let ok = wait_async(Duration::from_secs(10), || {
        index
            .get("default/tcp")
            .and_then(|v| v.subscription)
            .as_deref()
            == Some("200 OK")
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
