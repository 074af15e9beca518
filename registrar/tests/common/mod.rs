//! Shared harness of the registrar's integration tests: starts the built binary on loopback with
//! free ports and a temporary directory, waits for `/readyz` with a deadline, reads `/metrics`
//! on its HTTP port and `/debug/bindings` on its debug port, runs real SIP peers (sipp,
//! baresip) against it.
//!
//! The peers must be installed (`.ci/run` installs them); a missing one fails the test.

#![allow(dead_code)]

pub mod bindings;
pub mod sipp;
pub mod torture;

// Each test binary uses some of these.
#[allow(unused_imports)]
pub use switchboard_testkit::kamailio;
#[allow(unused_imports)]
pub use switchboard_testkit::{
    free_port, free_port_on, http_get, metric_sum, temp_dir, wait_until, wait_until_within,
    DEADLINE,
};

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_switchboard-registrar");
/// The standalone demo config's domain and passwords.
pub const DOMAIN: &str = "switchboard.local";

/// The demo config (`examples/registrar/standalone.yaml`, the embedded one) as text.
pub const DEMO_CONFIG: &str = include_str!("../../../examples/registrar/standalone.yaml");

/// The demo config with its domain's `digestAlgorithms` set to `algorithms` (`"[MD5]"`), or
/// left out (`None`: the default, MD5 alone).
pub fn demo_config(algorithms: Option<&str>) -> String {
    const LINE: &str = "      digestAlgorithms: [MD5]\n";
    assert!(
        DEMO_CONFIG.contains(LINE),
        "the demo config lists its digestAlgorithms"
    );
    let with = algorithms.map_or(String::new(), |a| format!("      digestAlgorithms: {a}\n"));
    DEMO_CONFIG.replace(LINE, &with)
}
/// Password of demo user `user` (1001–1003).
pub fn password(user: &str) -> String {
    format!("switchboard-{user}")
}

/// A registrar process.
pub struct Registrar {
    child: Option<Child>,
    /// UDP and TCP port.
    pub sip_port: u16,
    /// TLS port, when started with a certificate.
    pub tls_port: Option<u16>,
    /// WS port, when started with `websocket`.
    pub ws_port: Option<u16>,
    /// WSS port, when started with `websocket` and a certificate.
    pub wss_port: Option<u16>,
    /// HTTP port (`/metrics`, `/healthz`, `/readyz`).
    pub http_port: u16,
    /// Debug HTTP port (`/debug/*`).
    pub debug_port: u16,
    /// Its temporary directory (config, logs).
    pub dir: PathBuf,
    /// Its log file.
    pub log: PathBuf,
}

/// How to start a registrar.
#[derive(Default)]
pub struct Options<'a> {
    /// A config file content (else the embedded demo config).
    pub config: Option<&'a str>,
    /// TLS certificate and key files.
    pub tls: Option<(&'a Path, &'a Path)>,
    /// Listen for WS too (and WSS with `tls`).
    pub websocket: bool,
    /// More arguments.
    pub args: &'a [&'a str],
}

impl Registrar {
    /// Starts a registrar and waits until it is ready.
    pub fn start(name: &str, opts: Options<'_>) -> Registrar {
        let dir = temp_dir(name);
        let mut last_log = String::new();
        for _attempt in 0..3 {
            let sip_port = free_port();
            let http_port = free_port();
            let debug_port = free_port();
            let tls_port = opts.tls.map(|_| free_port());
            let ws_port = opts.websocket.then(free_port);
            let wss_port = opts.tls.and(ws_port).map(|_| free_port());
            let log = dir.join("registrar.log");
            let mut cmd = Command::new(BIN);
            cmd.arg("--udp")
                .arg(format!("127.0.0.1:{sip_port}"))
                .arg("--tcp")
                .arg(format!("127.0.0.1:{sip_port}"))
                .arg("--http")
                .arg(format!("127.0.0.1:{http_port}"))
                .arg("--debug-http")
                .arg(format!("127.0.0.1:{debug_port}"))
                .arg("--replica")
                .arg("test-replica");
            if let Some(text) = opts.config {
                let path = dir.join("config.yaml");
                std::fs::write(&path, text).unwrap();
                cmd.arg("--config").arg(&path);
            }
            if let (Some((cert, key)), Some(port)) = (opts.tls, tls_port) {
                cmd.arg("--tls")
                    .arg(format!("127.0.0.1:{port}"))
                    .arg("--tls-cert")
                    .arg(cert)
                    .arg("--tls-key")
                    .arg(key);
            }
            for (flag, port) in [("--ws", ws_port), ("--wss", wss_port)] {
                if let Some(port) = port {
                    cmd.arg(flag).arg(format!("127.0.0.1:{port}"));
                }
            }
            cmd.args(opts.args)
                .env("RUST_LOG", "info,switchboard_registrar=debug")
                .stdin(Stdio::null())
                .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
                .stderr(Stdio::from(
                    std::fs::File::create(dir.join("stderr.log")).unwrap(),
                ));
            let child = cmd.spawn().expect("start the registrar binary");
            let mut r = Registrar {
                child: Some(child),
                sip_port,
                tls_port,
                ws_port,
                wss_port,
                http_port,
                debug_port,
                dir: dir.clone(),
                log,
            };
            let start = Instant::now();
            loop {
                if let Some(status) = r.child.as_mut().unwrap().try_wait().unwrap() {
                    last_log = format!(
                        "exited with {status}: {}{}",
                        std::fs::read_to_string(&r.log).unwrap_or_default(),
                        std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default()
                    );
                    r.child = None;
                    break;
                }
                if matches!(r.get("/readyz"), Some((200, _))) {
                    return r;
                }
                if start.elapsed() > DEADLINE {
                    panic!("registrar not ready in time: {}", r.logs());
                }
                std::thread::sleep(Duration::from_millis(25));
            }
        }
        panic!("registrar did not start: {last_log}");
    }

    /// Its log so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `GET path` on the HTTP port: status and body, `None` if it cannot connect.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(self.http_port, path)
    }

    /// `GET path` on the debug port (`/debug/*`).
    pub fn debug_get(&self, path: &str) -> Option<(u16, String)> {
        http_get(self.debug_port, path)
    }

    /// `/debug/bindings` as JSON.
    pub fn bindings(&self) -> serde_json::Value {
        // Waited for, not expected at once: on a loaded machine an answer can take longer
        // than one GET's read timeout.
        let (status, body) = wait_until("/debug/bindings to answer", || {
            self.debug_get("/debug/bindings")
        });
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// The live bindings of one device.
    pub fn device_bindings(&self, device: &str) -> Vec<serde_json::Value> {
        self.bindings()["devices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["id"] == device)
            .map(|d| d["bindings"].as_array().unwrap().clone())
            .unwrap_or_default()
    }

    /// Waits until `device` has exactly `n` bindings; returns them.
    pub fn wait_bindings(&self, device: &str, n: usize) -> Vec<serde_json::Value> {
        wait_until(&format!("{device} to have {n} binding(s)"), || {
            let b = self.device_bindings(device);
            (b.len() == n).then_some(b)
        })
    }

    /// Waits until `/debug/registrations` (which must answer 200) shows the outbound
    /// registration `id` Successful; returns its entry. `what` names the wait.
    pub fn wait_registration_successful(&self, what: &str, id: &str) -> serde_json::Value {
        wait_until(what, || {
            let (status, body) = self.debug_get("/debug/registrations")?;
            assert_eq!(status, 200, "{body}");
            let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
            let reg = doc["registrations"]
                .as_array()?
                .iter()
                .find(|v| v["id"] == id)?
                .clone();
            (reg["phase"] == "Successful").then_some(reg)
        })
    }

    /// The value of a metric line (`name{labels}` as exposed), 0 if absent.
    pub fn metric(&self, series: &str) -> f64 {
        let (_, body) = self.get("/metrics").expect("HTTP reachable");
        body.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0.0)
    }

    /// Sends a signal by name (`TERM`, `HUP`) with `kill`.
    pub fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} {pid}");
    }

    /// SIGTERM, then waits for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal("TERM");
        let mut child = self.child.take().unwrap();
        wait_until("the registrar to exit", || child.try_wait().unwrap())
    }
}

impl Drop for Registrar {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Outbound registration client settings for tests: quick backoff (200 ms to 1 s), refreshes
/// at least 500 ms apart, T1 100 ms, transactions timing out after `transaction_timeout`,
/// advertising `contacts`.
pub fn uac_settings(
    transaction_timeout: Duration,
    contacts: switchboard_registrar::uac::ContactAddrs,
) -> switchboard_registrar::uac::ClientSettings {
    use switchboard_registrar::uac::{ClientSettings, Timing};
    ClientSettings {
        timing: Timing {
            backoff_base: Duration::from_millis(200),
            backoff_max: Duration::from_secs(1),
            min_refresh: Duration::from_millis(500),
        },
        t1: Duration::from_millis(100),
        transaction_timeout,
        contacts,
        ..ClientSettings::default()
    }
}

/// A manager of outbound registrations on [`uac_settings`] (transactions time out after 1.5 s)
/// advertising `udp_contact`, and the index it reports its state into.
pub fn uac_manager(
    udp_contact: &str,
) -> (
    switchboard_registrar::uac::Manager,
    switchboard_registrar::uac::UacIndex,
) {
    use switchboard_registrar::uac::{ContactAddrs, Manager, UacIndex};
    let contacts = ContactAddrs {
        udp: Some(udp_contact.into()),
        ..Default::default()
    };
    let settings = uac_settings(Duration::from_millis(1500), contacts);
    let index = UacIndex::default();
    (Manager::new(settings, None, index.clone()), index)
}

/// Polls `cond` every 25 ms until it holds (true) or `limit` passes (false), inside a tokio
/// test.
pub async fn wait_async(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
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

/// Starts a program that must be installed with `args` in `cwd`, stdin closed, stdout and
/// stderr each to a fresh `output()` (`Stdio::piped`, `Stdio::null`).
pub fn spawn_tool(program: &str, args: &[String], cwd: &Path, output: fn() -> Stdio) -> Child {
    Command::new(program)
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(output())
        .stderr(output())
        .spawn()
        .unwrap_or_else(|e| panic!("{program} must be installed (.ci/run installs it): {e}"))
}

/// Runs a program that must be installed, with a time limit.
pub fn run_tool(program: &str, args: &[String], cwd: &Path, limit: Duration) -> Output {
    let mut child = spawn_tool(program, args, cwd, Stdio::piped);
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{program} ran longer than {limit:?}\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Everything sipp logged in `dir` (messages and errors).
pub fn sipp_logs(dir: &Path) -> String {
    let mut out = String::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.ends_with(".log") {
            out.push_str(&format!(
                "--- {name}\n{}\n",
                std::fs::read_to_string(entry.path()).unwrap_or_default()
            ));
        }
    }
    out
}

/// The messages sipp received, in order (from its `-trace_msg` log).
pub fn sipp_received(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.ends_with("_messages.log") {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            // Blocks: a dashed line with the time, "UDP message received [n] bytes :", the
            // message.
            for block in text.split("----------------------------------------------- ") {
                let mut lines = block.splitn(3, '\n');
                let (_, Some(what), Some(msg)) = (lines.next(), lines.next(), lines.next()) else {
                    continue;
                };
                if what.contains("message received") {
                    out.push(msg.trim_start().to_string());
                }
            }
        }
    }
    out
}

/// The outcome of a sipp run.
pub struct SippRun {
    /// Exit code (0: every call succeeded).
    pub code: i32,
    /// Successful calls from the final statistics.
    pub successful: u32,
    /// Failed calls from the final statistics.
    pub failed: u32,
    /// stdout, the error log and the message trace, for assertion messages.
    pub report: String,
}

/// Runs one sipp scenario from `tests/sipp/` against the registrar, once.
pub fn sipp(
    r: &Registrar,
    scenario: &str,
    transport: &str,
    keys: &[(&str, &str)],
    auth: Option<(&str, &str)>,
) -> SippRun {
    let dir = temp_dir("sipp");
    let path = sipp::scenario(scenario);
    assert!(path.exists(), "{}", path.display());
    let mut args: Vec<String> = vec![
        format!("127.0.0.1:{}", r.sip_port),
        "-sf".into(),
        path.display().to_string(),
        "-m".into(),
        "1".into(),
        "-i".into(),
        "127.0.0.1".into(),
        "-p".into(),
        free_port().to_string(),
        "-t".into(),
        transport.into(),
        "-timeout".into(),
        "20".into(),
        "-timeout_error".into(),
        "-nostdin".into(),
        "-trace_err".into(),
        "-trace_msg".into(),
    ];
    for (k, v) in keys {
        args.extend(["-key".into(), k.to_string(), v.to_string()]);
    }
    if let Some((u, p)) = auth {
        args.extend(["-au".into(), u.into(), "-ap".into(), p.into()]);
    }
    let out = run_tool("sipp", &args, &dir, Duration::from_secs(40));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let count = |label: &str| sipp::counter(&stdout, label).unwrap_or(0);
    let mut logs = String::new();
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.ends_with("_errors.log") || name.ends_with("_messages.log") {
            logs.push_str(&format!(
                "--- {name}\n{}\n",
                std::fs::read_to_string(entry.path()).unwrap_or_default()
            ));
        }
    }
    SippRun {
        code: out.status.code().unwrap_or(-1),
        successful: count("Successful call"),
        failed: count("Failed call"),
        report: format!("{stdout}\n{}\n{logs}", String::from_utf8_lossy(&out.stderr)),
    }
}

impl SippRun {
    /// Asserts the one call succeeded.
    pub fn assert_ok(&self) {
        assert!(
            self.code == 0 && self.successful == 1 && self.failed == 0,
            "sipp failed (exit {}, {} ok, {} failed):\n{}",
            self.code,
            self.successful,
            self.failed,
            self.report
        );
    }
}

/// Writes a CA and a server certificate for localhost/127.0.0.1 signed by it; returns
/// (ca.pem, cert.pem, key.pem).
pub fn test_certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Switchboard test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf_params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let leaf = leaf_params.signed_by(&leaf_key, &ca).unwrap();
    let (ca_path, cert_path, key_path) = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&ca_path, ca.pem()).unwrap();
    std::fs::write(&cert_path, leaf.pem()).unwrap();
    std::fs::write(&key_path, leaf_key.serialize_pem()).unwrap();
    (ca_path, cert_path, key_path)
}

/// A rustls client config that trusts only the CA in `ca` (PEM), as written by
/// [`test_certificates`].
pub fn tls_client_config(ca: &Path) -> std::sync::Arc<rustls::ClientConfig> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(ca).unwrap())
        .unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    std::sync::Arc::new(config)
}

#[allow(unused_imports)]
pub use switchboard_testkit::sip::{header_values, status_of};

/// A REGISTER from a hand-rolled client, in the demo domain.
pub fn register_request(
    transport: &str,
    local: &str,
    user: &str,
    cseq: u32,
    call_id: &str,
    extra: &str,
) -> String {
    switchboard_testkit::sip::register_request(DOMAIN, transport, local, user, cseq, call_id, extra)
}

/// An Authorization header answering `challenge` for a REGISTER (computed in testkit,
/// independently of the registrar's code).
pub fn authorization(challenge: &str, user: &str, password: &str, uri: &str, nc: u32) -> String {
    switchboard_testkit::sip::authorization(challenge, "REGISTER", user, password, uri, nc)
}

/// A UDP SIP client on loopback.
pub struct UdpClient {
    socket: UdpSocket,
    /// `127.0.0.1:port` of the client.
    pub local: String,
    target: std::net::SocketAddr,
}

impl UdpClient {
    /// A client talking to `target`.
    pub fn new(target: std::net::SocketAddr) -> UdpClient {
        let bind = if target.is_ipv6() {
            "[::1]:0"
        } else {
            "127.0.0.1:0"
        };
        let socket = UdpSocket::bind(bind).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let local = socket.local_addr().unwrap().to_string();
        UdpClient {
            socket,
            local,
            target,
        }
    }

    /// Sends bytes.
    pub fn send(&self, data: &[u8]) {
        self.socket.send_to(data, self.target).unwrap();
    }

    /// Receives one datagram within `wait`, if any.
    pub fn recv(&self, wait: Duration) -> Option<String> {
        self.socket.set_read_timeout(Some(wait)).unwrap();
        let mut buf = vec![0u8; 65536];
        let (n, _) = self.socket.recv_from(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).to_string())
    }

    /// Sends a request and returns the response.
    pub fn exchange(&self, msg: &str) -> String {
        self.send(msg.as_bytes());
        self.recv(Duration::from_secs(5)).expect("a response")
    }

    /// The full REGISTER with digest for a demo user; returns the final response.
    pub fn register(&self, user: &str, password: &str, call_id: &str, extra: &str) -> String {
        let first = self.exchange(&register_request(
            "UDP",
            &self.local,
            user,
            1,
            call_id,
            extra,
        ));
        assert_eq!(status_of(&first), 401, "{first}");
        let challenge = header_values(&first, "WWW-Authenticate")
            .into_iter()
            .find(|c| c.contains("algorithm=MD5"))
            .unwrap()
            .to_string();
        let auth = authorization(&challenge, user, password, &format!("sip:{DOMAIN}"), 1);
        self.exchange(&register_request(
            "UDP",
            &self.local,
            user,
            2,
            call_id,
            &format!("{extra}{auth}"),
        ))
    }
}

// ------------------------------------------------------------------------------------------
// Several replicas on one Redis (redis_cluster.rs): a redis-server process, replicas started at
// fixed addresses (so they can be restarted on the same ones), deadlines of any length, and
// requests that may go unanswered.

/// A `redis-server` on 127.0.0.1 in a temporary directory, without persistence
/// (`--save "" --appendonly no`); killed on drop.
pub struct RedisServer {
    child: Option<Child>,
    /// Its TCP port (kept across restarts).
    pub port: u16,
    /// Its directory (logs of every start).
    pub dir: PathBuf,
    starts: u32,
}

impl RedisServer {
    /// Starts one on a free port and waits until it answers PING.
    pub fn start(name: &str) -> RedisServer {
        let mut r = RedisServer {
            child: None,
            port: free_port(),
            dir: temp_dir(&format!("redis-{name}")),
            starts: 0,
        };
        let mut last = String::new();
        for _attempt in 0..3 {
            match r.spawn() {
                Ok(()) => return r,
                // The port was taken between free_port() and the bind: another one.
                Err(e) => last = e,
            }
            r.port = free_port();
        }
        panic!("{last}");
    }

    /// Calls per command since the last `CONFIG RESETSTAT` (commands run by scripts included).
    pub async fn command_calls(&self) -> std::collections::HashMap<String, u64> {
        let client = redis::Client::open(self.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut conn)
            .await
            .unwrap();
        info.lines()
            .filter_map(|l| {
                let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(":calls=")?;
                Some((name.to_string(), rest.split(',').next()?.parse().ok()?))
            })
            .collect()
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) -> Result<(), String> {
        self.starts += 1;
        let log = self.dir.join(format!("redis-{}.log", self.starts));
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("redis-server must be installed (scripts/install-test-deps.sh): {e}")
            });
        self.child = Some(child);
        wait_until("redis-server to answer PING", || {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return Some(Err(format!(
                    "redis-server exited with {status}: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )));
            }
            self.ping().then_some(Ok(()))
        })
    }

    /// Whether it answers `PING` with `+PONG`.
    pub fn ping(&self) -> bool {
        self.command("PING").is_some_and(|r| r.starts_with("+PONG"))
    }

    /// Sends one inline command (`FLUSHALL`, `DBSIZE`) and returns the first reply line.
    pub fn command(&self, line: &str) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        write!(s, "{line}\r\n").ok()?;
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).ok()?;
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        Some(text.lines().next().unwrap_or("").to_string())
    }

    /// SIGKILL (no chance to say goodbye to its clients), and waits until it is gone.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("redis-server running");
        child.kill().unwrap();
        child.wait().unwrap();
        wait_until("the redis port to close", || (!self.ping()).then_some(()));
    }

    /// Stops (`true`: SIGSTOP) or resumes (SIGCONT) the server: a Redis that keeps its
    /// connections open and answers nothing.
    pub fn freeze(&self, frozen: bool) {
        let pid = self.child.as_ref().expect("redis-server running").id();
        let signal = if frozen { "-STOP" } else { "-CONT" };
        let status = std::process::Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} {pid}: {status}");
    }

    /// Starts it again on the same port (empty: nothing was persisted).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "kill() it first");
        if let Err(e) = self.spawn() {
            panic!("{e}");
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Where and how a [`Replica`] runs; the same on every (re)start.
#[derive(Clone, Debug)]
pub struct ReplicaSpec {
    /// `--replica NAME`.
    pub name: String,
    /// Loopback IP of its SIP UDP and TCP listeners (`127.0.0.2`).
    pub ip: String,
    /// Its SIP port (UDP and TCP).
    pub sip_port: u16,
    /// Its HTTP port, on 127.0.0.1.
    pub http_port: u16,
    /// Its debug HTTP port (`/debug/*`), on 127.0.0.1.
    pub debug_port: u16,
    /// Config file content (else the embedded demo config).
    pub config: Option<String>,
    /// More arguments (`--redis-url`, `--peer`, ...).
    pub args: Vec<String>,
}

impl ReplicaSpec {
    /// A replica named `name` on `ip` with free ports.
    pub fn new(name: &str, ip: &str) -> ReplicaSpec {
        ReplicaSpec {
            name: name.to_string(),
            ip: ip.to_string(),
            sip_port: free_port_on(ip),
            http_port: free_port(),
            debug_port: free_port(),
            config: None,
            args: Vec::new(),
        }
    }

    /// Its SIP address.
    pub fn sip_addr(&self) -> std::net::SocketAddr {
        format!("{}:{}", self.ip, self.sip_port).parse().unwrap()
    }

    /// `--peer NAME=IP:PORT` for it.
    pub fn peer_arg(&self) -> String {
        format!("{}={}", self.name, self.sip_addr())
    }
}

/// Two replicas on loopback sharing a Redis and the config `text`, with one nonce key as the
/// operator's config gives every replica (each accepts the other's challenges, Record-Routes
/// and Routes), each told of the other (`--peer`), `extra` added to the first's arguments;
/// returned once both see two live replicas.
pub fn replica_pair(name: &str, text: &str, extra: &[String]) -> (RedisServer, Replica, Replica) {
    let redis = RedisServer::start(name);
    let mut s1 = ReplicaSpec::new(&format!("{name}-r1"), "127.0.0.1");
    let mut s2 = ReplicaSpec::new(&format!("{name}-r2"), "127.0.0.1");
    let text = text.replacen(
        "hash: \"\"\n",
        "hash: \"\"\nnonceKey: \"00112233445566778899aabbccddeeff\"\n",
        1,
    );
    let (p1, p2) = (s1.peer_arg(), s2.peer_arg());
    for (spec, other) in [(&mut s1, p2), (&mut s2, p1)] {
        spec.config = Some(text.clone());
        spec.args = vec!["--redis-url".into(), redis.url(), "--peer".into(), other];
    }
    s1.args.extend_from_slice(extra);
    let (r1, r2) = (Replica::start(s1), Replica::start(s2));
    for r in [&r1, &r2] {
        wait_live(&r.registrar, 2);
    }
    (redis, r1, r2)
}

/// Waits until `r` sees `n` live replicas (itself included) in `/debug/cluster`.
pub fn wait_live(r: &Registrar, n: usize) -> serde_json::Value {
    wait_until(&format!("{n} live replicas"), || {
        let (_, body) = r.debug_get("/debug/cluster")?;
        let doc: serde_json::Value = serde_json::from_str(&body).ok()?;
        (doc["settled"] == true && doc["live"].as_array()?.len() == n).then_some(doc)
    })
}

/// A registrar replica at fixed addresses that can be stopped and started again on them. The
/// [`Registrar`] inside is the current process (`sip_port` is the port on `spec.ip`).
pub struct Replica {
    /// How it runs.
    pub spec: ReplicaSpec,
    /// The current (or last) process.
    pub registrar: Registrar,
    starts: u32,
}

impl Replica {
    /// Starts it and waits until `/readyz` answers 200.
    pub fn start(spec: ReplicaSpec) -> Replica {
        let dir = temp_dir(&format!("replica-{}", spec.name));
        let registrar = Replica::spawn(&spec, &dir, 1);
        Replica {
            spec,
            registrar,
            starts: 1,
        }
    }

    fn spawn(spec: &ReplicaSpec, dir: &Path, n: u32) -> Registrar {
        let log = dir.join(format!("registrar-{n}.log"));
        let stderr = dir.join(format!("stderr-{n}.log"));
        let mut cmd = Command::new(BIN);
        cmd.arg("--udp")
            .arg(spec.sip_addr().to_string())
            .arg("--tcp")
            .arg(spec.sip_addr().to_string())
            .arg("--http")
            .arg(format!("127.0.0.1:{}", spec.http_port))
            .arg("--debug-http")
            .arg(format!("127.0.0.1:{}", spec.debug_port))
            .arg("--replica")
            .arg(&spec.name);
        if let Some(text) = &spec.config {
            // In a directory of its own: the registrar watches the config's directory.
            let cfg_dir = dir.join("config");
            std::fs::create_dir_all(&cfg_dir).unwrap();
            let path = cfg_dir.join("config.yaml");
            if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                std::fs::write(&path, text).unwrap();
            }
            cmd.arg("--config").arg(&path);
        }
        cmd.args(&spec.args)
            .env("RUST_LOG", "info,switchboard_registrar=debug")
            .env_remove("SWITCHBOARD_REDIS_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
            .stderr(Stdio::from(std::fs::File::create(&stderr).unwrap()));
        let child = cmd.spawn().expect("start the registrar binary");
        let mut r = Registrar {
            child: Some(child),
            sip_port: spec.sip_port,
            tls_port: None,
            ws_port: None,
            wss_port: None,
            http_port: spec.http_port,
            debug_port: spec.debug_port,
            dir: dir.to_path_buf(),
            log,
        };
        let start = Instant::now();
        loop {
            if let Some(status) = r.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "replica {} exited with {status}: {}{}",
                    spec.name,
                    r.logs(),
                    std::fs::read_to_string(&stderr).unwrap_or_default()
                );
            }
            if matches!(r.get("/readyz"), Some((200, _))) {
                return r;
            }
            if start.elapsed() > DEADLINE {
                panic!("replica {} not ready in time: {}", spec.name, r.logs());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// SIGTERM and waits for the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        self.registrar.terminate()
    }

    /// Starts it again at the same addresses (after [`Replica::stop`]) and waits until ready.
    pub fn start_again(&mut self) {
        assert!(self.registrar.child.is_none(), "stop() it first");
        self.starts += 1;
        self.registrar = Replica::spawn(&self.spec, &self.registrar.dir.clone(), self.starts);
    }

    /// Whether the current process is still running.
    pub fn running(&mut self) -> bool {
        self.registrar
            .child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    /// The logs (stdout and stderr) of every process it ran, in order.
    pub fn all_logs(&self) -> String {
        let mut out = String::new();
        for n in 1..=self.starts {
            for file in [format!("registrar-{n}.log"), format!("stderr-{n}.log")] {
                let text =
                    std::fs::read_to_string(self.registrar.dir.join(&file)).unwrap_or_default();
                out.push_str(&format!("--- {} {file}\n{text}", self.spec.name));
            }
        }
        out
    }
}

impl UdpClient {
    /// Sends a request and waits up to `wait` for its final response (matched by Call-ID and
    /// CSeq; provisional responses and strays are skipped); `None` if none came.
    pub fn try_exchange(&self, msg: &str, wait: Duration) -> Option<String> {
        let call_id = header_values(msg, "Call-ID").first()?.to_string();
        let cseq = header_values(msg, "CSeq").first()?.to_string();
        self.send(msg.as_bytes());
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let resp = self.recv(left.max(Duration::from_millis(1)))?;
            let ours = header_values(&resp, "Call-ID").first() == Some(&call_id.as_str())
                && header_values(&resp, "CSeq").first() == Some(&cseq.as_str());
            if ours && status_of(&resp) >= 200 {
                return Some(resp);
            }
        }
    }

    /// Like [`UdpClient::register`], but any step may go unanswered within `wait` (`None`) and
    /// the challenge may be refused: returns the last response (the 401 step's answer when it
    /// was not a 401).
    pub fn try_register(
        &self,
        user: &str,
        password: &str,
        call_id: &str,
        extra: &str,
        wait: Duration,
    ) -> Option<String> {
        let first = self.try_exchange(
            &register_request("UDP", &self.local, user, 1, call_id, extra),
            wait,
        )?;
        if status_of(&first) != 401 {
            return Some(first);
        }
        let challenge = header_values(&first, "WWW-Authenticate")
            .into_iter()
            .find(|c| c.contains("algorithm=MD5"))?
            .to_string();
        let auth = authorization(&challenge, user, password, &format!("sip:{DOMAIN}"), 1);
        self.try_exchange(
            &register_request(
                "UDP",
                &self.local,
                user,
                2,
                call_id,
                &format!("{extra}{auth}"),
            ),
            wait,
        )
    }
}

/// A sipp running a scenario in a loop in the background (`-r RATE`, unbounded calls) until
/// [`SippLoop::finish`]; statistics every second in `stat.csv`.
pub struct SippLoop {
    child: Option<Child>,
    /// Its working directory (stat file, error log, stdout).
    pub dir: PathBuf,
}

/// Cumulative counts of a sipp run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SippCounts {
    /// Calls started.
    pub total: u64,
    /// Calls that succeeded.
    pub successful: u64,
    /// Calls that failed.
    pub failed: u64,
}

impl SippLoop {
    /// Starts `sipp target -sf scenario -inf injection -r rate` with `args` added, sending from
    /// 127.0.0.1 (a free port) over UDP.
    pub fn start(
        name: &str,
        target: std::net::SocketAddr,
        scenario: &Path,
        injection: &Path,
        rate: u32,
        args: &[&str],
    ) -> SippLoop {
        let dir = temp_dir(&format!("sipp-loop-{name}"));
        let mut cmd = Command::new("sipp");
        cmd.arg(target.to_string())
            .arg("-sf")
            .arg(scenario)
            .arg("-inf")
            .arg(injection)
            .args([
                "-i",
                "127.0.0.1",
                "-p",
                &free_port().to_string(),
                "-t",
                "u1",
            ])
            .args(["-r", &rate.to_string(), "-rp", "1000", "-m", "100000000"])
            .args(["-nostdin", "-trace_stat", "-stf"])
            .arg(dir.join("stat.csv"))
            .args(["-fd", "1", "-trace_err", "-error_file"])
            .arg(dir.join("errors.log"))
            .args(args)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(
                std::fs::File::create(dir.join("stdout.log")).unwrap(),
            ))
            .stderr(Stdio::from(
                std::fs::File::create(dir.join("stderr.log")).unwrap(),
            ));
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!("sipp must be installed (scripts/install-test-deps.sh): {e}")
        });
        SippLoop {
            child: Some(child),
            dir,
        }
    }

    /// The counts of the last line of its statistics file (zeros before the first).
    pub fn counts(&self) -> SippCounts {
        let text = std::fs::read_to_string(self.dir.join("stat.csv")).unwrap_or_default();
        let mut lines = text.lines();
        let Some(header) = lines.next() else {
            return SippCounts::default();
        };
        let cols: Vec<&str> = header.split(';').collect();
        let col = |name: &str| cols.iter().position(|c| *c == name);
        let Some(last) = lines.rfind(|l| l.split(';').count() > 10) else {
            return SippCounts::default();
        };
        let fields: Vec<&str> = last.split(';').collect();
        let get = |name: &str| {
            col(name)
                .and_then(|i| fields.get(i))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        };
        SippCounts {
            total: get("TotalCallCreated"),
            successful: get("SuccessfulCall(C)"),
            failed: get("FailedCall(C)"),
        }
    }

    /// Whether sipp is still running.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    /// SIGUSR1 (stop starting calls, finish the open ones), waits up to `limit` (then kills),
    /// and returns the final counts.
    pub fn finish(&mut self, limit: Duration) -> SippCounts {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-USR1")
                .arg(child.id().to_string())
                .status();
            let start = Instant::now();
            while child.try_wait().unwrap().is_none() {
                if start.elapsed() > limit {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        self.counts()
    }

    /// Its logs (stdout, stderr, error log), for assertion messages.
    pub fn report(&self) -> String {
        let mut out = String::new();
        for file in ["stdout.log", "stderr.log", "errors.log"] {
            let text = std::fs::read_to_string(self.dir.join(file)).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            out.push_str(&format!("--- {file} (last lines)\n"));
            for l in tail.into_iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for SippLoop {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
