use anyhow::Context;
use clap::Parser;
use std::sync::Arc;
use switchboard_provisioning::cli::Cli;
use switchboard_provisioning::fetch::Provisioner;
use switchboard_provisioning::inventory::file::FileSource;
use switchboard_provisioning::inventory::kube::KubeSource;
use switchboard_provisioning::inventory::Source;
use switchboard_provisioning::metrics::{Health, Metrics};
use switchboard_provisioning::record::Recorder;
use switchboard_provisioning::server::{self, App};
use switchboard_provisioning::{site_status, tls};
use switchboard_registrar::auth::limiter::Limiter;
use tracing_subscriber::EnvFilter;

/// The demo devices, beside the registrar's embedded demo config.
const DEMO: &str = include_str!("../../examples/registrar/provisioning.yaml");

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
    let cli = Cli::parse();
    let in_cluster = cli.kube
        || (cli.manifests.is_none() && std::env::var_os("KUBERNETES_SERVICE_HOST").is_some());
    let (source, recorder): (Arc<dyn Source>, Recorder) = if in_cluster {
        let client = kube::Client::try_default()
            .await
            .context("connecting to the cluster")?;
        let source = Arc::new(KubeSource::start(client.clone()));
        let pod = cli.pod_name.clone();
        tokio::spawn(site_status::run(
            client.clone(),
            source.clone(),
            pod.clone(),
        ));
        (source, Recorder::kube(client, pod))
    } else if let Some(path) = &cli.manifests {
        (Arc::new(FileSource::open(path.clone())?), Recorder::Log)
    } else {
        tracing::info!("no --manifests and no cluster: serving the embedded demo devices");
        (Arc::new(FileSource::text(DEMO)?), Recorder::Log)
    };
    let acceptor = match (&cli.tls_cert, &cli.tls_key) {
        (Some(cert), Some(key)) => tls::from_files(cert, key)?,
        _ => {
            let (acceptor, pem) = tls::self_signed(&cli.self_signed_names)?;
            tracing::warn!(names = ?cli.self_signed_names, "no --tls-cert: serving a self-signed certificate");
            if let Some(out) = &cli.self_signed_cert_out {
                std::fs::write(out, pem).with_context(|| format!("writing {}", out.display()))?;
            }
            acceptor
        }
    };
    let metrics = Metrics::default();
    let health = Health {
        metrics: metrics.clone(),
        source: source.clone(),
    };
    let http = cli.http;
    tokio::spawn(async move {
        if let Err(e) = switchboard_provisioning::metrics::serve(http, health).await {
            tracing::warn!(address = %http, error = %e, "no /metrics, /healthz, /readyz");
        }
    });
    let provisioner = Provisioner::new(
        source,
        Limiter::new(cli.limiter.settings()),
        cli.sip_server(),
    );
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("binding {}", cli.listen))?;
    tracing::info!(address = %cli.listen, "provisioning over HTTPS");
    let app = App {
        provisioner: Arc::new(provisioner),
        recorder,
        metrics,
    };
    tokio::select! {
        _ = server::serve(listener, acceptor, app) => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate() => {}
    }
    Ok(())
}

async fn terminate() {
    if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        s.recv().await;
    }
}
