//! Config compile benchmark: 1 000, 10 000 and 100 000 devices over 100 sites.
//!
//! `cargo bench -p switchboard-operator --bench compile` runs each size in a fresh child
//! process so each peak RSS (VmHWM) is its own. Reported per size: building the index (not
//! timed against the target; devices and their Secrets arrive as a watcher's initial list and
//! go through the runtime's own conversion, so the index holds what the running operator's
//! does), validate + compile + seal (the target: 100 000 under 1 s), the publish plan
//! (serialize + split into shard Secrets, then taken into the index as written), the config's
//! size and shard count, the status writes a first pass plans (every object's) and the re-plan
//! of the unchanged cluster (none), a second validate + compile + publish after one password
//! changed (with the published config in the index), and the process's peak RSS over all of it
//! (the target: under 256 MiB). `BENCH_DETAIL=1` adds live heap and
//! peak RSS after each step.

use futures::executor::block_on;
use futures::{stream, StreamExt};
use k8s_openapi::jiff::Timestamp;
use kube::runtime::watcher::Event;
use std::alloc::{GlobalAlloc, Layout, System};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;
use switchboard_crds::SipDevice;
use switchboard_operator::compile::{compile, LastGood};
use switchboard_operator::index::{Change, Device, Index, Op, SecretEntry};
use switchboard_operator::runtime::watch;
use switchboard_operator::validate::validate;
use switchboard_operator::{publish, samples, status};

const SITES: usize = 100;

/// Counts live heap bytes, so `BENCH_DETAIL=1` can say which phase holds what.
struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size(), Ordering::Relaxed);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        LIVE.fetch_add(n, Ordering::Relaxed);
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        System.realloc(p, l, n)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live_mib() -> f64 {
    LIVE.load(Ordering::Relaxed) as f64 / 1048576.0
}

fn detail(what: &str) {
    if std::env::var_os("BENCH_DETAIL").is_some() {
        eprintln!(
            "  {what:<28} live heap {:7.1} MiB, RSS {:7.1} MiB, peak RSS {:7.1} MiB",
            live_mib(),
            proc_status_mib("VmRSS:"),
            peak_rss_mib()
        );
    }
}

fn peak_rss_mib() -> f64 {
    proc_status_mib("VmHWM:")
}

fn proc_status_mib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn device(i: usize, per_site: usize) -> SipDevice {
    let site = i / per_site;
    let name = format!("phone{i:06}");
    let mac = format!(
        "02:00:{:02x}:{:02x}:{:02x}:{:02x}",
        (i >> 24) & 0xff,
        (i >> 16) & 0xff,
        (i >> 8) & 0xff,
        i & 0xff
    );
    samples::at_site(
        samples::device("bench", &name, &mac, &name, i as i64),
        &format!("site{site:03}"),
        &format!("{}", 100000 + i % per_site),
    )
}

/// A watcher's initial list of `n` objects made one at a time, through the runtime's own
/// conversion ([`watch::to_changes`]): each object is reduced as it arrives and the list is
/// applied whole, as the running operator does.
fn list<K, R>(
    index: &mut Index,
    n: usize,
    make: impl Fn(usize) -> K + Send + 'static,
    convert: fn(K) -> R,
    wrap: fn(Op<R>) -> Change,
) where
    K: Send + 'static,
    R: Send + 'static,
{
    let events = stream::iter(
        std::iter::once(Event::Init)
            .chain((0..n).map(move |i| Event::InitApply(make(i))))
            .chain(std::iter::once(Event::InitDone))
            .map(Ok),
    );
    let changes = block_on(watch::to_changes(events, convert, wrap).collect::<Vec<_>>());
    for change in changes {
        index.apply(change.expect("no watch error"));
    }
}

fn build(devices: usize) -> Index {
    let mut index = Index::new("switchboard");
    let per_site = devices.div_ceil(SITES);
    let sites = (0..SITES)
        .map(|s| {
            let mut site = samples::site(
                "bench",
                &format!("site{s:03}"),
                &format!("site{s:03}.bench.test"),
                "100000-199999",
            );
            site.spec.call_patterns = vec!["normalize".into()];
            site.spec.default_outbound_caller_id = Some("+74951234567".into());
            site
        })
        .collect();
    index.apply(Change::Site(Op::Replace(sites)));
    let pattern = samples::pattern("bench", "normalize", r"[^+*#\w]= ^8=7");
    index.apply(Change::Pattern(Op::Replace(vec![pattern])));
    index.apply(Change::Registration(Op::Replace(vec![])));
    list(
        &mut index,
        devices,
        move |i| samples::generated_secret(&device(i, per_site), "Zq8v3KpW2mXc9RtY7nBd4LfH"),
        SecretEntry::from,
        Change::Secret,
    );
    list(
        &mut index,
        devices,
        move |i| device(i, per_site),
        Device::from,
        Change::Device,
    );
    assert!(index.is_synced());
    index
}

fn run_one(devices: usize) {
    let t = Instant::now();
    let mut index = build(devices);
    let build_ms = t.elapsed().as_secs_f64() * 1e3;
    let rss_input = peak_rss_mib();
    detail("index built");

    let t = Instant::now();
    let verdicts = validate(&index);
    let validate_ms = t.elapsed().as_secs_f64() * 1e3;
    detail("validated");
    let mut compiled = compile(&index, &verdicts, &LastGood::new(), None);
    let compile_ms = t.elapsed().as_secs_f64() * 1e3;
    detail("compiled");
    if std::env::var_os("BENCH_DETAIL").is_some() {
        eprintln!("  validate {validate_ms:.1} ms");
    }
    assert!(verdicts.devices.is_empty(), "bench input must be valid");
    let published: usize = compiled
        .config
        .domains
        .iter()
        .map(|d| d.devices.len())
        .sum();
    assert_eq!(published, devices);

    // What a pass does next: plan the shard Secrets to write.
    let t = Instant::now();
    let plan = publish::plan(&mut compiled.config, &index).expect("nothing published yet");
    let publish_ms = t.elapsed().as_secs_f64() * 1e3;
    detail("publish planned");
    let (shards, bytes) = (plan.writes.len(), plan.bytes);
    // Written: the index takes each stored shard as the runtime does.
    for secret in plan.writes {
        index.apply(Change::secret(Op::Apply(secret)));
    }
    assert_eq!(
        index.published_hash().as_deref(),
        Some(compiled.config.hash.as_str())
    );
    assert!(index.published.is_some());
    detail("published");

    // Then the statuses: on a first pass every object gets one. Each body is serialized as the
    // write would, and only what the index folds in afterwards is kept.
    let t = Instant::now();
    let mut applied = Vec::new();
    for update in status::plan(&index, &verdicts, &compiled, Timestamp::now()) {
        std::hint::black_box(serde_json::to_vec(&update.body).expect("body serializes"));
        applied.push(status::Applied::of(update));
    }
    let status_ms = t.elapsed().as_secs_f64() * 1e3;
    let writes = applied.len();
    detail("statuses planned");
    for a in applied {
        status::merge(&mut index, a);
    }
    // The next pass over the unchanged cluster: nothing to write.
    let t = Instant::now();
    let again = status::plan(&index, &verdicts, &compiled, Timestamp::now()).count();
    let steady_ms = t.elapsed().as_secs_f64() * 1e3;
    assert_eq!(again, 0, "an unchanged cluster writes no status");
    drop((verdicts, compiled));

    // A later pass: one password rotated, so a new config replaces the published one while
    // the index holds everything a running operator holds.
    let per_site = devices.div_ceil(SITES);
    let rotated = samples::generated_secret(&device(0, per_site), "Rotated0Rotated0Rotated0");
    index.apply(Change::secret(Op::Apply(rotated)));
    let t = Instant::now();
    let verdicts = validate(&index);
    let mut compiled = compile(&index, &verdicts, &LastGood::new(), None);
    let recompile_ms = t.elapsed().as_secs_f64() * 1e3;
    detail("recompiled");
    let plan = publish::plan(&mut compiled.config, &index).expect("a new config");
    for secret in plan.writes {
        index.apply(Change::secret(Op::Apply(secret)));
    }
    assert_eq!(
        index.published_hash().as_deref(),
        Some(compiled.config.hash.as_str())
    );
    detail("republished");
    println!(
        "{devices:>7} devices / {SITES} sites: validate+compile+seal {compile_ms:6.1} ms \
         (again after a change {recompile_ms:6.1} ms) | \
         publish plan {publish_ms:6.1} ms ({:5.1} MiB in {shards:2} shards) | \
         statuses {status_ms:6.1} ms ({writes} writes; unchanged {steady_ms:5.1} ms) | \
         index build {build_ms:6.1} ms | peak RSS {:6.1} MiB (index alone {:6.1} MiB)",
        bytes as f64 / 1048576.0,
        peak_rss_mib(),
        rss_input,
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(n) = args
        .iter()
        .position(|a| a == "--devices")
        .and_then(|i| args.get(i + 1))
    {
        run_one(n.parse().expect("--devices N"));
        return;
    }
    let exe = std::env::current_exe().expect("own path");
    for n in [1_000, 10_000, 100_000] {
        let status = Command::new(&exe)
            .args(["--devices", &n.to_string()])
            .status()
            .expect("run child");
        assert!(status.success(), "bench child for {n} devices failed");
    }
}
