//! Temporary directories, free ports and waits: the small things every process-level test needs.

use std::net::{TcpListener, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How long anything may take to become true, unless a test says otherwise.
pub const DEADLINE: Duration = Duration::from_secs(15);

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The repository's top folder.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit lives one folder below the repository root")
        .to_path_buf()
}

/// A fresh temporary directory `sb-NAME-PID-N`.
pub fn temp_dir(name: &str) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("sb-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creating a temporary directory");
    dir
}

/// A loopback port free for both UDP and TCP right now; see [`free_port_on`].
pub fn free_port() -> u16 {
    free_port_on("127.0.0.1")
}

/// [`free_port_on`]'s cursor: it looks next at `LOWEST_PORT + 2 * NEXT_PORT` (modulo its span),
/// so each port handed out keeps the one after it too.
static NEXT_PORT: AtomicU32 = AtomicU32::new(0);

/// The lowest port [`free_port_on`] hands out.
const LOWEST_PORT: u32 = 10_000;

/// A port free right now for UDP and TCP on the loopback address `ip` (and on 127.0.0.1), with
/// the port after it free for TCP too: baresip listens for SIP over TLS on its SIP port + 1.
///
/// Ports come from below the kernel's ephemeral range, so an outgoing connection (the kube
/// clients make many) cannot take one between this check and the daemon's own bind: in CI one
/// took baresip's TLS port (`bind: Address already in use`). A cursor shared by the process
/// keeps one test binary's ports apart; its start depends on the process id. Where the
/// ephemeral range leaves no room below it, the kernel picks (the port after is still checked).
pub fn free_port_on(ip: &str) -> u16 {
    let low = lowest_ephemeral_port();
    for _ in 0..1000 {
        let port = if low > LOWEST_PORT + 2_000 {
            next_low_port(low)
        } else {
            kernel_port(ip)
        };
        if port_pair_is_free(ip, port) {
            return port;
        }
    }
    panic!("no free port found on {ip}");
}

/// The next even port of the cursor, in `LOWEST_PORT..low`.
fn next_low_port(low: u32) -> u16 {
    let span = (low - LOWEST_PORT) / 2;
    let start = std::process::id() % span;
    let _ = NEXT_PORT.compare_exchange(0, start + 1, Ordering::SeqCst, Ordering::SeqCst);
    let n = NEXT_PORT.fetch_add(1, Ordering::SeqCst) % span;
    (LOWEST_PORT + 2 * n) as u16
}

/// A port the kernel chose for a UDP socket on `ip`.
fn kernel_port(ip: &str) -> u16 {
    let udp = UdpSocket::bind((ip, 0)).expect("binding a UDP socket on loopback");
    udp.local_addr().expect("local address").port()
}

/// Whether `port` is free for UDP and TCP on `ip` and 127.0.0.1, and `port + 1` for TCP.
fn port_pair_is_free(ip: &str, port: u16) -> bool {
    let Some(next) = port.checked_add(1) else {
        return false;
    };
    UdpSocket::bind((ip, port)).is_ok()
        && TcpListener::bind((ip, port)).is_ok()
        && TcpListener::bind(("127.0.0.1", port)).is_ok()
        && TcpListener::bind((ip, next)).is_ok()
        && TcpListener::bind(("127.0.0.1", next)).is_ok()
}

/// The lowest port of the kernel's ephemeral range (`/proc/sys/net/ipv4/ip_local_port_range`),
/// or Linux's default when it cannot be read.
fn lowest_ephemeral_port() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// Polls `f` until it returns `Some`, or panics after [`DEADLINE`] with `what`.
pub fn wait_until<T>(what: &str, f: impl FnMut() -> Option<T>) -> T {
    wait_until_within(what, DEADLINE, f)
}

/// Polls `f` every 50 ms until it returns `Some`, or panics after `limit` with `what`.
pub fn wait_until_within<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
