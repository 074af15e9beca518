//! A real Kubernetes control plane for a test binary: `scripts/controlplane.sh up` (etcd,
//! kube-apiserver with RBAC and service-account tokens, kube-controller-manager with garbage
//! collection) on loopback, started once per test binary on first use and stopped by the
//! script's watchdog when the binary exits. `kubectl` runs against it as the admin.
//!
//! Building the binaries needs Go (once; they are cached outside the clone). Where neither Go
//! nor a cached build is there, [`ControlPlane::shared`] returns `None` and the test says it
//! skips, unless `SWITCHBOARD_REQUIRE_CONTROLPLANE=1` (CI sets it), which makes that a failure.

use crate::daemon::Daemon;
use crate::process::{repo_root, temp_dir, wait_until_within};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// The environment variable that makes a missing control plane a failure instead of a skip.
pub const REQUIRED: &str = "SWITCHBOARD_REQUIRE_CONTROLPLANE";

/// A running control plane.
pub struct ControlPlane {
    /// Its run directory: certificates, logs (`kube-apiserver.log`, …), pid files.
    pub dir: PathBuf,
    /// The admin kubeconfig (`system:masters`).
    pub kubeconfig: PathBuf,
    /// The `kubectl` built with the control plane (same release as the API server).
    pub kubectl: PathBuf,
}

static SHARED: OnceLock<Option<ControlPlane>> = OnceLock::new();

fn script() -> PathBuf {
    repo_root().join("scripts/controlplane.sh")
}

fn go_available() -> bool {
    Command::new("go")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether the binaries are built already (`controlplane.sh built`).
fn cached() -> bool {
    Command::new(script())
        .arg("built")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl ControlPlane {
    /// This test binary's control plane, started on first call (building the binaries first if
    /// needed). `None` means: skip, Go is missing and the control plane is not required.
    pub fn shared() -> Option<&'static ControlPlane> {
        SHARED
            .get_or_init(|| {
                if !go_available() && !cached() {
                    assert!(
                        !required(),
                        "{REQUIRED} is set but Go is missing and no control plane is cached: \
                         install Go (https://go.dev/dl) so scripts/controlplane.sh can build it"
                    );
                    eprintln!(
                        "SKIP: no Go toolchain and no cached control plane; \
                         scripts/controlplane.sh needs Go once to build kube-apiserver and etcd"
                    );
                    return None;
                }
                Some(ControlPlane::start())
            })
            .as_ref()
    }

    fn start() -> ControlPlane {
        let dir = temp_dir("controlplane");
        let out = Command::new(script())
            .arg("up")
            .arg(&dir)
            .arg("--watch")
            .arg(std::process::id().to_string())
            .stderr(Stdio::inherit())
            .output()
            .expect("running scripts/controlplane.sh");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "scripts/controlplane.sh up failed ({}): {stdout}",
            out.status
        );
        let kubeconfig = stdout
            .lines()
            .last()
            .and_then(|l| l.strip_prefix("KUBECONFIG="))
            .map(PathBuf::from)
            .unwrap_or_else(|| panic!("no KUBECONFIG= line from controlplane.sh: {stdout}"));
        let cp = ControlPlane {
            dir,
            kubeconfig,
            kubectl: kubectl_binary(),
        };
        cp.wait_for_default_service_account();
        cp
    }

    /// The controller-manager creates each namespace's `default` ServiceAccount; until it has
    /// for `default`, its controllers are not running yet.
    fn wait_for_default_service_account(&self) {
        wait_until_within(
            "the controller-manager to create the default ServiceAccount",
            Duration::from_secs(60),
            || {
                self.kubectl(&["get", "serviceaccount", "default", "-n", "default"])
                    .status
                    .success()
                    .then_some(())
            },
        );
    }

    /// The API server's HTTPS address (`https://127.0.0.1:PORT`).
    pub fn server(&self) -> String {
        let port = std::fs::read_to_string(self.dir.join("apiserver.port"))
            .expect("apiserver.port in the run directory");
        format!("https://127.0.0.1:{}", port.trim())
    }

    /// The cluster CA certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("pki/ca.crt")
    }

    /// `kubectl ARGS` as the admin; the output, whatever the exit status.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_as(&self.kubeconfig, args, None)
    }

    /// `kubectl ARGS` as the admin reading `stdin`; the output, whatever the exit status.
    pub fn kubectl_with_input(&self, args: &[&str], stdin: &str) -> Output {
        self.kubectl_as(&self.kubeconfig, args, Some(stdin))
    }

    /// `kubectl ARGS` as the admin with `stdin`; panics with kubectl's words if it fails.
    pub fn kubectl_ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl_as(&self.kubeconfig, args, stdin);
        assert!(
            out.status.success(),
            "kubectl {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kubectl ARGS -o json` as the admin, parsed; `None` when kubectl fails (not found).
    pub fn get_json(&self, args: &[&str]) -> Option<serde_json::Value> {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let out = self.kubectl(&all);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).expect("kubectl -o json prints JSON"))
    }

    /// A kubeconfig for ServiceAccount `namespace/name`, with a token from `kubectl create
    /// token` (valid for a day): what a pod running under it would use.
    pub fn service_account_kubeconfig(&self, namespace: &str, name: &str) -> PathBuf {
        let token = self.kubectl_ok(
            &["create", "token", name, "-n", namespace, "--duration=24h"],
            None,
        );
        let path = self.dir.join(format!("kubeconfig-{namespace}-{name}"));
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    \
             certificate-authority: {}\nusers:\n- name: {name}\n  user:\n    token: {}\n\
             contexts:\n- name: c\n  context: {{cluster: c, user: {name}, namespace: {namespace}}}\n\
             current-context: c\n",
            self.server(),
            self.ca_file().display(),
            token.trim()
        );
        std::fs::write(&path, text).expect("writing a kubeconfig");
        path
    }

    /// Stops one component (`kube-apiserver`, `etcd`, `kube-controller-manager`).
    pub fn stop(&self, component: &str) {
        self.script_on_component("stop", component);
    }

    /// Starts a stopped component again with the same flags, returning once it is healthy.
    pub fn start_again(&self, component: &str) {
        self.script_on_component("start", component);
    }

    fn script_on_component(&self, verb: &str, component: &str) {
        let status = Command::new(script())
            .arg(verb)
            .arg(&self.dir)
            .arg(component)
            .status()
            .expect("running scripts/controlplane.sh");
        assert!(
            status.success(),
            "controlplane.sh {verb} {component} failed"
        );
    }

    /// Puts `daemon` in the control plane's care: it is stopped with it (by `down`, or the
    /// watchdog when this test binary exits), even if the test never drops it.
    pub fn adopt(&self, daemon: &Daemon) {
        let procs = self.dir.join("procs");
        std::fs::create_dir_all(&procs).expect("creating procs/");
        std::fs::write(
            procs.join(format!("{}.pid", daemon.name)),
            daemon.pid().to_string(),
        )
        .expect("writing a pid file");
    }

    /// The last `lines` lines of a component's log, for a failing assertion's message.
    pub fn log_tail(&self, component: &str, lines: usize) -> String {
        let text =
            std::fs::read_to_string(self.dir.join(format!("{component}.log"))).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

fn required() -> bool {
    std::env::var(REQUIRED).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The folder of the built binaries, as `controlplane.sh build` prints it, and its kubectl.
fn kubectl_binary() -> PathBuf {
    let out = Command::new(script())
        .arg("build")
        .output()
        .expect("running scripts/controlplane.sh build");
    assert!(out.status.success(), "controlplane.sh build failed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    PathBuf::from(stdout.lines().last().unwrap_or("").trim()).join("kubectl")
}

impl ControlPlane {
    /// `kubectl ARGS` as the admin with `dir` first on `PATH` and `KUBECONFIG` in the environment,
    /// as a person runs a kubectl plugin installed in `dir` (kubectl finds `kubectl-NAME` on
    /// `PATH`, and takes no flags before a plugin's name); the output, whatever the status.
    pub fn kubectl_plugin(&self, dir: &Path, args: &[&str]) -> Output {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut dirs = vec![dir.to_path_buf()];
        dirs.extend(std::env::split_paths(&path));
        Command::new(&self.kubectl)
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("PATH", std::env::join_paths(dirs).expect("PATH entries"))
            .stdin(Stdio::null())
            .output()
            .expect("running the control plane's kubectl")
    }

    /// `kubectl --kubeconfig KUBECONFIG ARGS` with `stdin` (a ServiceAccount's kubeconfig, say);
    /// the output, whatever the exit status.
    pub fn kubectl_as(&self, kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = Command::new(&self.kubectl)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running the control plane's kubectl");
        if let Some(text) = stdin {
            child
                .stdin
                .take()
                .expect("piped stdin")
                .write_all(text.as_bytes())
                .expect("writing kubectl's stdin");
        }
        child.wait_with_output().expect("waiting for kubectl")
    }
}
