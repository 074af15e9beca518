//! A real browser softphone over WSS: Debian's chromium, headless, driven by playwright-core
//! (`tests/browser/drive.mjs`), loads our page (`tests/browser/phone.html`) that runs JsSIP
//! from npm. It registers over WSS as demo device 1001 (digest; the test's self-signed
//! certificate accepted by chromium's flags; its Origin on the registrar's allow-list), calls a
//! baresip phone (1002, UDP) and hangs up, is called by it and hung up on, and unregisters.
//! The SIP exchange is asserted from the WebSocket frames the page sent and received (INVITE,
//! 200, ACK, BYE and its 200, both ways), and the binding from `/debug/bindings` (standalone:
//! no cluster here).
//!
//! Media is faked (`--use-fake-device-for-media-stream`) and the SDP translated in the page
//! (see `tests/browser/phone.js`): only signalling is under test. Needs chromium, node and
//! the npm packages of tests/browser, which scripts/install-test-deps.sh installs.

mod common;

use common::{
    free_port, password, temp_dir, test_certificates, Options, Registrar, DEADLINE, DOMAIN,
};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use switchboard_testkit::baresip::{Account, Baresip};

/// How long the browser may take for a step (starting chromium is the slow one).
const BROWSER_DEADLINE: Duration = Duration::from_secs(60);

/// The browser phone: node running drive.mjs, its events as JSON lines.
struct BrowserPhone {
    child: Child,
    stdin: ChildStdin,
    events: mpsc::Receiver<Value>,
    /// Every event so far.
    seen: Vec<Value>,
    stderr: PathBuf,
}

impl BrowserPhone {
    fn start(url: &str, user: &str, page_port: u16, dir: &Path) -> BrowserPhone {
        let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/browser");
        assert!(
            browser_dir.join("node_modules/jssip").is_dir()
                && browser_dir.join("node_modules/playwright-core").is_dir(),
            "the browser test's npm packages are missing: run scripts/install-test-deps.sh"
        );
        let cfg = serde_json::json!({
            "url": url,
            "user": user,
            "password": password(user),
            "domain": DOMAIN,
            "pagePort": page_port,
        });
        let stderr = dir.join("browser.log");
        let mut child = Command::new("node")
            .arg(browser_dir.join("drive.mjs"))
            .arg(cfg.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("node (scripts/install-test-deps.sh installs it)");
        let stdout = child.stdout.take().unwrap();
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if tx.send(v).is_err() {
                        break;
                    }
                }
            }
        });
        let stdin = child.stdin.take().unwrap();
        BrowserPhone {
            child,
            stdin,
            events,
            seen: Vec::new(),
            stderr,
        }
    }

    fn command(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("the browser driver is running");
    }

    /// Waits for an event named `name` (and matching `also`), failing on a page error.
    fn wait(&mut self, name: &str, also: impl Fn(&Value) -> bool) -> Value {
        let until = Instant::now() + BROWSER_DEADLINE;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            let Ok(e) = self.events.recv_timeout(left) else {
                panic!("no {name} from the browser in time; {}", self.report());
            };
            self.seen.push(e.clone());
            match e["event"].as_str() {
                Some("pageerror" | "error" | "failed" | "registrationFailed") => {
                    panic!("browser: {e}; {}", self.report())
                }
                Some(n) if n == name && also(&e) => return e,
                _ => {}
            }
        }
    }

    /// The SIP exchange on the page's WebSocket since event index `from`, one entry a frame:
    /// `sent INVITE`, `received 200 INVITE` (status and CSeq method for responses).
    fn frames_since(&self, from: usize) -> Vec<String> {
        self.seen[from..]
            .iter()
            .filter_map(|e| {
                let dir = e["event"]
                    .as_str()
                    .filter(|d| *d == "sent" || *d == "received")?;
                let line = e["line"].as_str()?;
                let method = e["cseq"].as_str()?.split_whitespace().nth(1)?;
                Some(match line.strip_prefix("SIP/2.0 ") {
                    Some(status) => format!("{dir} {} {method}", &status[..3]),
                    None => format!("{dir} {method}"),
                })
            })
            .collect()
    }

    fn report(&self) -> String {
        let events: Vec<String> = self.seen.iter().map(Value::to_string).collect();
        format!(
            "events:\n{}\nbrowser log:\n{}",
            events.join("\n"),
            std::fs::read_to_string(&self.stderr).unwrap_or_default()
        )
    }
}

impl Drop for BrowserPhone {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let deadline = Instant::now() + DEADLINE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Asserts that `frames` hold `expected` in this order (other frames may come between).
fn assert_in_order(frames: &[String], expected: &[&str], what: &str) {
    let mut rest = frames.iter();
    for want in expected {
        assert!(
            rest.any(|f| f == want),
            "{what}: {want} missing (in order {expected:?}) from {frames:#?}"
        );
    }
}

#[test]
fn a_browser_registers_over_wss_calls_baresip_and_is_called_by_it() {
    let dir = temp_dir("browser-phone");
    let (_ca, cert, key) = test_certificates(&dir);
    let page_port = free_port();
    let origin: &'static str = Box::leak(format!("http://127.0.0.1:{page_port}").into_boxed_str());
    let r = Registrar::start(
        "browser-phone",
        Options {
            tls: Some((&cert, &key)),
            websocket: true,
            args: Box::leak(Box::new(["--ws-allowed-origin", origin])),
            ..Default::default()
        },
    );
    let mut account = Account::udp(
        "1002",
        DOMAIN,
        &password("1002"),
        ([127, 0, 0, 1], r.sip_port).into(),
    );
    account.auto_answer = true;
    let mut baresip = Baresip::start(&account);
    r.wait_bindings("default/softphone-1002", 1);

    let url = format!("wss://127.0.0.1:{}", r.wss_port.unwrap());
    let mut phone = BrowserPhone::start(&url, "1001", page_port, &dir);
    phone.wait("registered", |_| true);
    let binding = &r.wait_bindings("default/desk-1001", 1)[0];
    assert_eq!(binding["transport"], "WSS", "{binding}");
    let contact = binding["contact"].as_str().unwrap();
    assert!(
        contact.contains(".invalid") && contact.contains("transport=ws"),
        "{binding}"
    );
    assert!(
        binding["userAgent"].as_str().unwrap().contains("JsSIP"),
        "{binding}"
    );

    // The browser calls baresip (which answers by itself) and hangs up.
    let from = phone.seen.len();
    phone.command("call 1002");
    phone.wait("confirmed", |e| e["direction"] == "outgoing");
    phone.command("hangup");
    phone.wait("received", |e| {
        e["cseq"].as_str().is_some_and(|c| c.ends_with(" BYE"))
    });
    let outgoing = phone.frames_since(from);
    assert_in_order(
        &outgoing,
        &[
            "sent INVITE",
            "received 407 INVITE",
            "sent INVITE",
            "received 200 INVITE",
            "sent ACK",
            "sent BYE",
            "received 200 BYE",
        ],
        "the browser's call to baresip",
    );

    // baresip calls the browser (which answers) and hangs up.
    let from = phone.seen.len();
    baresip.command("dial", "1001");
    let incoming = phone.wait("incoming", |_| true);
    assert_eq!(incoming["from"], "1002");
    phone.wait("confirmed", |e| e["direction"] == "incoming");
    baresip.command("hangup", "");
    phone.wait("ended", |e| {
        e["direction"] == "incoming" && e["originator"] == "remote"
    });
    let incoming = phone.frames_since(from);
    assert_in_order(
        &incoming,
        &[
            "received INVITE",
            "sent 200 INVITE",
            "received ACK",
            "received BYE",
            "sent 200 BYE",
        ],
        "baresip's call to the browser",
    );

    // Unregistering removes the binding.
    phone.command("unregister");
    phone.wait("unregistered", |_| true);
    common::wait_until("the browser's binding to go", || {
        r.device_bindings("default/desk-1001")
            .is_empty()
            .then_some(())
    });
    baresip.stop();
}
