//! Switchboard installed on a real control plane the way the chart installs it, minus the pods:
//! the chart's CRDs, its ServiceAccounts and RBAC (rendered from `charts/switchboard`), and the
//! operator and one registrar running as local processes under those ServiceAccounts' tokens —
//! never as the admin — so the chart's RBAC is what lets them work.

use crate::chart::{chart_dir, Chart};
use crate::resources::{get, secret_value, LIMIT};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use switchboard_testkit::controlplane::ControlPlane;
use switchboard_testkit::daemon::Daemon;
use switchboard_testkit::https::https_get;
use switchboard_testkit::{free_port, http_get, metric_sum, temp_dir, wait_until_within};

/// The release's namespace (config Secrets, the operator's Lease).
pub const NAMESPACE: &str = "switchboard-system";
/// The Helm release name the RBAC is rendered for.
pub const RELEASE: &str = "switchboard";

/// A built binary of the workspace, next to the running test binary's `deps/` folder.
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binaries live in target/<profile>/deps");
    let bin = profile_dir.join(name);
    assert!(
        bin.exists(),
        "{} is not built: run `cargo build --workspace --bins` first (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// Applies the chart's CRDs the plain way (`kubectl apply` of `files/crds/`, as a cluster that
/// sets `crds.install=false` does) and waits until the API server serves them (Established).
pub fn install_crds(cp: &ControlPlane) {
    let crds = chart_dir().join("files/crds");
    cp.kubectl_ok(
        &[
            "apply",
            "--server-side",
            "-f",
            crds.to_str().expect("utf-8 path"),
        ],
        None,
    );
    // `kubectl wait` fails outright on a CRD that has no conditions yet (just created), so
    // it is asked again until it answers.
    wait_until_within(
        "the CRDs to be Established",
        Duration::from_secs(60),
        || {
            cp.kubectl(&[
                "wait",
                "--for=condition=Established",
                "--timeout=10s",
                "crd/sites.sip.switchboard.dev",
                "crd/sipdevices.sip.switchboard.dev",
                "crd/callpatterns.sip.switchboard.dev",
                "crd/sipregistrations.sip.switchboard.dev",
            ])
            .status
            .success()
            .then_some(())
        },
    );
}

/// The chart's ServiceAccounts, Roles and bindings for `values`, as one YAML stream.
pub fn rendered_rbac(values: &Value) -> String {
    let chart = Chart::load(&chart_dir()).expect("loading the chart");
    let rendered = chart
        .render(values, RELEASE, NAMESPACE)
        .expect("rendering the chart");
    ["operator-rbac.yaml", "registrar-rbac.yaml"]
        .iter()
        .map(|f| rendered.files[*f].clone())
        .collect::<Vec<_>>()
        .join("\n---\n")
}

/// The chart's values with the provisioning service on, telling phones to register at
/// `sip_server`.
pub fn provisioning_values(sip_server: &str) -> Value {
    json!({"provisioning": {"enabled": true, "sipServer": sip_server}})
}

/// Creates `namespace` unless it exists.
pub fn ensure_namespace(cp: &ControlPlane, namespace: &str) {
    let manifest = format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {namespace}\n");
    cp.kubectl_ok(&["apply", "-f", "-"], Some(&manifest));
}

/// The operator and one registrar, running under the chart's ServiceAccounts.
pub struct Installation {
    /// Logs and kubeconfigs.
    pub dir: PathBuf,
    /// The operator's process.
    pub operator: Daemon,
    /// The registrar's process.
    pub registrar: Daemon,
    /// The operator's `/metrics`, `/healthz`, `/readyz` port.
    pub operator_http: u16,
    /// The registrar's SIP port (UDP and TCP on 127.0.0.1).
    pub sip_port: u16,
    /// The registrar's HTTP port (`/metrics`, `/healthz`, `/readyz`).
    pub registrar_http: u16,
    /// The registrar's debug HTTP port (`/debug/*`, on 127.0.0.1).
    pub registrar_debug_http: u16,
    /// The registrar's WSS port (SIP over secure WebSocket for browser phones, on 127.0.0.1,
    /// with a self-signed certificate for localhost and 127.0.0.1).
    pub wss_port: u16,
    /// The kubeconfig of the operator's ServiceAccount.
    pub operator_kubeconfig: PathBuf,
    /// The kubeconfig of the registrar's ServiceAccount.
    pub registrar_kubeconfig: PathBuf,
    /// The registrar's extra arguments, for a restart.
    registrar_args: Vec<String>,
}

impl Installation {
    /// Installs CRDs and RBAC (chart defaults), then starts the operator and a registrar
    /// (replica `registrar-0`) and waits until both are ready.
    pub fn start(cp: &ControlPlane) -> Installation {
        Installation::start_with(cp, &[])
    }

    /// [`Installation::start`] with `registrar_args` added to the registrar's command line.
    pub fn start_with(cp: &ControlPlane, registrar_args: &[&str]) -> Installation {
        Installation::start_configured(cp, &json!({}), &[], registrar_args)
    }

    /// The namespaced install mode: the operator may read Secrets only in `tenants` (the chart's
    /// `operator.secretNamespaces`, which creates them here first).
    pub fn start_namespaced(cp: &ControlPlane, tenants: &[&str]) -> Installation {
        for t in tenants {
            ensure_namespace(cp, t);
        }
        let values = json!({"operator": {"secretNamespaces": tenants}});
        let env = [("SWITCHBOARD_SECRET_NAMESPACES", tenants.join(","))];
        Installation::start_configured(cp, &values, &env, &[])
    }

    /// CRDs, the RBAC rendered with `values`, the operator with `operator_env` and the registrar
    /// with WSS (see [`Installation::wss_port`]) and `extra_registrar_args`.
    fn start_configured(
        cp: &ControlPlane,
        values: &Value,
        operator_env: &[(&str, String)],
        extra_registrar_args: &[&str],
    ) -> Installation {
        install_crds(cp);
        ensure_namespace(cp, NAMESPACE);
        cp.kubectl_ok(&["apply", "-f", "-"], Some(&rendered_rbac(values)));
        let dir = temp_dir("installation");
        let operator_kubeconfig =
            cp.service_account_kubeconfig(NAMESPACE, &format!("{RELEASE}-operator"));
        let registrar_kubeconfig =
            cp.service_account_kubeconfig(NAMESPACE, &format!("{RELEASE}-registrar"));
        let operator_http = free_port();
        let operator = start_operator(
            cp,
            &dir,
            &operator_kubeconfig,
            (operator_http, "operator-0"),
            operator_env,
        );
        let (sip_port, registrar_http, registrar_debug_http) =
            (free_port(), free_port(), free_port());
        let wss_port = free_port();
        let mut registrar_args: Vec<String> = wss_args(&dir, wss_port);
        registrar_args.extend(extra_registrar_args.iter().map(|a| a.to_string()));
        let args: Vec<&str> = registrar_args.iter().map(String::as_str).collect();
        let registrar = start_registrar(
            cp,
            &dir,
            &registrar_kubeconfig,
            (sip_port, registrar_http, registrar_debug_http),
            &args,
        );
        let inst = Installation {
            dir,
            operator,
            registrar,
            operator_http,
            sip_port,
            registrar_http,
            registrar_debug_http,
            wss_port,
            operator_kubeconfig,
            registrar_kubeconfig,
            registrar_args,
        };
        inst.wait_ready(inst.operator_http, "operator");
        inst.wait_ready(inst.registrar_http, "registrar");
        inst
    }

    fn wait_ready(&self, port: u16, what: &str) {
        let daemon = if what == "operator" {
            &self.operator
        } else {
            &self.registrar
        };
        let ready = std::panic::catch_unwind(|| {
            wait_until_within(
                &format!("the {what} to be ready"),
                Duration::from_secs(60),
                || http_get(port, "/readyz").and_then(|(s, _)| (s == 200).then_some(())),
            )
        });
        assert!(
            ready.is_ok(),
            "{what} not ready; its log:\n{}",
            daemon.output()
        );
    }

    /// Stops the registrar as a rolling update does (SIGTERM; its in-memory bindings are
    /// lost), starts it again on the same ports with the same arguments, and waits until it
    /// is ready.
    pub fn restart_registrar(&mut self, cp: &ControlPlane) {
        let stopped = self.registrar.stop_within(Duration::from_secs(20));
        assert!(stopped.is_some(), "the registrar was not running");
        let args: Vec<&str> = self.registrar_args.iter().map(String::as_str).collect();
        self.registrar = start_registrar(
            cp,
            &self.dir,
            &self.registrar_kubeconfig,
            (
                self.sip_port,
                self.registrar_http,
                self.registrar_debug_http,
            ),
            &args,
        );
        self.wait_ready(self.registrar_http, "registrar");
    }

    /// Starts the provisioning service as replica `provisioning-0` under the chart's
    /// `provisioning` ServiceAccount (its RBAC, rendered only when `provisioning.enabled`,
    /// applied here), with a self-signed certificate, telling phones to register with this
    /// installation's registrar; waits until it answers HTTPS.
    pub fn start_provisioning(&self, cp: &ControlPlane) -> Provisioning {
        let chart = Chart::load(&chart_dir()).expect("loading the chart");
        let values = provisioning_values("127.0.0.1");
        let rendered = chart
            .render(&values, RELEASE, NAMESPACE)
            .expect("rendering the chart");
        // Once per test binary: two tests creating the same ServiceAccount at once make one
        // `kubectl apply` fail with AlreadyExists.
        static RBAC: std::sync::OnceLock<()> = std::sync::OnceLock::new();
        RBAC.get_or_init(|| {
            let rbac = &rendered.files["provisioning-rbac.yaml"];
            cp.kubectl_ok(&["apply", "-f", "-"], Some(rbac));
        });
        let kubeconfig =
            cp.service_account_kubeconfig(NAMESPACE, &format!("{RELEASE}-provisioning"));
        // Each test may start its own: files named by port.
        let port = free_port();
        let ca = self.dir.join(format!("provisioning-{port}-ca.pem"));
        let sip_port = self.sip_port.to_string();
        let mut cmd = Command::new(workspace_binary("switchboard-provisioning"));
        cmd.env("KUBECONFIG", &kubeconfig)
            .env("RUST_LOG", "info,kube=warn")
            .env("NO_COLOR", "1")
            .env("POD_NAME", "provisioning-0")
            .arg("--kube")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--http")
            .arg(format!("127.0.0.1:{}", free_port()))
            .arg("--self-signed-cert-out")
            .arg(&ca)
            .args(["--sip-server", "127.0.0.1"])
            .args(["--sip-udp-port", &sip_port, "--sip-tcp-port", &sip_port]);
        let daemon = Daemon::spawn(&format!("provisioning-{port}"), cmd, &self.dir);
        cp.adopt(&daemon);
        let up = std::panic::catch_unwind(|| {
            wait_until_within(
                "the provisioning service to answer",
                Duration::from_secs(60),
                || {
                    let status = https_get(port, "/healthz", &[], &ca)?.status;
                    (status == 200).then_some(())
                },
            )
        });
        assert!(
            up.is_ok(),
            "provisioning not up; its log:\n{}",
            daemon.output()
        );
        Provisioning { daemon, port, ca }
    }

    /// The registrar's SIP address.
    pub fn sip_addr(&self) -> std::net::SocketAddr {
        ([127, 0, 0, 1], self.sip_port).into()
    }

    /// Another operator replica, `identity`, under the same ServiceAccount: it competes for the
    /// Lease. Returns it and its HTTP port.
    pub fn another_operator(&self, cp: &ControlPlane, identity: &str) -> (Daemon, u16) {
        let http = free_port();
        let d = start_operator(
            cp,
            &self.dir,
            &self.operator_kubeconfig,
            (http, identity),
            &[],
        );
        (d, http)
    }

    /// How many global passes the operator has finished (`switchboard_operator_reconciles_total`).
    pub fn operator_passes(&self) -> f64 {
        http_get(self.operator_http, "/metrics")
            .map(|(_, body)| metric_sum(&body, "switchboard_operator_reconciles_total"))
            .unwrap_or(0.0)
    }

    /// Runs `check`; when it panics, prints both processes' output before passing the panic on.
    pub fn explain<T>(&self, check: impl FnOnce() -> T) -> T {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(check)) {
            Ok(v) => v,
            Err(panic) => {
                eprintln!("{}", self.logs());
                std::panic::resume_unwind(panic)
            }
        }
    }

    /// Waits until the registrar runs a config that holds `user`'s HA1 for `password` in
    /// `realm`: the config the operator last published has it, and its hash is the one in the
    /// registrar's `switchboard_config_info` (both read afresh each time, as other tests publish
    /// meanwhile). A phone that registers sooner is refused and backs off for longer than a
    /// test waits.
    pub fn wait_in_force(&self, cp: &ControlPlane, user: &str, realm: &str, password: &str) {
        use switchboard_crds::shards::{secret_name, DATA_KEY, HASH_ANNOTATION};
        let (md5, _) = switchboard_crds::config::ha1(user, realm, password);
        self.explain(|| {
            wait_until_within(
                "the registrar to run the device's credentials",
                LIMIT,
                || {
                    let shard = get(cp, NAMESPACE, "secret", &secret_name(0))?;
                    let config = secret_value(cp, NAMESPACE, &secret_name(0), DATA_KEY)?;
                    let hash = shard["metadata"]["annotations"][HASH_ANNOTATION].as_str()?;
                    let short = &hash[..hash.len().min(12)];
                    let label = format!("switchboard_config_info{{hash=\"{short}\"}} 1");
                    let (_, metrics) = http_get(self.registrar_http, "/metrics")?;
                    (config.contains(&md5) && metrics.contains(&label)).then_some(())
                },
            )
        });
    }

    /// Both processes' output, for a failing assertion's message.
    pub fn logs(&self) -> String {
        format!(
            "--- operator:\n{}\n--- registrar:\n{}",
            self.operator.output(),
            self.registrar.output()
        )
    }
}

/// The provisioning service of an [`Installation`].
pub struct Provisioning {
    /// Its process.
    pub daemon: Daemon,
    /// Its HTTPS port on 127.0.0.1.
    pub port: u16,
    /// Its self-signed certificate (PEM), for clients to trust.
    pub ca: PathBuf,
}

fn start_operator(
    cp: &ControlPlane,
    dir: &Path,
    kubeconfig: &Path,
    (http, identity): (u16, &str),
    env: &[(&str, String)],
) -> Daemon {
    let mut cmd = Command::new(workspace_binary("switchboard-operator"));
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    cmd.env("KUBECONFIG", kubeconfig)
        .env("RUST_LOG", "info,kube=warn")
        .env("NO_COLOR", "1")
        .args(["--namespace", NAMESPACE, "--identity", identity])
        .arg("--http")
        .arg(format!("127.0.0.1:{http}"));
    let d = Daemon::spawn(identity, cmd, dir);
    cp.adopt(&d);
    d
}

fn start_registrar(
    cp: &ControlPlane,
    dir: &Path,
    kubeconfig: &Path,
    (sip, http, debug): (u16, u16, u16),
    extra: &[&str],
) -> Daemon {
    let mut cmd = Command::new(workspace_binary("switchboard-registrar"));
    cmd.env("KUBECONFIG", kubeconfig)
        .env("RUST_LOG", "info,kube=warn")
        .env("NO_COLOR", "1")
        .args([
            "--kube",
            "--namespace",
            NAMESPACE,
            "--replica",
            "registrar-0",
        ])
        .args(["--advertise", "127.0.0.1"])
        .arg("--udp")
        .arg(format!("127.0.0.1:{sip}"))
        .arg("--tcp")
        .arg(format!("127.0.0.1:{sip}"))
        .arg("--http")
        .arg(format!("127.0.0.1:{http}"))
        .arg("--debug-http")
        .arg(format!("127.0.0.1:{debug}"))
        .args(extra);
    let d = Daemon::spawn("registrar", cmd, dir);
    cp.adopt(&d);
    d
}

/// The registrar's arguments for WSS on `port` with a self-signed certificate (for localhost
/// and 127.0.0.1) written into `dir`. With a certificate the registrar also serves SIP over
/// TLS, on 0.0.0.0:5061 unless told otherwise: it gets a free port of its own, so that an
/// installation never finds 5061 still held by another (the shared one of a test binary that
/// has just ended stays up until its control plane's watcher stops it).
fn wss_args(dir: &Path, port: u16) -> Vec<String> {
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let made = rcgen::generate_simple_self_signed(names).expect("a self-signed certificate");
    let (cert, key) = (dir.join("wss-cert.pem"), dir.join("wss-key.pem"));
    std::fs::write(&cert, made.cert.pem()).expect("writing the certificate");
    std::fs::write(&key, made.signing_key.serialize_pem()).expect("writing the key");
    vec![
        "--wss".into(),
        format!("127.0.0.1:{port}"),
        "--tls-cert".into(),
        cert.display().to_string(),
        "--tls-key".into(),
        key.display().to_string(),
        "--tls".into(),
        format!("127.0.0.1:{}", free_port()),
    ]
}

/// This test binary's control plane with Switchboard installed on it, set up on first call;
/// `None` when the control plane is skipped (no Go, not required).
pub fn shared() -> Option<(&'static ControlPlane, &'static Installation)> {
    static SHARED: std::sync::OnceLock<Installation> = std::sync::OnceLock::new();
    let cp = ControlPlane::shared()?;
    Some((cp, SHARED.get_or_init(|| Installation::start(cp))))
}
