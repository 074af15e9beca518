//! SIP transports: [`udp`], [`tcp`] (stream framing in [`crate::message::framing`]), [`tls`] on
//! top of TCP, [`websocket`] (WS and WSS, RFC 7118) on the same connection handling, and the NAT
//! rules of RFC 3261 §18.2.1 / RFC 3581 in [`nat`]. Each hands whole messages to
//! [`crate::service::Service::handle`] and sends back what it returns.

pub mod nat;
pub mod per_source;
pub mod tcp;
pub mod tls;
pub mod udp;
pub mod udp_thread;
pub mod websocket;

use socket2::{Domain, Protocol, Socket, Type};
use std::net::SocketAddr;
use tokio::sync::watch;

/// Resolves when shutdown was asked for.
pub async fn shutdown_requested(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

fn socket(addr: SocketAddr, ty: Type, protocol: Protocol) -> std::io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), ty, Some(protocol))?;
    if addr.is_ipv6() {
        // So that [::]:5060 and 0.0.0.0:5060 can both be bound.
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// `count` (at least one) UDP sockets bound to `addr` with `SO_REUSEPORT` (IPv6 ones
/// IPv6-only), with large buffers; a port of 0 is the one the first got. The kernel hands each
/// datagram to one of them by its source address and port, so each socket gets a receive task
/// of its own and no two tasks wake for one datagram (tasks sharing a socket all do).
///
/// The sockets are non-blocking and not yet registered with a runtime: the one that serves a
/// socket registers it ([`udp_thread`] on a thread of its own).
pub fn bind_udp(addr: SocketAddr, count: usize) -> std::io::Result<Vec<std::net::UdpSocket>> {
    ensure_udp_port_free(addr)?;
    let mut addr = addr;
    let mut sockets = Vec::with_capacity(count.max(1));
    for _ in 0..count.max(1) {
        let s = socket(addr, Type::DGRAM, Protocol::UDP)?;
        s.set_reuse_port(true)?;
        let _ = s.set_recv_buffer_size(4 * 1024 * 1024);
        let _ = s.set_send_buffer_size(4 * 1024 * 1024);
        s.bind(&addr.into())?;
        let s = std::net::UdpSocket::from(s);
        addr = s.local_addr()?;
        sockets.push(s);
    }
    Ok(sockets)
}

/// Fails with `AddrInUse` when another socket holds `addr` (a second registrar on the same
/// port): the sockets of [`bind_udp`] share their port by design (`SO_REUSEPORT`, and Linux
/// lets UDP sockets with `SO_REUSEADDR` share one too), so their own bind would succeed and
/// silently split the traffic. A plain bind, released at once, refuses instead.
fn ensure_udp_port_free(addr: SocketAddr) -> std::io::Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    let probe = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        probe.set_only_v6(true)?;
    }
    probe
        .bind(&addr.into())
        .map_err(|e| std::io::Error::new(e.kind(), format!("UDP {addr} is already in use ({e})")))
}

/// A listening TCP socket bound to `addr`.
pub fn bind_tcp(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let s = socket(addr, Type::STREAM, Protocol::TCP)?;
    s.set_tcp_nodelay(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    tokio::net::TcpListener::from_std(s.into())
}

#[cfg(test)]
mod tests {
    use super::bind_udp;

    #[test]
    fn a_second_bind_of_a_udp_port_fails_instead_of_sharing_it() {
        let first = bind_udp("127.0.0.1:0".parse().unwrap(), 2).unwrap();
        let addr = first[0].local_addr().unwrap();
        assert_eq!(
            first[1].local_addr().unwrap(),
            addr,
            "one port for the workers"
        );
        let err = bind_udp(addr, 1).expect_err("the port is held");
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
        assert!(err.to_string().contains("already in use"), "{err}");
        drop(first);
        assert!(bind_udp(addr, 2).is_ok(), "free again once released");
    }
}
