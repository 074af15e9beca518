//! With Redis, each UDP socket is served on a thread of its own running a current-thread tokio
//! runtime, which also holds that runtime's Redis connection
//! ([`crate::location::Connections`]): a REGISTER's datagram, its script call, Redis's answer
//! and the response are all handled on one thread.
//!
//! On the shared multi-thread runtime the same work crossed threads several times per REGISTER
//! (the UDP task, the connection's task, a worker woken to steal each spawned task), and the
//! wake-ups and cross-thread frees that came with it cost more than a second core gave: with
//! Redis, one worker thread spent 39 µs per registration where two spent 56 (`bench/scale`,
//! "A runtime per UDP socket"). The sockets of an address (`SO_REUSEPORT`) spread the phones
//! over the threads by their source; the rest of the server (streams, HTTP, timers, the
//! sweeper) stays on the shared runtime.

use super::udp::{self, InFlight};
use crate::service::Service;
use futures::future::BoxFuture;
use std::sync::{mpsc, Arc};
use tokio::net::UdpSocket;
use tokio::sync::{oneshot, watch};

/// Keeps a UDP thread's runtime, and what was spawned on it (a connection opened while
/// answering a message, say), alive after its socket's serving ended: the thread ends when this
/// is dropped, once the server has stopped.
pub struct Release {
    _thread: oneshot::Sender<()>,
}

/// A socket being served on its thread.
pub struct UdpThread {
    /// The socket, registered with the thread's runtime (the proxy may send on it).
    pub socket: Arc<UdpSocket>,
    /// Resolves when serving has ended: after shutdown, with the messages in hand answered.
    pub served: BoxFuture<'static, ()>,
    /// Ends the thread when dropped.
    pub release: Release,
}

/// Starts serving `socket` (non-blocking) on a new thread named `name`.
///
/// Waits (briefly, at start-up) for the thread to have registered the socket with its runtime:
/// a runtime may not be dropped in async code, so it is made on its thread, never here.
pub fn spawn(
    socket: std::net::UdpSocket,
    service: Arc<Service>,
    in_flight: InFlight,
    shutdown: watch::Receiver<bool>,
    name: String,
) -> std::io::Result<UdpThread> {
    let (ready_tx, ready_rx) = mpsc::sync_channel(1);
    let (done_tx, done_rx) = oneshot::channel();
    let (release_tx, release_rx) = oneshot::channel::<()>();
    std::thread::Builder::new().name(name).spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(e) => return drop(ready_tx.send(Err(e))),
        };
        runtime.block_on(async move {
            let socket = match UdpSocket::from_std(socket) {
                Ok(socket) => Arc::new(socket),
                Err(e) => return drop(ready_tx.send(Err(e))),
            };
            let _ = ready_tx.send(Ok(socket.clone()));
            udp::serve(socket, service, in_flight, shutdown).await;
            let _ = done_tx.send(());
            // Either a send or the sender's drop releases the thread.
            let _ = release_rx.await;
        });
    })?;
    let socket = ready_rx
        .recv()
        .map_err(|_| std::io::Error::other("the UDP thread ended before serving its socket"))??;
    Ok(UdpThread {
        socket,
        served: Box::pin(async move {
            if done_rx.await.is_err() {
                tracing::error!("a UDP thread ended before its socket's serving did");
            }
        }),
        release: Release {
            _thread: release_tx,
        },
    })
}
