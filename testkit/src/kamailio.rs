//! Debian's `kamailio` as a real SIP upstream (the registrar's uac_kamailio.rs and
//! uac_inbound_kamailio.rs, the control-plane tests' SipRegistrations): each test brings its
//! own config (a `.cfg` next to it, with `@NAME@` placeholders), and the harness
//! runs it on a free loopback port (UDP and TCP) in a temporary run directory: config check
//! (`kamailio -c`), start in the foreground, up once it answers OPTIONS, `kamcmd` on its ctl
//! socket, SIGTERM then SIGKILL on drop.
//!
//! Kamailio is required (`.ci/run` installs it with scripts/install-test-deps.sh); a missing one
//! fails the test.

use crate::process::{free_port, temp_dir, wait_until};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The address Kamailio listens on (`@IP@`).
pub const IP: &str = "127.0.0.1";

/// The installed `tool` (`kamailio`, `kamcmd`), which are in sbin.
fn require(tool: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"] {
        let p = Path::new(dir).join(tool);
        if p.exists() {
            return p;
        }
    }
    panic!("{tool} is not installed: the Kamailio tests need Debian's kamailio (scripts/install-test-deps.sh installs it)");
}

/// The `@NAME@` placeholders (upper case and `_`) left in `text`.
fn placeholders(text: &str) -> Vec<&str> {
    text.match_indices('@')
        .filter_map(|(i, _)| {
            let name = &text[i + 1..][..text[i + 1..].find('@')?];
            (!name.is_empty() && name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'))
                .then_some(&text[i..i + name.len() + 2])
        })
        .collect()
}

/// A Kamailio process on [`IP`] and a free port, in its own run directory (config, ctl socket,
/// `kamailio.log` of every start). The directory is removed on drop, or kept (and named on
/// stderr) when the test panics.
pub struct Kamailio {
    /// Its run directory (`@DIR@`).
    pub dir: PathBuf,
    /// Its SIP port, UDP and TCP (`@PORT@`); kept across restarts.
    pub port: u16,
    config: PathBuf,
    child: Option<Child>,
}

impl Kamailio {
    /// Writes `config` into a fresh run directory with its placeholders substituted: `@IP@`,
    /// `@PORT@`, `@DIR@`, `@USERS@` (one script line a `(user, password)` of `users`, setting
    /// `$var(pw)` for `$au`: plain passwords in memory) and each `(placeholder, value)` of
    /// `extra` (`("@ALGORITHM@", "MD5")`). Checks it with `kamailio -c`, starts it and waits
    /// until it answers OPTIONS.
    pub fn start(
        name: &str,
        config: &str,
        users: &[(&str, &str)],
        extra: &[(&str, &str)],
    ) -> Kamailio {
        let dir = temp_dir(&format!("kamailio-{name}"));
        let port = free_port();
        let users: String = users
            .iter()
            .map(|(u, p)| format!("\tif ($au == \"{u}\") {{ $var(pw) = \"{p}\"; }}\n"))
            .collect();
        let mut cfg = config
            .replace("@IP@", IP)
            .replace("@PORT@", &port.to_string())
            .replace("@DIR@", dir.to_str().unwrap())
            .replace("@USERS@", &users);
        for (placeholder, value) in extra {
            assert!(
                cfg.contains(placeholder),
                "the kamailio config has no {placeholder}"
            );
            cfg = cfg.replace(placeholder, value);
        }
        let left = placeholders(&cfg);
        assert!(
            left.is_empty(),
            "kamailio config placeholders left: {left:?}"
        );
        let path = dir.join("kamailio.cfg");
        std::fs::write(&path, cfg).unwrap();
        let check = Command::new(require("kamailio"))
            .arg("-c")
            .arg("-f")
            .arg(&path)
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
            config: path,
            child: None,
        };
        k.spawn();
        k
    }

    /// Starts the process (its output appended to `kamailio.log`) and waits until it answers
    /// an OPTIONS with 200.
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
        let port = self.port;
        let options = format!(
            "OPTIONS sip:ping@{IP}:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKping\r\nFrom: <sip:t@{IP}>;tag=1\r\nTo: <sip:ping@{IP}>\r\nCall-ID: ping@test\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        let what = format!(
            "kamailio to answer OPTIONS on {IP}:{port} (log: {})",
            self.dir.join("kamailio.log").display()
        );
        wait_until(&what, || {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                panic!("kamailio exited with {status}; log:\n{}", self.log());
            }
            let _ = sock.send_to(options.as_bytes(), (IP, port));
            let mut buf = [0u8; 2048];
            matches!(sock.recv_from(&mut buf), Ok((n, _)) if buf[..n].starts_with(b"SIP/2.0 200"))
                .then_some(())
        });
    }

    /// SIGTERM, then SIGKILL if it is still there after 5 s; waits until it is gone. Nothing
    /// when it is not running.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if child.try_wait().ok().flatten().is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again after [`Kamailio::stop`], on the same port with the same config (usrloc
    /// in memory: no bindings).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop() it first");
        self.spawn();
    }

    /// Its log so far (every start).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("kamailio.log")).unwrap_or_default()
    }

    /// `kamcmd ul.lookup location USER` on its ctl socket (`unix:@DIR@/ctl`): the bindings'
    /// output, or `None` when the AOR has none.
    pub fn lookup(&self, user: &str) -> Option<String> {
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
        if std::thread::panicking() {
            eprintln!("kamailio run directory kept: {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
