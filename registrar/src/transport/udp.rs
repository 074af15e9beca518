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
//! (beyond that the loop stops reading, and the kernel's buffer holds the rest), polled by the
//! receiving task itself: what has arrived is read, and the commands of the messages read
//! together go out to Redis in one write (the connection's task runs only once this one
//! waits). Against a task per message, in 5 s at 5 000 registrations/s: 4 921 `writev`
//! instead of 18 605 (`bench/scale`). Such a socket is served on a thread of its own, with
//! that thread's Redis connection ([`super::udp_thread`]).

use crate::service::{route, Outgoing, Service};
use futures::future::OptionFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use std::future::{poll_fn, Future};
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use switchboard_crds::common::Transport;
use tokio::net::UdpSocket;
use tokio::sync::watch;

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
        serve_concurrently(&socket, &service, in_flight, shutdown).await;
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

/// Up to `limit` messages at once, polled by this task itself: what has arrived is read (while
/// fewer than `limit` are in hand), each message's answer is polled once where it was made
/// and joins one set of futures only if it has to wait (a REGISTER's round trip to Redis), and
/// the task then waits for whichever comes first, an answer finishing or a datagram arriving.
///
/// The answer is made in a box kept from one message to the next: one that is done at once
/// (a challenge, an OPTIONS) costs neither an allocation nor a copy into the set, and one
/// that waits joins the set as its box, which a new one replaces (about 900 instructions
/// fewer per registration than every answer moved into the set; in alternated rounds the
/// Redis case's CPU against the memory store's fell by about 0.08: `bench/scale`, twelfth
/// session). The set polls a future it is given once more, so the waker it was first polled
/// with is replaced.
///
/// No task is spawned per message or per batch: the socket's thread runs this one task and its
/// Redis connection's, so a spawn bought no parallelism, only its cost (the task's cell, a copy
/// of the batch's futures into it, a wake-up through the scheduler): 2 860 instructions fewer
/// per registration than a task per batch (`bench/scale`, "The script call and one task per
/// socket").
async fn serve_concurrently(
    socket: &UdpSocket,
    service: &Service,
    limit: usize,
    shutdown: watch::Receiver<bool>,
) {
    let mut answering = FuturesUnordered::new();
    let empty = || Box::pin(OptionFuture::from(None));
    let mut staging = empty();
    let mut buf = vec![0u8; 65_536];
    // Made once (a wait built afresh on every turn cost more than the spawn it replaced), and
    // polled only before the task sleeps: each poll takes the watch's lock. While the task
    // is busy the flag is read instead.
    let mut watching = shutdown.clone();
    let mut stop = pin!(super::shutdown_requested(&mut watching));
    while !*shutdown.borrow() {
        while answering.len() < limit {
            match socket.try_recv_from(&mut buf) {
                Ok((n, source)) => {
                    staging
                        .set(Some(answer_owned(socket, service, buf[..n].to_vec(), source)).into());
                    if futures::poll!(staging.as_mut()).is_pending() {
                        let waiting = std::mem::replace(&mut staging, empty());
                        answering.push(waiting);
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => receive_error(&e),
            }
        }
        let room = answering.len() < limit;
        let go_on = poll_fn(|cx| {
            let mut answered = false;
            while let Poll::Ready(Some(_)) = answering.poll_next_unpin(cx) {
                answered = true;
            }
            if answered || (room && socket.poll_recv_ready(cx).is_ready()) {
                return Poll::Ready(true);
            }
            if stop.as_mut().poll(cx).is_ready() {
                return Poll::Ready(false);
            }
            Poll::Pending
        })
        .await;
        if !go_on {
            break;
        }
    }
    // The messages in hand are answered before the task ends.
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

/// [`answer`], owning the message (it is answered while the next ones are read). A message for
/// the proxy is boxed: the proxy's future is most of the 4 KB a message's future takes, and
/// each message's future is copied into the box it is polled in (1.8 KB without it: 1 270
/// instructions of copying fewer per registration).
async fn answer_owned(socket: &UdpSocket, service: &Service, data: Vec<u8>, source: SocketAddr) {
    let handler = route(&data);
    let out = if service.is_proxied(handler) {
        Box::pin(service.handle_proxied(&data, source, Transport::Udp)).await
    } else {
        service
            .handle_own(handler, &data, source, Transport::Udp)
            .await
    };
    send(socket, out).await;
}

async fn answer(socket: &UdpSocket, service: &Service, data: &[u8], source: SocketAddr) {
    send(socket, service.handle(data, source, Transport::Udp).await).await;
}

/// Sends a message's answer, if it has one.
async fn send(socket: &UdpSocket, out: Option<Outgoing>) {
    let Some(out) = out else {
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
