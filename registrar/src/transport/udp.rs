//! SIP over UDP: one receive task per socket, answering on it. An address has several sockets
//! (`SO_REUSEPORT`, see [`super::bind_udp`]): the kernel hands each datagram to one of them by
//! its source, so no two tasks wake for one datagram (tasks sharing one socket all woke for
//! each, and all but one found it empty: 12-15 % more CPU per registration).
//!
//! The loop reads datagrams as long as there are any (`try_recv_from`) and only then waits for
//! the socket to become readable (or for shutdown): under load a datagram costs one `recvfrom`
//! and one `sendto`, with no future built per message for the wait, and shutdown is noticed
//! between two messages.
//!
//! With the store in memory a message is handled inline: it never waits. With Redis a REGISTER
//! waits for its round trip, so up to [`InFlight`] messages of the socket are in hand at once
//! (beyond that the loop stops reading, and the kernel's buffer holds the rest): what has
//! arrived is read in batches of at most [`BATCH`], each handled by a task of its own that
//! polls its messages concurrently, and a batch's commands go out to Redis in one write.
//! Against a task per message, in 5 s at 5 000 registrations/s: 4 921 `writev` instead of
//! 18 605 (`bench/scale`). Such a socket is served on a thread of its own, with that thread's
//! Redis connection ([`super::udp_thread`]).

use crate::service::Service;
use futures::stream::{FuturesUnordered, StreamExt};
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use switchboard_crds::common::Transport;
use tokio::net::UdpSocket;
use tokio::sync::{watch, Semaphore};

/// Messages of one socket handled at once (see the module doc); 1 handles each inline.
pub type InFlight = usize;

/// Receives and answers on `socket` until shutdown; the messages in hand are finished first.
pub async fn serve(
    socket: Arc<UdpSocket>,
    service: Arc<Service>,
    in_flight: InFlight,
    shutdown: watch::Receiver<bool>,
) {
    if in_flight > 1 {
        serve_in_batches(socket, service, in_flight, shutdown).await;
    } else {
        serve_inline(&socket, &service, shutdown).await;
    }
}

/// One message at a time, each answered before the next is read.
async fn serve_inline(socket: &UdpSocket, service: &Service, mut shutdown: watch::Receiver<bool>) {
    let mut buf = vec![0u8; 65_536];
    loop {
        if *shutdown.borrow() {
            break;
        }
        match socket.try_recv_from(&mut buf) {
            Ok((n, source)) => answer(socket, service, &buf[..n], source).await,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if !wait_readable(socket, &mut shutdown).await {
                    break;
                }
            }
            Err(e) => receive_error(&e),
        }
    }
}

/// Datagrams read in one go at most, handled by one task.
const BATCH: usize = 16;

/// Up to `limit` messages at once: what has arrived is read in batches, each handled by a task
/// of its own that polls its messages concurrently.
async fn serve_in_batches(
    socket: Arc<UdpSocket>,
    service: Arc<Service>,
    limit: usize,
    mut shutdown: watch::Receiver<bool>,
) {
    let in_flight = Arc::new(Semaphore::new(limit));
    let mut buf = vec![0u8; 65_536];
    while !*shutdown.borrow() {
        let batch = read_batch(&socket, &mut buf);
        if batch.is_empty() {
            if !wait_readable(&socket, &mut shutdown).await {
                break;
            }
            continue;
        }
        let Ok(permits) = in_flight
            .clone()
            .acquire_many_owned(batch.len() as u32)
            .await
        else {
            break;
        };
        let (socket, service) = (socket.clone(), service.clone());
        tokio::spawn(async move {
            answer_batch(&socket, &service, batch).await;
            drop(permits);
        });
    }
    // The batches in hand are answered before the task ends.
    let _ = in_flight.acquire_many(limit as u32).await;
}

/// The datagrams that have arrived, at most [`BATCH`] (no system call once the socket is known
/// to be drained: tokio keeps its readiness).
fn read_batch(socket: &UdpSocket, buf: &mut [u8]) -> Vec<(Vec<u8>, SocketAddr)> {
    let mut batch = Vec::new();
    while batch.len() < BATCH {
        match socket.try_recv_from(buf) {
            Ok((n, source)) => batch.push((buf[..n].to_vec(), source)),
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => receive_error(&e),
        }
    }
    batch
}

/// Answers a batch's messages, concurrently.
///
/// A message's future is about 4 KB: inline in the spawned task it made tokio's task cell
/// (aligned to 128 bytes) an allocation in mimalloc's slow path, so even a batch of one is
/// boxed. The memory store's inline path does not box it: the extra allocation per message
/// cost it about 2 µs per registration at 20 000/s (`bench/register`).
async fn answer_batch(socket: &UdpSocket, service: &Service, batch: Vec<(Vec<u8>, SocketAddr)>) {
    if let [(data, source)] = batch.as_slice() {
        return Box::pin(answer(socket, service, data, *source)).await;
    }
    let mut answering: FuturesUnordered<_> = batch
        .iter()
        .map(|(data, source)| answer(socket, service, data, *source))
        .collect();
    while answering.next().await.is_some() {}
}

/// Waits until `socket` is readable; `false` once shutdown is requested.
async fn wait_readable(socket: &UdpSocket, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        biased;
        _ = super::shutdown_requested(shutdown) => false,
        r = socket.readable() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "UDP readiness error");
            }
            true
        }
    }
}

/// ICMP errors from earlier sends surface on receive on Linux; nothing to do but go on.
fn receive_error(e: &std::io::Error) {
    tracing::debug!(error = %e, "UDP receive error");
}

async fn answer(socket: &UdpSocket, service: &Service, data: &[u8], source: SocketAddr) {
    let Some(out) = service.handle(data, source, Transport::Udp).await else {
        return;
    };
    // The send buffer is large: waiting for it is the exception.
    let sent = match socket.try_send_to(&out.data, out.target) {
        Err(e) if e.kind() == ErrorKind::WouldBlock => socket.send_to(&out.data, out.target).await,
        other => other,
    };
    if let Err(e) = sent {
        tracing::debug!(target = %out.target, error = %e, "UDP send failed");
    }
}
