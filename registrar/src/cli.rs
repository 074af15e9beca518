//! Command-line options.

use crate::auth::limiter::LimiterSettings;
use clap::{Args, Parser, Subcommand};
use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// Switchboard SIP registrar.
#[derive(Parser, Debug)]
#[command(name = "switchboard-registrar", version, about)]
pub struct Cli {
    /// What to do (default: run the registrar).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Registrar options.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print the MD5 and SHA-256 digest HA1 of a user, reading the password from stdin.
    Ha1 {
        /// SIP user.
        #[arg(long)]
        user: String,
        /// Realm (the site's domain).
        #[arg(long)]
        realm: String,
    },
}

/// Options of the registrar.
///
/// Where the config comes from, first match wins: `--config FILE` (standalone: the file, no
/// cluster); `--kube`, or `KUBERNETES_SERVICE_HOST` set (in a pod): the operator's config
/// Secrets, with the status reporter; otherwise the embedded demo config (standalone).
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Config file (YAML, the compiled registrar config); reloaded on change and on SIGHUP.
    /// Standalone: takes precedence over the cluster's config (no status reporting). Without
    /// it and outside a cluster, the embedded demo config (examples/registrar/standalone.yaml).
    #[arg(long, env = "SWITCHBOARD_CONFIG", conflicts_with = "kube")]
    pub config: Option<PathBuf>,
    /// Run against the cluster (kubeconfig or in-cluster service account): config from the
    /// operator's Secrets, status written to the resources. Automatic when
    /// KUBERNETES_SERVICE_HOST is set and --config is not given.
    #[arg(long)]
    pub kube: bool,
    /// Namespace of the registrar config Secrets (default: $POD_NAMESPACE, else the client's
    /// default namespace).
    #[arg(long, env = "POD_NAMESPACE")]
    pub namespace: Option<String>,
    /// Status writes (PATCHes and Events) per second at most, in a cluster.
    #[arg(long, default_value_t = crate::status::DEFAULT_RATE)]
    pub status_rate: f64,
    /// Status writes allowed at once after a quiet period, in a cluster.
    #[arg(long, default_value_t = crate::status::DEFAULT_BURST)]
    pub status_burst: u32,
    /// The IP upstreams should send calls to (the Contact of outbound registrations). Default:
    /// `$POD_IP` in a pod, else the listen address when it is not a wildcard, else a detected
    /// local address.
    #[arg(long, env = "POD_IP")]
    pub advertise: Option<IpAddr>,
    /// Extra CA certificates (PEM, repeatable) trusted for TLS upstreams, besides the system's.
    #[arg(long)]
    pub uac_ca_file: Vec<PathBuf>,
    /// UDP listen address (repeatable). Default: 0.0.0.0:5060 and [::]:5060.
    #[arg(long)]
    pub udp: Vec<SocketAddr>,
    /// TCP listen address (repeatable). Default: 0.0.0.0:5060 and [::]:5060.
    #[arg(long)]
    pub tcp: Vec<SocketAddr>,
    /// TLS listen address (repeatable; needs --tls-cert and --tls-key). Default with a
    /// certificate: 0.0.0.0:5061 and [::]:5061.
    #[arg(long)]
    pub tls: Vec<SocketAddr>,
    /// SIP over WebSocket (RFC 7118) listen address for browser softphones (repeatable; none
    /// by default). Browsers only allow it from pages served over plain HTTP; use --wss (or a
    /// TLS-terminating Ingress in front of this) for pages over HTTPS.
    #[arg(long)]
    pub ws: Vec<SocketAddr>,
    /// SIP over secure WebSocket listen address (repeatable; none by default; uses --tls-cert
    /// and --tls-key).
    #[arg(long)]
    pub wss: Vec<SocketAddr>,
    /// Origin (`https://phone.example.com`) whose web pages may open WS/WSS connections
    /// (repeatable). Default: any origin (digest authentication still applies). Connections
    /// without an Origin header (not from a browser) are not checked.
    #[arg(long)]
    pub ws_allowed_origin: Vec<String>,
    /// Seconds between the WebSocket Pings sent on each WS/WSS connection, so that proxies,
    /// load balancers and NATs in between keep a browser's idle connection open (0: none).
    #[arg(long, default_value_t = 30)]
    pub ws_ping_interval: u64,
    /// TLS certificate chain (PEM).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// HTTP address for /metrics, /healthz and /readyz (what Prometheus and the kubelet read).
    #[arg(long, default_value = "0.0.0.0:9090")]
    pub http: SocketAddr,
    /// HTTP address for /debug/bindings, /debug/registrations and /debug/cluster, which show
    /// phones' addresses and user agents. Default: 127.0.0.1:9091, loopback only (skipped with
    /// a warning when that port is taken); an address given here must bind.
    #[arg(long)]
    pub debug_http: Option<SocketAddr>,
    /// Log as JSON lines.
    #[arg(long)]
    pub log_json: bool,
    /// This replica's name, recorded in bindings (default: $POD_NAME, else the host name).
    #[arg(long, env = "POD_NAME")]
    pub replica: Option<String>,
    /// Digest nonce lifetime in seconds; older nonces are answered with stale=true.
    #[arg(long, default_value_t = 300)]
    pub nonce_ttl: u64,
    /// The failed-authentication limiter.
    #[command(flatten)]
    pub limiter: LimiterArgs,
    /// Open TCP/TLS/WS/WSS connections at most.
    #[arg(long, default_value_t = 10_000)]
    pub max_connections: usize,
    /// Open TCP/TLS/WS/WSS connections from one source address at most (more are refused), so one
    /// address holding sockets cannot lock phones out; raise it for a site with more TCP/TLS
    /// phones behind one NAT address.
    #[arg(long, default_value_t = 256)]
    pub max_connections_per_source: usize,
    /// Seconds of silence after which a TCP/TLS/WS/WSS connection is closed.
    #[arg(long, default_value_t = 900)]
    pub tcp_idle_timeout: u64,
    /// Seconds a new TCP/TLS/WS/WSS connection has, after its handshakes, to deliver its first
    /// complete message; a silent one is closed (the idle timeout applies after it).
    #[arg(long, default_value_t = 10)]
    pub tcp_first_message_timeout: u64,
    /// UDP sockets per address (`SO_REUSEPORT`), each with its receive task, with Redis on a
    /// thread of its own (default: the number of CPUs). The kernel spreads datagrams over them
    /// by source address and port.
    #[arg(long)]
    pub udp_workers: Option<usize>,
    /// Seconds a call may ring before the proxy cancels every branch and answers 480.
    #[arg(long, default_value_t = 60)]
    pub ring_timeout: u64,
    /// Keep bindings in Redis (`redis://host:port/db`, any Redis or Valkey) so several
    /// replicas share them. Default: in this process's memory (one replica).
    #[arg(long, env = "SWITCHBOARD_REDIS_URL")]
    pub redis_url: Option<String>,
    /// Prefix of every Redis key, so several installations can share one Redis.
    #[arg(long, env = "SWITCHBOARD_REDIS_PREFIX", default_value = "switchboard")]
    pub redis_prefix: String,
    /// A sibling replica, `NAME=IP:PORT` (its SIP UDP address; repeatable, or comma-separated
    /// in the environment). Standalone membership; in a cluster the registrar Service's
    /// EndpointSlices are used instead (`--peers-service`).
    #[arg(long = "peer", env = "SWITCHBOARD_PEERS", value_delimiter = ',', value_parser = parse_peer)]
    pub peers: Vec<(String, SocketAddr)>,
    /// In a cluster: the registrar Service whose ready endpoints are the replicas.
    #[arg(long, env = "SWITCHBOARD_PEERS_SERVICE")]
    pub peers_service: Option<String>,
}

/// Where `/debug/*` is served without `--debug-http`: loopback only.
pub const DEFAULT_DEBUG_HTTP: SocketAddr =
    SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9091);

impl RunArgs {
    /// The debug listener's address and whether failing to bind it stops the start (only
    /// when given explicitly: several local replicas would otherwise fight over the default).
    pub fn debug_address(&self) -> (SocketAddr, bool) {
        match self.debug_http {
            Some(addr) => (addr, true),
            None => (DEFAULT_DEBUG_HTTP, false),
        }
    }
}

/// `NAME=IP:PORT`.
fn parse_peer(s: &str) -> Result<(String, SocketAddr), String> {
    let (name, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected NAME=IP:PORT"))?;
    if name.is_empty() {
        return Err(format!("{s:?}: the replica name is empty"));
    }
    let addr = addr
        .parse()
        .map_err(|e| format!("{s:?}: {addr:?} is not IP:PORT ({e})"))?;
    Ok((name.to_string(), addr))
}

/// Where the registrar's config comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// A file, standalone (`--config`).
    File(PathBuf),
    /// The operator's Secrets in the cluster (`--kube`, or running in a pod).
    Cluster,
    /// The embedded demo config, standalone.
    Embedded,
}

impl RunArgs {
    /// The config source, by the precedence documented on [`RunArgs`]; `in_pod` is whether
    /// `KUBERNETES_SERVICE_HOST` is set.
    pub fn config_source(&self, in_pod: bool) -> ConfigSource {
        match &self.config {
            Some(path) => ConfigSource::File(path.clone()),
            None if self.kube || in_pod => ConfigSource::Cluster,
            None => ConfigSource::Embedded,
        }
    }
}

/// Whether this process runs in a Kubernetes pod (`KUBERNETES_SERVICE_HOST` is set).
pub fn in_pod() -> bool {
    std::env::var_os("KUBERNETES_SERVICE_HOST").is_some_and(|v| !v.is_empty())
}

/// The failed-authentication limiter's flags, the same for every binary that authenticates
/// (the registrar's SIP digest, the provisioning service's HTTP logins).
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct LimiterArgs {
    /// Failed authentications of one user from one source address within a minute before
    /// that (source, user) pair is refused: a phone with a wrong password blocks itself, not
    /// the phones sharing its NAT address. An unknown user name counts as a user of its own.
    #[arg(long, default_value_t = 10)]
    pub auth_failure_limit: u32,
    /// Failed authentications from one source address, all users together, within a minute
    /// before the whole address is refused (a guesser trying many users).
    #[arg(long, default_value_t = 200)]
    pub auth_source_failure_limit: u32,
    /// Seconds a first block lasts; each further block of the same pair or address doubles it.
    #[arg(long, default_value_t = 60)]
    pub auth_cooldown: u64,
    /// The longest block, in seconds; a pair or address forgets its blocks after this long
    /// without one.
    #[arg(long, default_value_t = 3600)]
    pub auth_max_cooldown: u64,
}

impl LimiterArgs {
    /// The limiter's settings (limits of at least one, the longest block at least the first).
    pub fn settings(&self) -> LimiterSettings {
        LimiterSettings {
            pair_failures: self.auth_failure_limit.max(1),
            source_failures: self.auth_source_failure_limit.max(1),
            cooldown: Duration::from_secs(self.auth_cooldown),
            max_cooldown: Duration::from_secs(self.auth_max_cooldown.max(self.auth_cooldown)),
            ..LimiterSettings::default()
        }
    }
}

/// The `ha1` subcommand: password from stdin (one line; the trailing newline is not part of it).
pub fn ha1_command(user: &str, realm: &str) -> anyhow::Result<()> {
    let mut password = String::new();
    std::io::stdin().read_to_string(&mut password)?;
    let password = password.strip_suffix('\n').unwrap_or(&password);
    let password = password.strip_suffix('\r').unwrap_or(password);
    let (md5, sha256) = switchboard_crds::config::ha1(user, realm, password);
    println!("ha1Md5: {md5}");
    println!("ha1Sha256: {sha256}");
    let (md5, sha256) = switchboard_crds::config::ha1b(user, realm, password);
    println!("ha1bMd5: {md5}");
    println!("ha1bSha256: {sha256}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(argv: &[&str]) -> RunArgs {
        let mut full = vec!["switchboard-registrar"];
        full.extend(argv);
        Cli::try_parse_from(full).expect("parses").run
    }

    #[test]
    fn config_source_precedence() {
        let file = ConfigSource::File("c.yaml".into());
        assert_eq!(args(&["--config", "c.yaml"]).config_source(true), file);
        assert_eq!(args(&["--config", "c.yaml"]).config_source(false), file);
        assert_eq!(
            args(&["--kube"]).config_source(false),
            ConfigSource::Cluster
        );
        assert_eq!(args(&[]).config_source(true), ConfigSource::Cluster);
        assert_eq!(args(&[]).config_source(false), ConfigSource::Embedded);
        let both = ["switchboard-registrar", "--kube", "--config", "c.yaml"];
        assert!(
            Cli::try_parse_from(both).is_err(),
            "--kube and --config conflict"
        );
    }

    #[test]
    fn debug_endpoints_default_to_loopback_and_bind_when_given() {
        assert_eq!(
            args(&[]).debug_address(),
            ("127.0.0.1:9091".parse().unwrap(), false)
        );
        assert_eq!(
            args(&["--debug-http", "0.0.0.0:9191"]).debug_address(),
            ("0.0.0.0:9191".parse().unwrap(), true)
        );
        assert_eq!(args(&[]).http, "0.0.0.0:9090".parse().unwrap());
    }

    #[test]
    fn status_and_uac_defaults() {
        let a = args(&[]);
        assert_eq!((a.status_rate, a.status_burst), (250.0, 500));
        assert!(a.advertise.is_none() && a.uac_ca_file.is_empty());
        let a = args(&[
            "--advertise",
            "192.0.2.7",
            "--uac-ca-file",
            "a.pem",
            "--uac-ca-file",
            "b.pem",
        ]);
        assert_eq!(a.advertise, Some("192.0.2.7".parse().unwrap()));
        assert_eq!(a.uac_ca_file.len(), 2);
        assert!(
            Cli::try_parse_from(["switchboard-registrar", "--digest-algorithms", "MD5"]).is_err()
        );
    }
}
