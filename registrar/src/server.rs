//! The runtime: loads the config, binds the listeners, spawns the tasks (UDP receivers, TCP/TLS
//! accept loops, HTTP, the expiry sweeper, the config watcher, the status reporter, the
//! outbound registrations) and shuts down gracefully on SIGTERM/SIGINT: readiness drops,
//! listeners stop taking new work, messages in hand are answered, outbound registrations are
//! removed upstream (`Expires: 0`), then the process exits 0.
//!
//! Config source (see [`RunArgs`]): a file or the embedded demo (standalone: no status
//! reporter), or, in a cluster, the operator's Secrets through [`kube_source`]; then the
//! registrar is ready only once the first complete config has arrived.

use crate::auth::redis::RedisAuthState;
use crate::auth::state::AuthState;
use crate::auth::AuthSettings;
use crate::cli::{in_pod, ConfigSource, RunArgs};
use crate::cluster::{self, Cluster};
use crate::config::{self, file, kube_source, ConfigHandle};
use crate::http::{self, HttpState};
use crate::location::{Connections, LocationStore, MemoryStore, RedisStore};
use crate::metrics::Metrics;
use crate::proxy::ProxySettings;
use crate::registrar::events::RegistrationEvent;
use crate::service::{Service, ServiceSettings};
use crate::status::{self, StatusHandle, StatusSettings};
use crate::transport;
use crate::transport::per_source::PerSource;
use crate::transport::tcp::{ConnectionLimits, StreamLimits};
use crate::transport::udp_thread;
use crate::transport::websocket::{handshake::WebSocketPolicy, WebSocketSettings};
use crate::uac::{self, flow::tls_client_config, ClientSettings, ContactAddrs, UacIndex};
use anyhow::Context;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use switchboard_crds::common::Transport;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::{broadcast, watch, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

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
const REDIS_UDP_IN_FLIGHT: usize = 1024;

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

/// The Kubernetes API and the namespace the registrar watches (in a cluster).
type ClusterApi = (kube::Client, String);

/// What the startup steps after the service share: the arguments, the config, the store,
/// the service and its siblings, and the shutdown signal every task watches.
struct Runtime<'a> {
    args: &'a RunArgs,
    config: Arc<ConfigHandle>,
    store: Arc<dyn LocationStore>,
    metrics: Arc<Metrics>,
    service: Arc<Service>,
    siblings: Cluster,
    shutdown: watch::Receiver<bool>,
}

/// What was bound, per transport: the Contact of outbound registrations and the addresses
/// the proxy record-routes with.
#[derive(Default)]
struct Bound {
    udp: Vec<SocketAddr>,
    tcp: Vec<SocketAddr>,
    tls: Vec<SocketAddr>,
    ws: Vec<SocketAddr>,
    wss: Vec<SocketAddr>,
}

/// The SIP listeners: their tasks and what the drain waits on.
struct Listeners {
    /// Every listener's task; a UDP socket's task ends once its messages in hand are answered.
    tasks: JoinSet<()>,
    /// TCP, TLS and WebSocket connections share this bound; each holds a permit while open.
    permits: Arc<Semaphore>,
    limits: StreamLimits,
    bound: Bound,
    /// With Redis, the UDP sockets' threads: they end when this is dropped, after the drain.
    udp_threads: Vec<udp_thread::Release>,
}

/// The HTTP servers: `/metrics` and probes, and `/debug/*` when bound.
struct HttpTasks {
    main: JoinHandle<()>,
    debug: Option<JoinHandle<()>>,
}

/// Runs the registrar until SIGTERM or SIGINT.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    // First, so a SIGTERM that arrives while starting (readiness may already be up) still
    // shuts down gracefully instead of killing the process.
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let metrics = Arc::new(Metrics::new());
    let config = Arc::new(ConfigHandle::new());
    let cluster = load_config(&args, &config).await?;
    anyhow::ensure!(
        args.status_rate > 0.0 && args.status_rate.is_finite(),
        "--status-rate must be a positive number"
    );
    let replica = replica_name(&args);
    let (store, shared) = location_store(&args).await?;
    let (siblings, clustered) = siblings(&args, &replica, cluster.is_some(), &config)?;
    metrics.replica_info.with_label_values(&[&replica]).set(1);
    let service = Arc::new(Service::new(
        service_settings(&args, siblings.clone(), shared),
        config.clone(),
        store.clone(),
        metrics.clone(),
    ));
    service.config_changed().await;
    // Subscribed before any request is served, so the reporter sees every change.
    let status_events = cluster.as_ref().map(|_| service.subscribe());

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let rt = Runtime {
        args: &args,
        config,
        store,
        metrics,
        service,
        siblings,
        shutdown: shutdown_rx,
    };
    // Before anything is served: an edit made once the registrar answers is never missed.
    watch_config_file(&rt)?;
    let listeners = bind_listeners(&rt)?;
    let uac_index = UacIndex::default();
    let http = start_http(&rt, uac_index.clone()).await?;
    let mut background = spawn_background(&rt, clustered, &cluster, &listeners.bound);

    // Status reporter (cluster only), then the outbound registrations, which report to it.
    let uac_settings = uac_settings(&rt, &listeners.bound)?;
    attach_outbound(&rt, &listeners, &uac_settings);
    let status_start = match (cluster, status_events) {
        (Some((client, _)), Some(events)) => {
            Some(status_reporter(&rt, client, events, &replica, clustered))
        }
        _ => {
            tracing::info!("status reporter disabled (no cluster)");
            None
        }
    };
    let uac_task = spawn_uac(&rt, uac_settings, status_start, uac_index);

    wait_for_signal(&mut term, &mut int, &rt.config).await;
    let _ = shutdown_tx.send(true);
    drain(listeners, args.max_connections, uac_task, http).await;
    background.abort_all();
    tracing::info!("stopped");
    Ok(())
}

/// Loads the config of a file or the embedded demo into `config`; in a cluster, connects to
/// the API instead (the config arrives later through [`kube_source`]).
async fn load_config(args: &RunArgs, config: &ConfigHandle) -> anyhow::Result<Option<ClusterApi>> {
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
    if !matches!(source, ConfigSource::Cluster) {
        return Ok(None);
    }
    let client = kube::Client::try_default().await.context(
        "connecting to the Kubernetes API (--kube or KUBERNETES_SERVICE_HOST; \
         give --config FILE to run standalone)",
    )?;
    let namespace = args
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| client.default_namespace().to_string());
    Ok(Some((client, namespace)))
}

/// The location store: Redis when given (then the limiter and nonce-count records live there
/// too, on the same connections, returned beside them), else in memory.
async fn location_store(
    args: &RunArgs,
) -> anyhow::Result<(Arc<dyn LocationStore>, Option<Connections>)> {
    match &args.redis_url {
        Some(url) => {
            let store = RedisStore::connect(url, &args.redis_prefix)
                .await
                .with_context(|| format!("connecting to the location store at {url}"))?;
            tracing::info!(prefix = %args.redis_prefix, "bindings and authentication state kept in Redis");
            let conns = store.connections();
            Ok((Arc::new(store), Some(conns)))
        }
        None => Ok((Arc::new(MemoryStore::new()), None)),
    }
}

/// The siblings: a static list, or the registrar Service's endpoints in a cluster; and
/// whether this replica has siblings at all.
fn siblings(
    args: &RunArgs,
    replica: &str,
    in_cluster: bool,
    config: &ConfigHandle,
) -> anyhow::Result<(Cluster, bool)> {
    anyhow::ensure!(
        args.peers_service.is_none() || in_cluster,
        "--peers-service needs the cluster (--kube, or running in a pod)"
    );
    let clustered = !args.peers.is_empty() || args.peers_service.is_some();
    let siblings = if clustered {
        if args.redis_url.is_none() {
            tracing::warn!("siblings without --redis-url: each replica keeps its own bindings");
        }
        Cluster::new(replica.to_string())
    } else {
        Cluster::alone(replica.to_string())
    };
    siblings.set_members(&args.peers);
    if clustered
        && config
            .current()
            .is_some_and(|l| l.config.nonce_key.as_deref().unwrap_or("").is_empty())
    {
        tracing::warn!("the config has no nonceKey: this replica makes its own, so siblings refuse its challenges and Routes; give every replica the same nonceKey");
    }
    Ok((siblings, clustered))
}

/// The service's settings from the arguments: authentication (state in Redis when `shared`),
/// the siblings and the proxy's ring timeout.
fn service_settings(
    args: &RunArgs,
    siblings: Cluster,
    shared: Option<Connections>,
) -> ServiceSettings {
    let auth = AuthSettings {
        nonce_ttl: Duration::from_secs(args.nonce_ttl.max(1)),
        limiter: args.limiter.settings(),
        ..Default::default()
    };
    let auth_state = shared.map(|conns| -> Arc<dyn AuthState> {
        Arc::new(RedisAuthState::new(
            conns,
            &args.redis_prefix,
            auth.limiter,
            auth.nonce_ttl,
        ))
    });
    ServiceSettings {
        cluster: siblings,
        auth,
        auth_state,
        proxy: ProxySettings {
            ring_timeout: Duration::from_secs(args.ring_timeout.max(1)),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Binds UDP, then TCP and TLS, then WS and WSS, spawning their serving tasks.
fn bind_listeners(rt: &Runtime<'_>) -> anyhow::Result<Listeners> {
    let args = rt.args;
    let mut tasks = JoinSet::new();
    let mut bound = Bound::default();
    let udp_threads = bind_udp(rt, &mut tasks, &mut bound.udp)?;
    // TCP, TLS and WebSocket share the connection bound.
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
    let acceptor = bind_streams(rt, &admit, limits, &mut tasks, &mut bound)?;
    bind_websockets(
        rt,
        acceptor.as_ref(),
        &admit,
        limits,
        &mut tasks,
        &mut bound,
    )?;
    Ok(Listeners {
        tasks,
        permits,
        limits,
        bound,
        udp_threads,
    })
}

/// Binds `--udp-workers` UDP sockets per address (`SO_REUSEPORT`), each served by its own
/// task: on the shared runtime with the store in memory, on a thread of its own with Redis
/// ([`udp_thread`]; their releases are returned).
fn bind_udp(
    rt: &Runtime<'_>,
    tasks: &mut JoinSet<()>,
    bound: &mut Vec<SocketAddr>,
) -> anyhow::Result<Vec<udp_thread::Release>> {
    let args = rt.args;
    let workers = args
        .udp_workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .max(1);
    let mut threads = Vec::new();
    for (addr, required) in addresses(&args.udp, 5060) {
        let sockets = match transport::bind_udp(addr, workers) {
            Ok(sockets) => sockets,
            Err(e) if !required => {
                tracing::warn!(%addr, error = %e, "not listening on UDP");
                continue;
            }
            Err(e) => return Err(e).with_context(|| format!("binding UDP {addr}")),
        };
        tracing::info!(%addr, workers, "listening on UDP");
        for (i, socket) in sockets.into_iter().enumerate() {
            let socket = serve_udp(rt, socket, tasks, &mut threads)
                .with_context(|| format!("serving UDP {addr}"))?;
            if i == 0 {
                bound.push(socket.local_addr().unwrap_or(addr));
                attach_proxy_udp(rt, &socket, addr);
            }
        }
    }
    Ok(threads)
}

/// Serves one UDP socket: its messages one at a time on the shared runtime with the store in
/// memory; with Redis, where a message waits for its round trip, several at once on a thread
/// of its own (whose release is added to `threads`).
fn serve_udp(
    rt: &Runtime<'_>,
    socket: std::net::UdpSocket,
    tasks: &mut JoinSet<()>,
    threads: &mut Vec<udp_thread::Release>,
) -> std::io::Result<Arc<tokio::net::UdpSocket>> {
    if rt.args.redis_url.is_none() {
        let socket = Arc::new(tokio::net::UdpSocket::from_std(socket)?);
        tasks.spawn(transport::udp::serve(
            socket.clone(),
            rt.service.clone(),
            1,
            rt.shutdown.clone(),
        ));
        return Ok(socket);
    }
    let name = format!("udp-{}", threads.len());
    let thread = udp_thread::spawn(
        socket,
        rt.service.clone(),
        REDIS_UDP_IN_FLIGHT,
        rt.shutdown.clone(),
        name,
    )?;
    tasks.spawn(thread.served);
    threads.push(thread.release);
    Ok(thread.socket)
}

/// The proxy sends on the first IPv4 (else IPv6) socket, advertising its address
/// (--advertise, else a detected one for a wildcard bind).
fn attach_proxy_udp(rt: &Runtime<'_>, socket: &Arc<tokio::net::UdpSocket>, addr: SocketAddr) {
    if rt.service.proxy().is_attached() {
        return;
    }
    let local = socket.local_addr().unwrap_or(addr);
    let ip = rt
        .args
        .advertise
        .or_else(|| {
            (local.ip().is_unspecified())
                .then(|| detect_local_ip(local.is_ipv6()))
                .flatten()
        })
        .unwrap_or(local.ip());
    rt.service
        .proxy()
        .attach_udp(socket.clone(), SocketAddr::new(ip, local.port()));
}

/// Binds the TCP listeners, then the TLS ones (when a certificate is given); returns the TLS
/// acceptor, which WSS shares.
fn bind_streams(
    rt: &Runtime<'_>,
    admit: &ConnectionLimits,
    limits: StreamLimits,
    tasks: &mut JoinSet<()>,
    bound: &mut Bound,
) -> anyhow::Result<Option<TlsAcceptor>> {
    let args = rt.args;
    let serve = |listener, tls| {
        transport::tcp::serve(
            listener,
            tls,
            rt.service.clone(),
            rt.metrics.clone(),
            admit.clone(),
            limits,
            rt.shutdown.clone(),
        )
    };
    for (addr, required) in addresses(&args.tcp, 5060) {
        match transport::bind_tcp(addr) {
            Ok(listener) => {
                tracing::info!(%addr, "listening on TCP");
                bound.tcp.push(listener.local_addr().unwrap_or(addr));
                tasks.spawn(serve(listener, None));
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
                    bound.tls.push(listener.local_addr().unwrap_or(addr));
                    tasks.spawn(serve(listener, Some(acceptor.clone())));
                }
                Err(e) if !required => {
                    tracing::warn!(%addr, error = %e, "not listening on TLS")
                }
                Err(e) => return Err(e).with_context(|| format!("binding TLS {addr}")),
            }
        }
    }
    Ok(acceptor)
}

/// Binds WS and WSS (browser phones), only where asked for.
fn bind_websockets(
    rt: &Runtime<'_>,
    acceptor: Option<&TlsAcceptor>,
    admit: &ConnectionLimits,
    limits: StreamLimits,
    tasks: &mut JoinSet<()>,
    bound: &mut Bound,
) -> anyhow::Result<()> {
    let args = rt.args;
    let ws_settings = Arc::new(WebSocketSettings {
        policy: WebSocketPolicy {
            allowed_origins: args.ws_allowed_origin.clone(),
        },
        ping_interval: (args.ws_ping_interval > 0)
            .then(|| Duration::from_secs(args.ws_ping_interval)),
    });
    for (tls, given, bound) in [
        (None, &args.ws, &mut bound.ws),
        (acceptor, &args.wss, &mut bound.wss),
    ] {
        for &addr in given {
            let listener =
                transport::bind_tcp(addr).with_context(|| format!("binding WebSocket {addr}"))?;
            tracing::info!(%addr, secure = tls.is_some(), "listening for SIP over WebSocket");
            bound.push(listener.local_addr().unwrap_or(addr));
            tasks.spawn(transport::websocket::serve(
                listener,
                tls.cloned(),
                ws_settings.clone(),
                rt.service.clone(),
                rt.metrics.clone(),
                admit.clone(),
                limits,
                rt.shutdown.clone(),
            ));
        }
    }
    Ok(())
}

/// Serves `/metrics`, `/healthz`, `/readyz` on `--http`, and `/debug/*`.
async fn start_http(rt: &Runtime<'_>, uac: UacIndex) -> anyhow::Result<HttpTasks> {
    let args = rt.args;
    let http_state = Arc::new(HttpState {
        metrics: rt.metrics.clone(),
        config: rt.config.clone(),
        store: rt.store.clone(),
        uac,
        cluster: rt.siblings.clone(),
        shutting_down: Default::default(),
    });
    let http_listener = tokio::net::TcpListener::bind(args.http)
        .await
        .with_context(|| format!("binding HTTP {}", args.http))?;
    tracing::info!(addr = %args.http, "serving /metrics, /healthz, /readyz");
    let main = serve_http(
        http_listener,
        http::router(http_state.clone()),
        rt.shutdown.clone(),
    );
    let debug = serve_debug(args, http_state, rt.shutdown.clone()).await?;
    Ok(HttpTasks { main, debug })
}

/// Watches the config file, when there is one (its task ends with the shutdown).
fn watch_config_file(rt: &Runtime<'_>) -> anyhow::Result<()> {
    if let Some(path) = &rt.args.config {
        let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
        file::spawn_watcher(
            path,
            rt.config.clone(),
            rt.metrics.clone(),
            rt.shutdown.clone(),
        )?;
    }
    Ok(())
}

/// Spawns the background tasks: the expiry sweeper, the config follower, the sibling probes
/// and endpoint watch (with siblings) and the cluster config source.
fn spawn_background(
    rt: &Runtime<'_>,
    clustered: bool,
    cluster: &Option<ClusterApi>,
    bound: &Bound,
) -> JoinSet<()> {
    let mut background = JoinSet::new();
    background.spawn(sweep(rt.service.clone(), rt.shutdown.clone()));
    background.spawn(follow_config(
        rt.service.clone(),
        rt.config.subscribe(),
        rt.shutdown.clone(),
    ));
    if clustered {
        spawn_sibling_tasks(rt, cluster, bound, &mut background);
    }
    if let Some((client, namespace)) = cluster {
        tracing::info!(
            %namespace,
            "watching the registrar config Secrets; ready once a complete config arrives"
        );
        let handle = rt.config.clone();
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
    background
}

/// Expires bindings once a second until shutdown.
async fn sweep(service: Arc<Service>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = transport::shutdown_requested(&mut shutdown) => break,
            _ = tick.tick() => service.sweep().await,
        }
    }
}

/// Tells the service of every config change until shutdown.
async fn follow_config(
    service: Arc<Service>,
    mut changes: watch::Receiver<u64>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = transport::shutdown_requested(&mut shutdown) => break,
            r = changes.changed() => {
                if r.is_err() { break; }
                service.config_changed().await;
            }
        }
    }
}

/// Spawns the sibling probes and, with `--peers-service`, the EndpointSlice watch.
fn spawn_sibling_tasks(
    rt: &Runtime<'_>,
    cluster: &Option<ClusterApi>,
    bound: &Bound,
    background: &mut JoinSet<()>,
) {
    // Probes leave from the family of the address we advertise to siblings.
    let family_ip =
        rt.service
            .proxy()
            .advertised()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| match a {
                SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            });
    background.spawn(cluster::probe::run(
        rt.siblings.clone(),
        SocketAddr::new(family_ip, 0),
        rt.shutdown.clone(),
    ));
    if let (Some(service_name), Some((client, namespace))) = (&rt.args.peers_service, cluster) {
        tracing::info!(service = %service_name, "siblings from the Service's EndpointSlices");
        rt.siblings.own_only_when_listed();
        background.spawn(cluster::endpoints::run(
            client.clone(),
            namespace.clone(),
            service_name.clone(),
            bound.udp.first().map_or(5060, |a| a.port()),
            rt.siblings.clone(),
            rt.shutdown.clone(),
        ));
    }
}

/// The outbound registrations' settings: Contact addresses from what was bound, the TLS
/// client config (`--uac-ca-file`) and the store.
fn uac_settings(rt: &Runtime<'_>, bound: &Bound) -> anyhow::Result<ClientSettings> {
    let args = rt.args;
    let contacts = contact_addrs(
        &bound.udp,
        &bound.tcp,
        &bound.tls,
        args.advertise,
        detect_local_ip,
    );
    for (t, bound) in [
        (Transport::Udp, &bound.udp),
        (Transport::Tcp, &bound.tcp),
        (Transport::Tls, &bound.tls),
    ] {
        if !bound.is_empty() && contacts.get(t).is_none() {
            tracing::warn!(transport = %t, "no address to advertise for outbound registrations; give --advertise");
        }
    }
    let ca_files: Vec<&std::path::Path> = args.uac_ca_file.iter().map(|p| p.as_path()).collect();
    let settings = ClientSettings {
        contacts,
        tls: Some(tls_client_config(&ca_files)?),
        store: Some(rt.store.clone()),
        ..Default::default()
    };
    tracing::info!(contacts = ?settings.contacts, "outbound registrations follow the config");
    Ok(settings)
}

/// Calls to trunks over TCP/TLS: the proxy connects with the same TLS client config as the
/// outbound registrations, and record-routes with our listening address on that transport.
fn attach_outbound(rt: &Runtime<'_>, listeners: &Listeners, uac: &ClientSettings) {
    let advertise = rt.args.advertise;
    let advertised = |bound: &[SocketAddr]| {
        bound.first().map(|a| {
            let ip = advertise.unwrap_or_else(|| {
                if a.ip().is_unspecified() {
                    detect_local_ip(a.is_ipv6()).unwrap_or(a.ip())
                } else {
                    a.ip()
                }
            });
            SocketAddr::new(ip, a.port())
        })
    };
    let bound = &listeners.bound;
    rt.service.proxy().attach_outbound(crate::proxy::Outbound {
        reader: transport::tcp::outbound_reader(
            Arc::downgrade(&rt.service),
            rt.metrics.clone(),
            listeners.limits,
            rt.shutdown.clone(),
        ),
        tls: uac.tls.clone(),
        tcp: advertised(&bound.tcp),
        tls_addr: advertised(&bound.tls),
        ws: advertised(&bound.ws),
        wss: advertised(&bound.wss),
    });
}

/// Starts the status reporter (cluster only); its handle is what the outbound registrations
/// report to.
fn status_reporter(
    rt: &Runtime<'_>,
    client: kube::Client,
    events: broadcast::Receiver<RegistrationEvent>,
    replica: &str,
    clustered: bool,
) -> impl Future<Output = StatusHandle> + Send + 'static {
    let settings = StatusSettings {
        rate: rt.args.status_rate,
        burst: rt.args.status_burst.max(1),
        replica: Some(replica.to_string()),
        ..Default::default()
    };
    let (store, metrics) = (rt.store.clone(), rt.metrics.clone());
    // Alone with the in-memory store, a restart lost every binding: statuses saying
    // otherwise are corrected as soon as the config is in force, not after the settle.
    let after_start = status::feed::AfterStart {
        config: rt.config.clone(),
        holder: status::restart::Holder::for_replica(
            replica,
            rt.args.redis_url.is_none(),
            clustered,
        ),
    };
    async move {
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
    }
}

/// Spawns the outbound registrations, once the status reporter (if any) has started.
fn spawn_uac(
    rt: &Runtime<'_>,
    settings: ClientSettings,
    status_start: Option<impl Future<Output = StatusHandle> + Send + 'static>,
    index: UacIndex,
) -> JoinHandle<()> {
    let (config, shutdown) = (rt.config.clone(), rt.shutdown.clone());
    let siblings = rt.siblings.clone();
    tokio::spawn(async move {
        let status = match status_start {
            Some(start) => Some(start.await),
            None => None,
        };
        if !*shutdown.borrow() {
            uac::follow_config(settings, status, index, siblings, config, shutdown).await;
        }
    })
}

/// Says whether the registrar is ready, then waits for SIGTERM or SIGINT.
async fn wait_for_signal(term: &mut Signal, int: &mut Signal, config: &ConfigHandle) {
    if config.is_loaded() {
        tracing::info!("registrar ready");
    } else {
        tracing::info!("registrar listening; not ready until the config arrives");
    }
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
}

/// After shutdown was signalled: waits (bounded) for the listeners and open connections to
/// finish, for the outbound registrations to be removed upstream, then for the HTTP servers.
async fn drain(
    mut listeners: Listeners,
    max_connections: usize,
    uac_task: JoinHandle<()>,
    http: HttpTasks,
) {
    let connections = async {
        while listeners.tasks.join_next().await.is_some() {}
        // Every connection holds a permit: having them all back means every connection closed.
        let _ = listeners
            .permits
            .acquire_many(max_connections.max(1) as u32)
            .await;
    };
    if tokio::time::timeout(DRAIN_TIMEOUT, connections)
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {DRAIN_TIMEOUT:?}; exiting anyway");
    }
    // The outbound registrations saw the shutdown too and are unregistering.
    if tokio::time::timeout(UAC_SHUTDOWN_GRACE, uac_task)
        .await
        .is_err()
    {
        tracing::warn!("outbound registrations not all removed after {UAC_SHUTDOWN_GRACE:?}");
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), http.main).await;
    if let Some(task) = http.debug {
        let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
    }
    // What was spawned on a UDP thread (a connection opened by the proxy) lived until now.
    drop(listeners.udp_threads);
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
