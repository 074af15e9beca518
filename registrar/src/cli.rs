//! Command-line options.

use clap::{Args, Parser, Subcommand};
use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;

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
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Config file (YAML, the compiled registrar config); reloaded on change and on SIGHUP.
    /// Without it, the embedded demo config (examples/registrar/standalone.yaml) is used.
    #[arg(long, env = "SWITCHBOARD_CONFIG")]
    pub config: Option<PathBuf>,
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
    /// TLS certificate chain (PEM).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// HTTP address for /metrics, /healthz, /readyz and /debug/bindings.
    #[arg(long, default_value = "0.0.0.0:9090")]
    pub http: SocketAddr,
    /// Log as JSON lines.
    #[arg(long)]
    pub log_json: bool,
    /// This replica's name, recorded in bindings (default: $POD_NAME, else the host name).
    #[arg(long, env = "POD_NAME")]
    pub replica: Option<String>,
    /// Digest nonce lifetime in seconds; older nonces are answered with stale=true.
    #[arg(long, default_value_t = 300)]
    pub nonce_ttl: u64,
    /// Failed authentications per source within a minute before it is refused.
    #[arg(long, default_value_t = 10)]
    pub auth_failure_limit: u32,
    /// Seconds a source that hit the failure limit is refused.
    #[arg(long, default_value_t = 300)]
    pub auth_cooldown: u64,
    /// Open TCP/TLS connections at most.
    #[arg(long, default_value_t = 10_000)]
    pub max_connections: usize,
    /// Seconds of silence after which a TCP/TLS connection is closed.
    #[arg(long, default_value_t = 900)]
    pub tcp_idle_timeout: u64,
    /// UDP receive tasks per socket (default: number of CPUs).
    #[arg(long)]
    pub udp_workers: Option<usize>,
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
    Ok(())
}
