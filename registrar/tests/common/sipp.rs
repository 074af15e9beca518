//! Building blocks for tests that drive sipp by hand (phones that register then answer, callers,
//! upstreams): scenario files, argument lists, background runs, and reading what sipp received.
//! [`super::sipp`] runs one scenario once in a single call.

use super::{run_tool, spawn_tool, wait_until};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The path of a scenario file in `tests/sipp/`.
pub fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp")
        .join(name)
}

/// A scenario with placeholders filled in, written to `dir`.
pub fn scenario_with(dir: &Path, name: &str, subst: &[(&str, &str)]) -> PathBuf {
    let mut text = std::fs::read_to_string(scenario(name)).unwrap();
    for (k, v) in subst {
        text = text.replace(k, v);
    }
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// sipp's arguments to run the scenario at `path` against `remote` from `ip:port` over a sipp
/// transport (`u1`, `t1`), tracing messages and errors; no call limit or timeout (see
/// [`once_within`]).
pub fn sipp_args(remote: &str, path: &Path, ip: &str, port: u16, transport: &str) -> Vec<String> {
    vec![
        remote.to_string(),
        "-sf".into(),
        path.display().to_string(),
        "-i".into(),
        ip.into(),
        "-p".into(),
        port.to_string(),
        "-t".into(),
        transport.into(),
        "-nostdin".into(),
        "-trace_msg".into(),
        "-trace_err".into(),
    ]
}

/// `-m 1 -timeout SECS -timeout_error`: one call, a failure if not done within `secs`.
pub fn once_within(secs: u32) -> Vec<String> {
    vec![
        "-m".into(),
        "1".into(),
        "-timeout".into(),
        secs.to_string(),
        "-timeout_error".into(),
    ]
}

/// `-key user USER -key domain DOMAIN -au USER -ap PASSWORD` (no `-au`/`-ap` without a
/// password).
pub fn user_args(user: &str, domain: &str, password: Option<&str>) -> Vec<String> {
    let mut args: Vec<String> = ["-key", "user", user, "-key", "domain", domain]
        .map(String::from)
        .into();
    if let Some(p) = password {
        args.extend(["-au", user, "-ap", p].map(String::from));
    }
    args
}

/// Registers `user` of `domain` (digest with `password`) to `remote` from `ip:port` with
/// `proxy_register.xml`, once within `secs` seconds, in `dir`; asserts it succeeded.
pub fn register_phone(
    remote: &str,
    user: &str,
    domain: &str,
    password: &str,
    (ip, port): (&str, u16),
    dir: &Path,
    secs: u32,
) {
    let mut args = sipp_args(remote, &scenario("proxy_register.xml"), ip, port, "u1");
    args.extend(once_within(secs));
    args.extend(user_args(user, domain, Some(password)));
    let out = run_tool(
        "sipp",
        &args,
        dir,
        Duration::from_secs(u64::from(secs) + 10),
    );
    assert!(
        out.status.success(),
        "REGISTER of {user} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        super::sipp_logs(dir)
    );
}

/// Starts sipp with `args` in `dir` in the background, its output discarded.
pub fn spawn_sipp(args: &[String], dir: &Path) -> Child {
    spawn_tool("sipp", args, dir, Stdio::null)
}

/// Waits until something listens on `127.0.0.1:port` (TCP when `tcp`, else UDP): the port can
/// no longer be bound.
pub fn wait_listening(what: &str, port: u16, tcp: bool) {
    wait_until(what, || {
        let taken = if tcp {
            std::net::TcpListener::bind(("127.0.0.1", port)).is_err()
        } else {
            std::net::UdpSocket::bind(("127.0.0.1", port)).is_err()
        };
        taken.then_some(())
    });
}

/// Waits up to `limit` for `child` to exit; `None` (after killing it) if it did not.
pub fn wait_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The first line of a SIP message.
pub fn first_line(m: &str) -> &str {
    m.lines().next().unwrap_or("")
}

/// The messages whose first line starts with `prefix`.
pub fn with_first_line<'a>(msgs: &'a [String], prefix: &str) -> Vec<&'a String> {
    msgs.iter()
        .filter(|m| first_line(m).starts_with(prefix))
        .collect()
}

/// The requests of `method` among `msgs`.
pub fn requests<'a>(msgs: &'a [String], method: &str) -> Vec<&'a String> {
    with_first_line(msgs, &format!("{method} "))
}

/// The status lines of the responses among `msgs`, in order.
pub fn statuses(msgs: &[String]) -> Vec<String> {
    msgs.iter()
        .map(|m| first_line(m).to_string())
        .filter(|l| l.starts_with("SIP/2.0"))
        .collect()
}

/// Whether a `200` response is among `msgs`.
pub fn answered(msgs: &[String]) -> bool {
    statuses(msgs).iter().any(|s| s.starts_with("SIP/2.0 200"))
}

/// sipp's final counter `label` (`Successful call`, `Failed call`) from its stdout, if shown.
pub fn counter(stdout: &str, label: &str) -> Option<u32> {
    stdout
        .lines()
        .find(|l| l.trim_start().starts_with(label))
        .and_then(|l| l.split('|').nth(2))
        .and_then(|v| v.trim().parse().ok())
}
