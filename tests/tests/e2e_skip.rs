//! The kind end-to-end script's skip path: where its tools are missing it says which and exits
//! 77 without touching anything; with `E2E_REQUIRED=1` (CI) the same is a failure. The full
//! run needs Docker, kind and network and runs in the GitHub workflow (`.github/workflows/ci.yml`).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use switchboard_tests::chart::repo_root;

const SKIP: i32 = 77;

fn bash() -> PathBuf {
    ["/bin/bash", "/usr/bin/bash"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("bash")
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "switchboard-e2e-skip-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs tests/e2e/run.sh with only `path` on PATH and a clean environment.
fn run(path: &Path, extra_env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(bash());
    cmd.arg(repo_root().join("tests/e2e/run.sh"))
        .env_clear()
        .env("PATH", path)
        .env("HOME", path)
        .current_dir(path);
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    cmd.output().expect("bash runs the script")
}

fn fake_tool(dir: &Path, name: &str, body: &str) {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!{}\n{body}\n", bash().display())).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn without_any_tool_it_names_them_and_skips() {
    let dir = temp_dir("none");
    let out = run(&dir, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(SKIP), "stderr: {stderr}");
    assert!(stderr.contains("e2e SKIPPED"), "{stderr}");
    for tool in ["docker", "kind", "helm", "kubectl", "sipp"] {
        assert!(stderr.contains(tool), "names {tool}: {stderr}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn with_docker_but_no_daemon_it_says_so_and_skips_before_creating_anything() {
    let dir = temp_dir("nodaemon");
    let marker = dir.join("touched");
    // A docker CLI whose daemon is unreachable (as on a machine with the client only); the
    // others record any call, which must not happen.
    fake_tool(
        &dir,
        "docker",
        "[ \"$1\" = info ] && { echo 'Cannot connect to the Docker daemon' >&2; exit 1; }\nexit 1",
    );
    for tool in ["kind", "helm", "kubectl", "sipp"] {
        fake_tool(
            &dir,
            tool,
            &format!("echo {tool} \"$@\" >> {}\nexit 0", marker.display()),
        );
    }
    let out = run(&dir, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(SKIP), "stderr: {stderr}");
    assert!(stderr.contains("daemon is not reachable"), "{stderr}");
    assert!(
        !marker.exists(),
        "no tool was run: {:?}",
        std::fs::read_to_string(&marker)
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn when_required_missing_tools_fail_instead() {
    let dir = temp_dir("required");
    let out = run(&dir, &[("E2E_REQUIRED", "1")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(stderr.contains("e2e FAILED (E2E_REQUIRED=1)"), "{stderr}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_script_is_valid_bash() {
    let out = Command::new(bash())
        .arg("-n")
        .arg(repo_root().join("tests/e2e/run.sh"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_workflow_runs_the_suite_and_the_e2e_script() {
    let text = std::fs::read_to_string(repo_root().join(".github/workflows/ci.yml")).unwrap();
    let wf: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let runs = |job: &str| -> Vec<String> {
        wf["jobs"][job]["steps"]
            .as_sequence()
            .unwrap_or_else(|| panic!("job {job}"))
            .iter()
            .filter_map(|s| s["run"].as_str().map(str::to_string))
            .collect()
    };
    assert!(runs("test").iter().any(|r| r.contains(".ci/run")));
    assert!(runs("e2e").iter().any(|r| r.contains("tests/e2e/run.sh")));
    let e2e = wf["jobs"]["e2e"]["steps"].as_sequence().unwrap();
    let step = e2e
        .iter()
        .find(|s| {
            s["run"]
                .as_str()
                .is_some_and(|r| r.contains("tests/e2e/run.sh"))
        })
        .unwrap();
    assert_eq!(
        step["env"]["E2E_REQUIRED"], "1",
        "CI must not pass by skipping"
    );
    assert!(runs("images")
        .iter()
        .any(|r| r.contains("--target \"$target\"")));
}
