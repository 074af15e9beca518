//! Writes the CRD YAML into the chart, or with `--check` fails when the checked-in files differ.

use std::path::PathBuf;
use std::process::ExitCode;
use switchboard_crds::manifests::{render_crds, CHART_CRD_DIR};

fn main() -> ExitCode {
    let check = std::env::args().any(|a| a == "--check");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(CHART_CRD_DIR);
    if !check {
        std::fs::create_dir_all(&dir).expect("create CRD directory");
    }
    let mut stale = Vec::new();
    for (name, yaml) in render_crds() {
        let path = dir.join(&name);
        if check {
            if std::fs::read_to_string(&path).ok().as_deref() != Some(yaml.as_str()) {
                stale.push(name);
            }
        } else {
            std::fs::write(&path, yaml).expect("write CRD");
            println!("wrote {}", path.display());
        }
    }
    if stale.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "stale CRDs in {CHART_CRD_DIR}: {}; run `cargo run -p switchboard-crds --bin crdgen`",
            stale.join(", ")
        );
        ExitCode::FAILURE
    }
}
