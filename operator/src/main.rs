//! `switchboard-operator`: reconciles Sites, SipDevices, CallPatterns and SipRegistrations into
//! the registrar config.

use anyhow::Context as _;
use clap::Parser;
use kube::runtime::events::{Recorder, Reporter};
use kube::Client;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use switchboard_operator::runtime::{self, http, leader, metrics::Metrics, Context, Timing};
use switchboard_operator::MANAGER;

/// Switchboard operator.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// Namespace the registrar config Secrets (and the leader Lease) live in.
    #[arg(long, env = "POD_NAMESPACE", default_value = "switchboard")]
    namespace: String,
    /// Address of the /metrics, /healthz and /readyz endpoints.
    #[arg(long, default_value = "0.0.0.0:8080")]
    http: SocketAddr,
    /// Log JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "switchboard-operator")]
    lease_name: String,
    /// This replica's identity in the Lease (default: the pod name, else the host name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// The namespaced install mode: read Secrets only in these namespaces (comma-separated;
    /// the chart's Roles grant nothing else). Default: every namespace.
    #[arg(long, env = "SWITCHBOARD_SECRET_NAMESPACES", value_delimiter = ',')]
    secret_namespaces: Vec<String>,
}

fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn connect() -> anyhow::Result<Client> {
    let client = Client::try_default()
        .await
        .context("no Kubernetes configuration found (in-cluster service account or KUBECONFIG)")?;
    let version = tokio::time::timeout(Duration::from_secs(10), client.apiserver_version())
        .await
        .context("the Kubernetes API server did not answer within 10 s")?
        .context("cannot reach the Kubernetes API server")?;
    tracing::info!(version = %version.git_version, "connected to Kubernetes");
    Ok(client)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let client = connect().await?;
    let identity = cli
        .identity
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("{MANAGER}-{}", std::process::id()));
    let metrics = Metrics::new();
    let ready = Arc::new(AtomicBool::new(false));
    let health = http::Health {
        metrics: metrics.clone(),
        ready: ready.clone(),
    };
    let addr = cli.http;
    tokio::spawn(async move {
        if let Err(e) = http::serve(addr, health).await {
            tracing::error!(error = %e, %addr, "HTTP server failed");
        }
    });
    let (leading_tx, leading) = tokio::sync::watch::channel(false);
    let (shutdown_tx, shutdown) = tokio::sync::watch::channel(false);
    let fence = leader::Fence::default();
    let election = tokio::spawn(leader::run(
        client.clone(),
        leader::Settings::new(cli.lease_name, cli.namespace.clone(), identity.clone()),
        leading_tx,
        fence.clone(),
        shutdown,
    ));
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: MANAGER.into(),
            instance: Some(identity),
        },
    );
    let changes = runtime::watch::all(&client, &cli.namespace, &cli.secret_namespaces);
    let ctx = Context {
        client,
        recorder,
        metrics,
        fence,
        secret_namespaces: cli.secret_namespaces,
    };
    tracing::info!(namespace = %cli.namespace, "operator starting");
    let operator = runtime::run(
        ctx,
        cli.namespace,
        changes,
        leading,
        ready,
        Timing::default(),
    );
    tokio::select! {
        result = operator => result,
        () = terminated() => {
            // Hand the Lease over: a successor leads within one retry period, not a lease
            // duration.
            shutdown_tx.send_replace(true);
            if tokio::time::timeout(Duration::from_secs(5), election).await.is_err() {
                tracing::warn!("the Lease was not released within 5 s");
            }
            tracing::info!("operator stopped");
            Ok(())
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn terminated() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing the SIGTERM handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping"),
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_json);
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(cause = %e.root_cause(), "{e}");
            eprintln!("switchboard-operator: {e}\n  cause: {}", e.root_cause());
            std::process::ExitCode::FAILURE
        }
    }
}
