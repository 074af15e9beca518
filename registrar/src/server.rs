//! The runtime: loads the config, binds the listeners, spawns the tasks (UDP receivers, TCP/TLS
//! accept loops, HTTP, the expiry sweeper, the config watcher, the status reporter, the
//! outbound registrations) and shuts down gracefully on SIGTERM/SIGINT: readiness drops,
//! listeners stop taking new work, messages in hand are answered, outbound registrations are
//! removed upstream (`Expires: 0`), then the process exits 0.
//!
//! Config source (see [`RunArgs`]): a file or the embedded demo (standalone: no status
//! reporter), or, in a cluster, the operator's Secrets through [`kube_source`]; then the
//! registrar is ready only once the first complete config has arrived.

use crate::auth::limiter::LimiterSettings;
use crate::auth::redis::RedisAuthState;
use crate::auth::state::AuthState;
use crate::auth::AuthSettings;
use crate::cli::{in_pod, ConfigSource, RunArgs};
use crate::cluster::{self, Cluster};
use crate::config::{self, file, kube_source, ConfigHandle};
use crate::http::{self, HttpState};
use crate::location::{LocationStore, MemoryStore, RedisStore};
use crate::metrics::Metrics;
use crate::proxy::ProxySettings;
use crate::service::{Service, ServiceSettings};
use crate::status::{self, StatusSettings};
use crate::transport;
use crate::transport::per_source::PerSource;
use crate::transport::tcp::{ConnectionLimits, StreamLimits};
use crate::transport::websocket::handshake::WebSocketPolicy;
use crate::uac::{self, flow::tls_client_config, ClientSettings, ContactAddrs, UacIndex};
use anyhow::Context;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use switchboard_crds::common::Transport;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

/// How long shutdown waits for open connections to finish their message in hand.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// How long shutdown waits for outbound registrations to be removed upstream.
pub const UAC_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// After a start in a cluster, how long phones get to re-register before devices the API
/// shows as registered but that hold no binding here are reported `Unregistered` (those whose
/// bindings this replica certainly lost are corrected at once: `status::restart`).
pub const STATUS_SETTLE: Duration = Duration::from_secs(30);

/// A local address of this host, of the given family: the source address the kernel picks
/// towards a documentation address (a connected UDP socket; nothing is sent).
fn detect_local_ip(v6: bool) -> Option<IpAddr> {
    let (bind, probe) = if v6 {
        (
            IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            "2001:db8::1".parse().ok()?,
        )
    } else {
        (IpAddr::V4(Ipv4Addr::UNSPECIFIED), "192.0.2.1".parse().ok()?)
    };
    let socket = std::net::UdpSocket::bind(SocketAddr::new(bind, 0)).ok()?;
    socket.connect(SocketAddr::new(probe, 9)).ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

/// The Contact addresses of outbound registrations, from the bound listen addresses:
/// `advertise` replaces every address's IP; without it a wildcard listen address takes a
/// detected local address (`detect`, called with whether it is IPv6).
fn contact_addrs(
    udp: &[SocketAddr],
    tcp: &[SocketAddr],
    tls: &[SocketAddr],
    advertise: Option<IpAddr>,
    detect: impl Fn(bool) -> Option<IpAddr>,
) -> ContactAddrs {
    match advertise {
        Some(ip) => {
            let at = |a: &[SocketAddr]| -> Vec<SocketAddr> {
                a.iter().map(|x| SocketAddr::new(ip, x.port())).collect()
            };
            ContactAddrs::from_listen(&at(udp), &at(tcp), &at(tls), None)
        }
        None => {
            let wildcard_v6 = [udp, tcp, tls]
                .iter()
                .filter_map(|a| a.first())
                .find(|a| a.ip().is_unspecified())
                .map(|a| a.is_ipv6());
            ContactAddrs::from_listen(udp, tcp, tls, wildcard_v6.and_then(detect))
        }
    }
}

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

/// Messages in flight per UDP socket with the Redis store, each waiting on its round trips.
const REDIS_UDP_INFLIGHT: usize = 1024;

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

/// Serves `router` on `listener` until shutdown begins (requests in hand finish).
fn serve_http(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let r = axum::serve(listener, router)
            .with_graceful_shutdown(
                async move { transport::shutdown_requested(&mut shutdown).await },
            )
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "HTTP server failed");
        }
    })
}

/// Serves `/debug/*` on `--debug-http`, loopback by default; `None` when the default address
/// is taken (several local replicas), an error when a given one is.
async fn serve_debug(
    args: &RunArgs,
    state: Arc<HttpState>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    let (addr, required) = args.debug_address();
    match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => {
            tracing::info!(%addr, "serving /debug/bindings, /debug/registrations, /debug/cluster");
            Ok(Some(serve_http(
                listener,
                http::debug_router(state),
                shutdown,
            )))
        }
        Err(e) if !required => {
            tracing::warn!(%addr, error = %e, "not serving /debug/*; give --debug-http");
            Ok(None)
        }
        Err(e) => Err(e).with_context(|| format!("binding debug HTTP {addr}")),
    }
}

/// Runs the registrar until SIGTERM or SIGINT.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    // First, so a SIGTERM that arrives while starting (readiness may already be up) still
    // shuts down gracefully instead of killing the process.
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let metrics = Arc::new(Metrics::new());
    let config = Arc::new(ConfigHandle::new());
    let source = args.config_source(in_pod());
    let initial = match &source {
        ConfigSource::File(path) => Some((path.display().to_string(), file::load(path)?)),
        ConfigSource::Embedded => Some(("embedded demo config".into(), config::embedded())),
        ConfigSource::Cluster => None,
    };
    if let Some((from, initial)) = initial {
        tracing::info!(
            source = from,
            hash = initial.short_hash(),
            domains = initial.domains.len(),
            "config loaded"
        );
        config.replace(initial);
    }
    let cluster = match source {
        ConfigSource::Cluster => {
            let client = kube::Client::try_default().await.context(
                "connecting to the Kubernetes API (--kube or KUBERNETES_SERVICE_HOST; \
                 give --config FILE to run standalone)",
            )?;
            let namespace = args
                .namespace
                .clone()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| client.default_namespace().to_string());
            Some((client, namespace))
        }
        _ => None,
    };
    anyhow::ensure!(
        args.status_rate > 0.0 && args.status_rate.is_finite(),
        "--status-rate must be a positive number"
    );

    let replica = replica_name(&args);
    // With Redis, the limiter and nonce-count records live there too, on the same connection.
    let (store, shared): (Arc<dyn LocationStore>, Option<_>) = match &args.redis_url {
        Some(url) => {
            let store = RedisStore::connect(url, &args.redis_prefix)
                .await
                .with_context(|| format!("connecting to the location store at {url}"))?;
            tracing::info!(prefix = %args.redis_prefix, "bindings and authentication state kept in Redis");
            let conn = store.connection();
            (Arc::new(store), Some(conn))
        }
        None => (Arc::new(MemoryStore::new()), None),
    };
    // Siblings: a static list, or the registrar Service's endpoints in a cluster.
    anyhow::ensure!(
        args.peers_service.is_none() || cluster.is_some(),
        "--peers-service needs the cluster (--kube, or running in a pod)"
    );
    let clustered = !args.peers.is_empty() || args.peers_service.is_some();
    let siblings = if clustered {
        if args.redis_url.is_none() {
            tracing::warn!("siblings without --redis-url: each replica keeps its own bindings");
        }
        Cluster::new(replica.clone())
    } else {
        Cluster::alone(replica.clone())
    };
    siblings.set_members(&args.peers);
    if clustered
        && config
            .current()
            .is_some_and(|l| l.config.nonce_key.as_deref().unwrap_or("").is_empty())
    {
        tracing::warn!("the config has no nonceKey: this replica makes its own, so siblings refuse its challenges and Routes; give every replica the same nonceKey");
    }
    metrics.replica_info.with_label_values(&[&replica]).set(1);
    let auth = AuthSettings {
        nonce_ttl: Duration::from_secs(args.nonce_ttl.max(1)),
        limiter: LimiterSettings {
            pair_failures: args.auth_failure_limit.max(1),
            source_failures: args.auth_source_failure_limit.max(1),
            cooldown: Duration::from_secs(args.auth_cooldown),
            max_cooldown: Duration::from_secs(args.auth_max_cooldown.max(args.auth_cooldown)),
            ..Default::default()
        },
        ..Default::default()
    };
    let auth_state = shared.map(|conn| -> Arc<dyn AuthState> {
        Arc::new(RedisAuthState::new(
            conn,
            &args.redis_prefix,
            auth.limiter,
            auth.nonce_ttl,
        ))
    });
    let settings = ServiceSettings {
        cluster: siblings.clone(),
        auth,
        auth_state,
        proxy: ProxySettings {
            ring_timeout: Duration::from_secs(args.ring_timeout.max(1)),
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
    // Subscribed before any request is served, so the reporter sees every change.
    let status_events = cluster.as_ref().map(|_| service.subscribe());

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut listeners = JoinSet::new();
    // Per UDP socket with Redis: the messages in flight, each holding a permit until answered.
    let mut udp_inflight = Vec::new();
    // What was bound, per transport (the Contact of outbound registrations).
    let (mut bound_udp, mut bound_tcp, mut bound_tls) = (Vec::new(), Vec::new(), Vec::new());

    // UDP.
    let workers = args
        .udp_workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .max(1);
    for (addr, required) in addresses(&args.udp, 5060) {
        match transport::bind_udp(addr) {
            Ok(socket) => {
                tracing::info!(%addr, workers, "listening on UDP");
                bound_udp.push(socket.local_addr().unwrap_or(addr));
                let socket = Arc::new(socket);
                // The proxy sends on the first IPv4 (else IPv6) socket, advertising its
                // address (--advertise, else a detected one for a wildcard bind).
                if !service.proxy().is_attached() {
                    let local = socket.local_addr().unwrap_or(addr);
                    let ip = args
                        .advertise
                        .or_else(|| {
                            (local.ip().is_unspecified())
                                .then(|| detect_local_ip(local.is_ipv6()))
                                .flatten()
                        })
                        .unwrap_or(local.ip());
                    service
                        .proxy()
                        .attach_udp(socket.clone(), SocketAddr::new(ip, local.port()));
                }
                let inflight = args
                    .redis_url
                    .is_some()
                    .then(|| Arc::new(Semaphore::new(REDIS_UDP_INFLIGHT)));
                udp_inflight.extend(inflight.clone());
                for _ in 0..workers {
                    listeners.spawn(transport::udp::serve(
                        socket.clone(),
                        service.clone(),
                        inflight.clone(),
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
        first_message_timeout: Duration::from_secs(args.tcp_first_message_timeout.max(1)),
        ..Default::default()
    };
    let admit = ConnectionLimits {
        total: permits.clone(),
        per_source: PerSource::new(args.max_connections_per_source),
    };
    for (addr, required) in addresses(&args.tcp, 5060) {
        match transport::bind_tcp(addr) {
            Ok(listener) => {
                tracing::info!(%addr, "listening on TCP");
                bound_tcp.push(listener.local_addr().unwrap_or(addr));
                listeners.spawn(transport::tcp::serve(
                    listener,
                    None,
                    service.clone(),
                    metrics.clone(),
                    admit.clone(),
                    limits,
                    shutdown_rx.clone(),
                ));
            }
            Err(e) if !required => tracing::warn!(%addr, error = %e, "not listening on TCP"),
            Err(e) => return Err(e).with_context(|| format!("binding TCP {addr}")),
        }
    }
    let acceptor = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(transport::tls::acceptor(cert, key)?),
        _ if !args.tls.is_empty() => anyhow::bail!("--tls needs --tls-cert and --tls-key"),
        _ if !args.wss.is_empty() => anyhow::bail!("--wss needs --tls-cert and --tls-key"),
        _ => None,
    };
    if let Some(acceptor) = &acceptor {
        for (addr, required) in addresses(&args.tls, 5061) {
            match transport::bind_tcp(addr) {
                Ok(listener) => {
                    tracing::info!(%addr, "listening on TLS");
                    bound_tls.push(listener.local_addr().unwrap_or(addr));
                    listeners.spawn(transport::tcp::serve(
                        listener,
                        Some(acceptor.clone()),
                        service.clone(),
                        metrics.clone(),
                        admit.clone(),
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
    // WS and WSS (browser phones), only where asked for.
    let policy = Arc::new(WebSocketPolicy {
        allowed_origins: args.ws_allowed_origin.clone(),
    });
    let (mut bound_ws, mut bound_wss) = (Vec::new(), Vec::new());
    for (tls, given, bound) in [
        (None, &args.ws, &mut bound_ws),
        (acceptor.as_ref(), &args.wss, &mut bound_wss),
    ] {
        for &addr in given {
            let listener =
                transport::bind_tcp(addr).with_context(|| format!("binding WebSocket {addr}"))?;
            tracing::info!(%addr, secure = tls.is_some(), "listening for SIP over WebSocket");
            bound.push(listener.local_addr().unwrap_or(addr));
            listeners.spawn(transport::websocket::serve(
                listener,
                tls.cloned(),
                policy.clone(),
                service.clone(),
                metrics.clone(),
                admit.clone(),
                limits,
                shutdown_rx.clone(),
            ));
        }
    }

    // HTTP.
    let uac_index = UacIndex::default();
    let http_state = Arc::new(HttpState {
        metrics: metrics.clone(),
        config: config.clone(),
        store: store.clone(),
        uac: uac_index.clone(),
        cluster: siblings.clone(),
        shutting_down: Default::default(),
    });
    let http_listener = tokio::net::TcpListener::bind(args.http)
        .await
        .with_context(|| format!("binding HTTP {}", args.http))?;
    tracing::info!(addr = %args.http, "serving /metrics, /healthz, /readyz");
    let http_task = serve_http(
        http_listener,
        http::router(http_state.clone()),
        shutdown_rx.clone(),
    );
    let debug_task = serve_debug(&args, http_state, shutdown_rx.clone()).await?;

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
    if clustered {
        // Probes leave from the family of the address we advertise to siblings.
        let family_ip =
            service
                .proxy()
                .advertised()
                .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| match a {
                    SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                    SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                });
        background.spawn(cluster::probe::run(
            siblings.clone(),
            SocketAddr::new(family_ip, 0),
            shutdown_rx.clone(),
        ));
        if let (Some(service_name), Some((client, namespace))) = (&args.peers_service, &cluster) {
            tracing::info!(service = %service_name, "siblings from the Service's EndpointSlices");
            siblings.own_only_when_listed();
            background.spawn(cluster::endpoints::run(
                client.clone(),
                namespace.clone(),
                service_name.clone(),
                bound_udp.first().map_or(5060, |a| a.port()),
                siblings.clone(),
                shutdown_rx.clone(),
            ));
        }
    }
    if let Some(path) = &args.config {
        let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
        file::spawn_watcher(path, config.clone(), metrics.clone(), shutdown_rx.clone())?;
    }
    if let Some((client, namespace)) = &cluster {
        tracing::info!(
            %namespace,
            "watching the registrar config Secrets; ready once a complete config arrives"
        );
        let handle = config.clone();
        background.spawn(kube_source::run(
            client.clone(),
            namespace.clone(),
            move |c| {
                let hash = c.short_hash().to_string();
                let generation = handle.replace(c);
                tracing::info!(generation, hash, "config in force");
            },
        ));
    }

    // Status reporter (cluster only), then the outbound registrations, which report to it.
    let contacts = contact_addrs(
        &bound_udp,
        &bound_tcp,
        &bound_tls,
        args.advertise,
        detect_local_ip,
    );
    for (t, bound) in [
        (Transport::Udp, &bound_udp),
        (Transport::Tcp, &bound_tcp),
        (Transport::Tls, &bound_tls),
    ] {
        if !bound.is_empty() && contacts.get(t).is_none() {
            tracing::warn!(transport = %t, "no address to advertise for outbound registrations; give --advertise");
        }
    }
    let ca_files: Vec<&std::path::Path> = args.uac_ca_file.iter().map(|p| p.as_path()).collect();
    let uac_settings = ClientSettings {
        contacts,
        tls: Some(tls_client_config(&ca_files)?),
        store: Some(store.clone()),
        ..Default::default()
    };
    tracing::info!(contacts = ?uac_settings.contacts, "outbound registrations follow the config");
    // Calls to trunks over TCP/TLS: the proxy connects with the same TLS client config, and
    // record-routes with our listening address on that transport.
    let advertised = |bound: &[SocketAddr]| {
        bound.first().map(|a| {
            let ip = args.advertise.unwrap_or_else(|| {
                if a.ip().is_unspecified() {
                    detect_local_ip(a.is_ipv6()).unwrap_or(a.ip())
                } else {
                    a.ip()
                }
            });
            SocketAddr::new(ip, a.port())
        })
    };
    service.proxy().attach_outbound(crate::proxy::Outbound {
        reader: transport::tcp::outbound_reader(
            Arc::downgrade(&service),
            metrics.clone(),
            limits,
            shutdown_rx.clone(),
        ),
        tls: uac_settings.tls.clone(),
        tcp: advertised(&bound_tcp),
        tls_addr: advertised(&bound_tls),
        ws: advertised(&bound_ws),
        wss: advertised(&bound_wss),
    });
    let status_start = match (cluster, status_events) {
        (Some((client, _)), Some(events)) => {
            let settings = StatusSettings {
                rate: args.status_rate,
                burst: args.status_burst.max(1),
                replica: Some(replica.clone()),
                ..Default::default()
            };
            let (store, metrics) = (store.clone(), metrics.clone());
            // Alone with the in-memory store, a restart lost every binding: statuses saying
            // otherwise are corrected as soon as the config is in force, not after the settle.
            let after_start = status::feed::AfterStart {
                config: config.clone(),
                holder: status::restart::Holder::for_replica(
                    &replica,
                    args.redis_url.is_none(),
                    clustered,
                ),
            };
            Some(async move {
                status::run_with_cluster(
                    client,
                    settings,
                    metrics,
                    events,
                    store,
                    STATUS_SETTLE,
                    after_start,
                )
                .await
            })
        }
        _ => {
            tracing::info!("status reporter disabled (no cluster)");
            None
        }
    };
    let uac_task = {
        let (index, config, shutdown) = (uac_index, config.clone(), shutdown_rx.clone());
        let siblings = siblings.clone();
        tokio::spawn(async move {
            let status = match status_start {
                Some(start) => Some(start.await),
                None => None,
            };
            if !*shutdown.borrow() {
                uac::follow_config(uac_settings, status, index, siblings, config, shutdown).await;
            }
        })
    };

    // Wait for a signal.
    if config.is_loaded() {
        tracing::info!("registrar ready");
    } else {
        tracing::info!("registrar listening; not ready until the config arrives");
    }
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }

    // Drain.
    let _ = shutdown_tx.send(true);
    let drain = async {
        while listeners.join_next().await.is_some() {}
        for inflight in &udp_inflight {
            let _ = inflight.acquire_many(REDIS_UDP_INFLIGHT as u32).await;
        }
        // Every connection holds a permit: having them all back means every connection closed.
        let _ = permits
            .acquire_many(args.max_connections.max(1) as u32)
            .await;
    };
    if tokio::time::timeout(DRAIN_TIMEOUT, drain).await.is_err() {
        tracing::warn!("connections still open after {DRAIN_TIMEOUT:?}; exiting anyway");
    }
    // The outbound registrations saw the shutdown too and are unregistering.
    if tokio::time::timeout(UAC_SHUTDOWN_GRACE, uac_task)
        .await
        .is_err()
    {
        tracing::warn!("outbound registrations not all removed after {UAC_SHUTDOWN_GRACE:?}");
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), http_task).await;
    if let Some(task) = debug_task {
        let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
    }
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

    #[test]
    fn contact_addresses_from_listen_advertise_or_detected() {
        let a = |s: &str| -> SocketAddr { s.parse().unwrap() };
        let detected =
            |v6: bool| Some(if v6 { "2001:db8::5" } else { "10.1.2.3" }.parse().unwrap());
        // A concrete listen address is advertised as is.
        let c = contact_addrs(&[a("127.0.0.1:5070")], &[], &[], None, detected);
        assert_eq!(c.udp.as_deref(), Some("127.0.0.1:5070"));
        assert_eq!(c.tcp, None);
        // A wildcard takes the detected address of its family.
        let any = [a("0.0.0.0:5060"), a("[::]:5060")];
        let c = contact_addrs(&any, &any, &[a("0.0.0.0:5061")], None, detected);
        assert_eq!(c.udp.as_deref(), Some("10.1.2.3:5060"));
        assert_eq!(c.tls.as_deref(), Some("10.1.2.3:5061"));
        // Nothing detected: left out (the runtime warns).
        assert_eq!(contact_addrs(&any, &[], &[], None, |_| None).udp, None);
        // --advertise wins over every listen address, ports kept.
        let ip = Some("203.0.113.9".parse().unwrap());
        let c = contact_addrs(&[a("127.0.0.1:5070")], &any, &[], ip, detected);
        assert_eq!(c.udp.as_deref(), Some("203.0.113.9:5070"));
        assert_eq!(c.tcp.as_deref(), Some("203.0.113.9:5060"));
    }
}
