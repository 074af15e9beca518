//! `helm lint --strict` and `helm template` on the chart, under every overlay of
//! `switchboard_tests::chart::overlays`, where a Helm engine exists: the `helm` binary on PATH
//! (as in CI), else Helm's Go SDK through the `helm-python-sdk` package
//! (`tests/helm/helm_sdk.py`), run by `$SWITCHBOARD_PYTHON` (`scripts/test.sh` sets it to the
//! virtual environment `scripts/install-test-deps.sh` installs the package into) or `python3`.
//! Each rendering is also compared, object by object, with the repository's own renderer
//! (`gotmpl`), so the checks that run without Helm are known to see what Helm sees. Without either engine the test prints why and passes: that is the only skip.

use serde_json::Value;
use std::collections::BTreeMap;
use std::process::Command;
use switchboard_tests::chart::{chart_dir, overlays, repo_root, yaml_documents, Chart};

const RELEASE: &str = "sb";
const NS: &str = "switchboard";

enum Engine {
    Binary,
    Sdk,
}

/// The Python that runs `helm_sdk.py`: `$SWITCHBOARD_PYTHON` when set, else `python3`.
fn python() -> String {
    std::env::var("SWITCHBOARD_PYTHON")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "python3".into())
}

/// `helm_sdk.py COMMAND`, run by [`python`]; the caller adds the arguments.
fn sdk(command: &str) -> Command {
    let mut c = Command::new(python());
    c.arg(repo_root().join("tests/helm/helm_sdk.py"))
        .arg(command);
    c
}

fn engine() -> Option<Engine> {
    let ok = |c: &mut Command| c.output().map(|o| o.status.success()).unwrap_or(false);
    if ok(Command::new("helm").arg("version").arg("--short")) {
        return Some(Engine::Binary);
    }
    if ok(Command::new(python()).args(["-c", "import helm_python"])) {
        return Some(Engine::Sdk);
    }
    None
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("runs");
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Lints; returns the findings of severity warning or worse.
fn lint(engine: &Engine, values: &Value, values_file: &std::path::Path) -> Vec<String> {
    match engine {
        Engine::Binary => {
            let out = Command::new("helm")
                .args(["lint", "--strict", "--namespace", NS])
                .arg(chart_dir())
                .arg("-f")
                .arg(values_file)
                .output()
                .expect("helm runs");
            if out.status.success() {
                Vec::new()
            } else {
                vec![format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                )]
            }
        }
        Engine::Sdk => {
            let report: Value = serde_json::from_str(&run(sdk("lint")
                .arg(chart_dir())
                .arg(values.to_string())
                .arg(NS)))
            .expect("JSON report");
            let mut problems: Vec<String> = report["messages"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|m| m["severity"].as_i64().unwrap_or(3) >= 2)
                .map(|m| m.to_string())
                .collect();
            problems.extend(
                report["errors"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e.to_string()),
            );
            problems
        }
    }
}

/// Renders; returns objects per template file name (files that render nothing are left out).
fn template(
    engine: &Engine,
    values: &Value,
    values_file: &std::path::Path,
) -> BTreeMap<String, Vec<Value>> {
    let mut files: BTreeMap<String, String> = BTreeMap::new();
    match engine {
        Engine::Binary => {
            let out = run(Command::new("helm")
                .args(["template", RELEASE])
                .arg(chart_dir())
                .args(["--namespace", NS, "-f"])
                .arg(values_file));
            let mut current = None;
            for line in out.lines() {
                if let Some(src) = line.strip_prefix("# Source: ") {
                    current = Some(src.to_string());
                    continue;
                }
                if let Some(c) = &current {
                    let f = files.entry(c.clone()).or_default();
                    f.push_str(line);
                    f.push('\n');
                }
            }
        }
        Engine::Sdk => {
            let out = run(sdk("template")
                .arg(chart_dir())
                .arg(values.to_string())
                .args([RELEASE, NS]));
            files = serde_json::from_str(&out).expect("JSON manifests");
        }
    }
    files
        .into_iter()
        .filter(|(f, _)| f.ends_with(".yaml"))
        .map(|(f, text)| {
            let name = f.rsplit('/').next().unwrap().to_string();
            let docs = yaml_documents(&text).unwrap_or_else(|e| panic!("{f}: {e}"));
            (name, docs)
        })
        .filter(|(_, docs)| !docs.is_empty())
        .collect()
}

#[test]
fn helm_lint_and_template_agree_with_the_builtin_renderer() {
    let Some(engine) = engine() else {
        println!(
            "SKIP helm lint/template: no Helm engine here (no `helm` on PATH, and {} cannot \
             import helm_python from the helm-python-sdk package). Install either to run it \
             (scripts/install-test-deps.sh puts the package into a virtual environment); CI \
             installs helm. The chart is still rendered and checked by tests/chart.rs.",
            python()
        );
        return;
    };
    let chart = Chart::load(&chart_dir()).unwrap();
    let dir = std::env::temp_dir().join(format!("switchboard-helm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, overlay) in overlays() {
        let file = dir.join(format!("{name}.yaml"));
        // YAML is a superset of JSON: `helm -f` reads it.
        std::fs::write(&file, overlay.to_string()).unwrap();
        let problems = lint(&engine, &overlay, &file);
        assert!(problems.is_empty(), "helm lint, {name}: {problems:#?}");

        let helm = template(&engine, &overlay, &file);
        let ours: BTreeMap<String, Vec<Value>> = chart
            .render(&overlay, RELEASE, NS)
            .unwrap()
            .files
            .into_iter()
            .filter(|(f, _)| f.ends_with(".yaml"))
            .map(|(f, text)| (f, yaml_documents(&text).unwrap()))
            .filter(|(_, docs)| !docs.is_empty())
            .collect();
        assert_eq!(
            helm.keys().collect::<Vec<_>>(),
            ours.keys().collect::<Vec<_>>(),
            "{name}: the same files render to objects"
        );
        for (f, docs) in &helm {
            assert_eq!(docs, &ours[f], "{name}/{f}: helm and gotmpl disagree");
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}
