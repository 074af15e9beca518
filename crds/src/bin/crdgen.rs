//! Writes the CRD YAML into the chart (plain files and the chart template), or with `--check`
//! fails when the checked-in files differ.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use switchboard_crds::manifests::{
    render_crd_template, render_crds, CHART_CRD_DIR, CHART_CRD_TEMPLATE,
};

fn main() -> ExitCode {
    let check = std::env::args().any(|a| a == "--check");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = root.join(CHART_CRD_DIR);
    if !check {
        std::fs::create_dir_all(&dir).expect("create CRD directory");
    }
    let mut files: Vec<(PathBuf, String)> = render_crds()
        .into_iter()
        .map(|(name, yaml)| (dir.join(name), yaml))
        .collect();
    files.push((root.join(CHART_CRD_TEMPLATE), render_crd_template()));
    let mut stale = Vec::new();
    for (path, text) in files {
        let shown = path
            .strip_prefix(&root)
            .unwrap_or(&path)
            .display()
            .to_string();
        if check {
            if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                stale.push(shown);
            }
        } else {
            write(&path, &text);
            println!("wrote {shown}");
        }
    }
    if stale.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "stale: {}; run `cargo run -p switchboard-crds --bin crdgen`",
            stale.join(", ")
        );
        ExitCode::FAILURE
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}
