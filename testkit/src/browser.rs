//! A browser softphone: Debian's chromium, headless, driven by playwright-core
//! (`tests/browser/drive.mjs`, no browser download) on our page (`tests/browser/phone.html`)
//! running JsSIP from npm. It registers over a SIP WebSocket (RFC 7118) and calls and answers
//! on command; every event of the phone and every WebSocket frame of the page comes back as a
//! JSON line, so a test asserts the SIP exchange itself. Needs chromium, node and the npm
//! packages of tests/browser (scripts/install-test-deps.sh installs them).

use crate::process::{repo_root, DEADLINE};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long the browser may take for a step (starting chromium is the slow one).
const BROWSER_DEADLINE: Duration = Duration::from_secs(60);

/// The browser phone: node running drive.mjs, its events as JSON lines.
pub struct BrowserPhone {
    child: Child,
    stdin: ChildStdin,
    events: mpsc::Receiver<Value>,
    /// Every event so far.
    pub seen: Vec<Value>,
    stderr: PathBuf,
}

impl BrowserPhone {
    /// Starts the browser and registers `user@domain` with `password` over the WebSocket
    /// `url`; the page is served from `127.0.0.1:page_port` (its Origin). Logs go to `dir`.
    pub fn start(
        url: &str,
        (user, password, domain): (&str, &str, &str),
        page_port: u16,
        dir: &Path,
    ) -> BrowserPhone {
        let browser_dir = repo_root().join("tests/browser");
        assert!(
            browser_dir.join("node_modules/jssip").is_dir()
                && browser_dir.join("node_modules/playwright-core").is_dir(),
            "the browser test's npm packages are missing: run scripts/install-test-deps.sh"
        );
        let cfg = serde_json::json!({
            "url": url,
            "user": user,
            "password": password,
            "domain": domain,
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

    /// Sends a command: `call NUMBER`, `hangup`, `unregister`.
    pub fn command(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("the browser driver is running");
    }

    /// Waits for an event named `name` (and matching `also`), failing on a page error.
    pub fn wait(&mut self, name: &str, also: impl Fn(&Value) -> bool) -> Value {
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
    pub fn frames_since(&self, from: usize) -> Vec<String> {
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

    /// Every event so far and the browser's log, for a failure message.
    pub fn report(&self) -> String {
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
pub fn assert_in_order(frames: &[String], expected: &[&str], what: &str) {
    let mut rest = frames.iter();
    for want in expected {
        assert!(
            rest.any(|f| f == want),
            "{what}: {want} missing (in order {expected:?}) from {frames:#?}"
        );
    }
}
