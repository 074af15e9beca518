//! The runtime: loads the config, binds the listeners, spawns the tasks (UDP receivers, TCP/TLS
//! accept loops, HTTP, the expiry sweeper, the config watcher) and shuts down gracefully on
//! SIGTERM/SIGINT: readiness drops, listeners stop taking new work, messages in hand are
//! answered, then the process exits 0.

use crate::auth::limiter::LimiterSettings;
use crate::auth::AuthSettings;
use crate::cli::RunArgs;
use crate::config::{self, file, ConfigHandle};
use crate::http::{self, HttpState};
use crate::location::{LocationStore, MemoryStore};
use crate::metrics::Metrics;
use crate::service::{Service, ServiceSettings};
use crate::transport::{self, tcp::StreamLimits};
use anyhow::Context;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

/// How long shutdown waits for open connections to finish their message in hand.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The listen addresses: the ones given, or IPv4 and IPv6 wildcards on `port` (the IPv6 one
/// may fail where IPv6 is absent).
fn addresses(given: &[SocketAddr], port: u16) -> Vec<(SocketAddr, bool)> {
    if given.is_empty() {
        vec![
            (
                SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port),
                true,
            ),
            (
                SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port),
                false,
            ),
        ]
    } else {
        given.iter().map(|a| (*a, true)).collect()
    }
}

fn replica_name(args: &RunArgs) -> String {
    args.replica
        .clone()
        .filter(|r| !r.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "standalone".into())
}

/// Runs the registrar until SIGTERM or SIGINT.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    let config = Arc::new(ConfigHandle::new());
    let initial = match &args.config {
        Some(path) => file::load(path)?,
        None => config::embedded(),
    };
    tracing::info!(
        source = args
            .config
            .as_ref()
            .map_or("embedded demo config".into(), |p| p.display().to_string()),
        hash = initial.short_hash(),
        domains = initial.domains.len(),
        "config loaded"
    );
    config.replace(initial);

    let store: Arc<dyn LocationStore> = Arc::new(MemoryStore::new());
    let settings = ServiceSettings {
        replica: replica_name(&args),
        auth: AuthSettings {
            nonce_ttl: Duration::from_secs(args.nonce_ttl.max(1)),
            limiter: LimiterSettings {
                max_failures: args.auth_failure_limit.max(1),
                cooldown: Duration::from_secs(args.auth_cooldown),
                ..Default::default()
            },
            ..Default::default()
        },
        ..Default::default()
    };
    let service = Arc::new(Service::new(
        settings,
        config.clone(),
        store.clone(),
        metrics.clone(),
    ));
    service.config_changed().await;

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut listeners = JoinSet::new();

    // UDP.
    let workers = args
        .udp_workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .max(1);
    for (addr, required) in addresses(&args.udp, 5060) {
        match transport::bind_udp(addr) {
            Ok(socket) => {
                tracing::info!(%addr, workers, "listening on UDP");
                let socket = Arc::new(socket);
                for _ in 0..workers {
                    listeners.spawn(transport::udp::serve(
                        socket.clone(),
                        service.clone(),
                        shutdown_rx.clone(),
                    ));
                }
            }
            Err(e) if !required => tracing::warn!(%addr, error = %e, "not listening on UDP"),
            Err(e) => return Err(e).with_context(|| format!("binding UDP {addr}")),
        }
    }

    // TCP and TLS share the connection bound.
    let permits = Arc::new(Semaphore::new(args.max_connections.max(1)));
    let limits = StreamLimits {
        idle_timeout: Duration::from_secs(args.tcp_idle_timeout.max(1)),
        ..Default::default()
    };
    for (addr, required) in addresses(&args.tcp, 5060) {
        match transport::bind_tcp(addr) {
            Ok(listener) => {
                tracing::info!(%addr, "listening on TCP");
                listeners.spawn(transport::tcp::serve(
                    listener,
                    None,
                    service.clone(),
                    metrics.clone(),
                    permits.clone(),
                    limits,
                    shutdown_rx.clone(),
                ));
            }
            Err(e) if !required => tracing::warn!(%addr, error = %e, "not listening on TCP"),
            Err(e) => return Err(e).with_context(|| format!("binding TCP {addr}")),
        }
    }
    match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let acceptor = transport::tls::acceptor(cert, key)?;
            for (addr, required) in addresses(&args.tls, 5061) {
                match transport::bind_tcp(addr) {
                    Ok(listener) => {
                        tracing::info!(%addr, "listening on TLS");
                        listeners.spawn(transport::tcp::serve(
                            listener,
                            Some(acceptor.clone()),
                            service.clone(),
                            metrics.clone(),
                            permits.clone(),
                            limits,
                            shutdown_rx.clone(),
                        ));
                    }
                    Err(e) if !required => {
                        tracing::warn!(%addr, error = %e, "not listening on TLS")
                    }
                    Err(e) => return Err(e).with_context(|| format!("binding TLS {addr}")),
                }
            }
        }
        _ if !args.tls.is_empty() => anyhow::bail!("--tls needs --tls-cert and --tls-key"),
        _ => {}
    }

    // HTTP.
    let http_state = Arc::new(HttpState {
        metrics: metrics.clone(),
        config: config.clone(),
        store: store.clone(),
        shutting_down: Default::default(),
    });
    let http_listener = tokio::net::TcpListener::bind(args.http)
        .await
        .with_context(|| format!("binding HTTP {}", args.http))?;
    tracing::info!(addr = %args.http, "serving /metrics, /healthz, /readyz, /debug/bindings");
    let mut http_shutdown = shutdown_rx.clone();
    let http_task = tokio::spawn(async move {
        let r = axum::serve(http_listener, http::router(http_state.clone()))
            .with_graceful_shutdown(async move {
                transport::shutdown_requested(&mut http_shutdown).await
            })
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });

    // Background tasks.
    let mut background = JoinSet::new();
    {
        let service = service.clone();
        let mut shutdown = shutdown_rx.clone();
        background.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = transport::shutdown_requested(&mut shutdown) => break,
                    _ = tick.tick() => service.sweep().await,
                }
            }
        });
    }
    {
        let service = service.clone();
        let mut changes = config.subscribe();
        let mut shutdown = shutdown_rx.clone();
        background.spawn(async move {
            loop {
                tokio::select! {
                    _ = transport::shutdown_requested(&mut shutdown) => break,
                    r = changes.changed() => {
                        if r.is_err() { break; }
                        service.config_changed().await;
                    }
                }
            }
        });
    }
    if let Some(path) = &args.config {
        let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
        file::spawn_watcher(path, config.clone(), metrics.clone(), shutdown_rx.clone())?;
    }

    // Wait for a signal.
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tracing::info!("registrar ready");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }

    // Drain.
    let _ = shutdown_tx.send(true);
    let drain = async {
        while listeners.join_next().await.is_some() {}
        // Every connection holds a permit: having them all back means every connection closed.
        let _ = permits
            .acquire_many(args.max_connections.max(1) as u32)
            .await;
    };
    if tokio::time::timeout(DRAIN_TIMEOUT, drain).await.is_err() {
        tracing::warn!("connections still open after {DRAIN_TIMEOUT:?}; exiting anyway");
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), http_task).await;
    background.abort_all();
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_addresses_are_dual_stack() {
        let a = addresses(&[], 5060);
        assert_eq!(a[0].0, "0.0.0.0:5060".parse().unwrap());
        assert!(a[0].1);
        assert_eq!(a[1].0, "[::]:5060".parse().unwrap());
        assert!(!a[1].1, "IPv6 may be missing");
        let given = addresses(&["127.0.0.1:7000".parse().unwrap()], 5060);
        assert_eq!(given, vec![("127.0.0.1:7000".parse().unwrap(), true)]);
    }
}
