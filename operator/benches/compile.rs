//! Config compile benchmark: 1 000, 10 000 and 100 000 devices over 100 sites.
//!
//! `cargo bench -p switchboard-operator --bench compile` runs each size in a fresh child
//! process so each peak RSS (VmHWM) is its own. Reported per size: building the input (not
//! timed against the target), validate + compile + seal (the target: 100 000 under 1 s),
//! serialize + split into shards (the publish step), the config's size and shard count, and the
//! process's peak RSS (the target: under 256 MiB), which includes the input objects.

use std::process::Command;
use std::time::Instant;
use switchboard_crds::shards;
use switchboard_operator::compile::{compile, LastGood};
use switchboard_operator::index::{Change, Index, Op};
use switchboard_operator::samples;
use switchboard_operator::validate::validate;

const SITES: usize = 100;

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn build(devices: usize) -> Index {
    let mut index = Index::synced("switchboard");
    let per_site = devices.div_ceil(SITES);
    for s in 0..SITES {
        let mut site = samples::site(
            "bench",
            &format!("site{s:03}"),
            &format!("site{s:03}.bench.test"),
            "100000-199999",
        );
        site.spec.call_patterns = vec!["normalize".into()];
        site.spec.default_outbound_caller_id = Some("+74951234567".into());
        index.apply(Change::Site(Op::Apply(site)));
    }
    index.apply(Change::Pattern(Op::Apply(samples::pattern(
        "bench",
        "normalize",
        r"[^+*#\w]= ^8=7",
    ))));
    for i in 0..devices {
        let site = i / per_site;
        let name = format!("phone{i:06}");
        let mac = format!(
            "02:00:{:02x}:{:02x}:{:02x}:{:02x}",
            (i >> 24) & 0xff,
            (i >> 16) & 0xff,
            (i >> 8) & 0xff,
            i & 0xff
        );
        let d = samples::at_site(
            samples::device("bench", &name, &mac, &name, i as i64),
            &format!("site{site:03}"),
            &format!("{}", 100000 + i % per_site),
        );
        let secret = samples::generated_secret(&d, "Zq8v3KpW2mXc9RtY7nBd4LfH");
        index.apply(Change::Secret(Op::Apply(secret)));
        index.apply(Change::Device(Op::Apply(d)));
    }
    index
}

fn run_one(devices: usize) {
    let t = Instant::now();
    let index = build(devices);
    let build_ms = t.elapsed().as_secs_f64() * 1e3;
    let rss_input = peak_rss_mib();

    let t = Instant::now();
    let verdicts = validate(&index);
    let validate_ms = t.elapsed().as_secs_f64() * 1e3;
    let compiled = compile(&index, &verdicts, &LastGood::new(), None);
    let compile_ms = t.elapsed().as_secs_f64() * 1e3;
    if std::env::var_os("BENCH_DETAIL").is_some() {
        let t = Instant::now();
        let _ = switchboard_operator::compile::seal(compiled.config.clone());
        eprintln!(
            "  validate {validate_ms:.1} ms, seal alone {:.1} ms",
            t.elapsed().as_secs_f64() * 1e3
        );
    }
    assert!(verdicts.devices.is_empty(), "bench input must be valid");
    let published: usize = compiled
        .config
        .domains
        .iter()
        .map(|d| d.devices.len())
        .sum();
    assert_eq!(published, devices);

    let t = Instant::now();
    let split = shards::split(&compiled.config, shards::MAX_SHARD_BYTES);
    let split_ms = t.elapsed().as_secs_f64() * 1e3;
    let bytes: usize = split.iter().map(|s| s.data.len()).sum();
    println!(
        "{devices:>7} devices / {SITES} sites: validate+compile+seal {compile_ms:8.1} ms | \
         serialize+split {split_ms:7.1} ms | config {:6.1} MiB in {:3} shards | \
         input build {build_ms:7.1} ms | peak RSS {:6.1} MiB (input alone {:6.1} MiB)",
        bytes as f64 / 1048576.0,
        split.len(),
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
