//! A program a test runs in the background: its output in a log file, stopped on drop.

use crate::process::wait_until_within;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

/// A background process with its stdout and stderr in `log`.
pub struct Daemon {
    /// What it is, for messages.
    pub name: String,
    /// Its output.
    pub log: PathBuf,
    child: Option<Child>,
}

impl Daemon {
    /// Starts `command` with stdin closed and its output appended to `DIR/NAME.log`.
    pub fn spawn(name: &str, mut command: Command, dir: &Path) -> Daemon {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("opening a log file");
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file handle"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name} ({command:?}): {e}"));
        Daemon {
            name: name.to_string(),
            log,
            child: Some(child),
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Everything it has printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// Waits until it has printed `marker` (deadline: [`crate::DEADLINE`]). Panics with its
    /// output if it exits first: a daemon that could not start (a port taken, say) fails the
    /// test at once, with the reason, instead of at the deadline of whatever waited on it.
    pub fn wait_for_output(&mut self, marker: &str) {
        crate::wait_until(&format!("{} to print {marker:?}", self.name), || {
            if self.output().contains(marker) {
                return Some(());
            }
            assert!(
                self.running(),
                "{} exited before printing {marker:?}:\n{}",
                self.name,
                self.output()
            );
            None
        });
    }

    /// Sends `signal` (`TERM`, `HUP`, `STOP`, `CONT`, …).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{signal} {} failed", self.name);
    }

    /// SIGTERM, then waits up to `limit` for it to exit (SIGKILL after that).
    pub fn stop_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let exited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wait_until_within(&format!("{} to exit", self.name), limit, || {
                child.try_wait().ok().flatten()
            })
        }));
        match exited {
            Ok(status) => Some(status),
            Err(_) => {
                let _ = child.kill();
                child.wait().ok()
            }
        }
    }
}

/// Lines of a daemon's log shown when a test fails while it runs.
const TAIL_ON_FAILURE: usize = 80;

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // A failing test shows what each of its programs said last (a phone's SIP trace).
        if std::thread::panicking() {
            let log = self.output();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(TAIL_ON_FAILURE)..];
            eprintln!(
                "--- {} (the last {} lines of {}):\n{}",
                self.name,
                tail.len(),
                self.log.display(),
                tail.join("\n")
            );
        }
    }
}
