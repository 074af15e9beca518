//! Trunks: the TCP/TLS connections the proxy opens to them, and recognising a call from a
//! registration's upstream.

use super::core::Hop;
use super::driver::Inner;
use std::net::SocketAddr;
use std::time::Duration;
use switchboard_crds::config::OutboundRegistration;

/// How long connecting to a trunk (with the TLS handshake) may take.
const TRUNK_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl Inner {
    /// A connection to `peer` over TCP/TLS: the open flow to its address, else a new one,
    /// registered in the flow table and read by the transport's connection loop.
    pub(super) async fn stream_to(&self, peer: &crate::uac::flow::Peer) -> Option<Hop> {
        use crate::uac::flow::{resolve, Flow};
        let out = self.outbound.get()?;
        let addr = crate::transport::nat::canonical(resolve(&peer.host, peer.port).await.ok()?);
        if self.flows.transport_of(addr) == Some(peer.transport) {
            return Some(Hop {
                addr,
                transport: peer.transport,
            });
        }
        let flow = match Flow::open(peer, out.tls.as_ref(), TRUNK_CONNECT_TIMEOUT).await {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "cannot connect to the trunk");
                return None;
            }
        };
        let addr = crate::transport::nat::canonical(flow.remote_addr());
        let (stream, buf) = flow.into_stream()?;
        let registered = self.flows.open(addr, peer.transport);
        (out.reader)(stream, buf, addr, peer.transport, registered);
        Some(Hop {
            addr,
            transport: peer.transport,
        })
    }
}

/// Whether a request from `source` comes from a registration's upstream: its host or outbound
/// proxy, by address (host names resolved at the time of the call).
pub(super) async fn from_upstream(reg: &OutboundRegistration, source: SocketAddr) -> bool {
    let ip = crate::transport::nat::canonical(source).ip();
    let proxy = reg.outbound_proxy.as_deref().map(|p| {
        crate::message::headers::split_host_port(p).map_or_else(|| p.to_string(), |(h, _)| h)
    });
    for host in std::iter::once(reg.host.clone()).chain(proxy) {
        let bare = host.trim_matches(|c| c == '[' || c == ']');
        if let Ok(addr) = bare.parse::<std::net::IpAddr>() {
            if addr == ip {
                return true;
            }
            continue;
        }
        // A host name: its addresses now (the upstream may have several).
        if let Ok(addrs) = tokio::net::lookup_host((bare, reg.port)).await {
            if addrs
                .map(|a| crate::transport::nat::canonical(a).ip())
                .any(|a| a == ip)
            {
                return true;
            }
        }
    }
    false
}

pub(super) async fn resolve(host: &str, port: u16) -> Option<SocketAddr> {
    if let Ok(ip) = host.trim_matches(|c| c == '[' || c == ']').parse() {
        return Some(SocketAddr::new(ip, port));
    }
    tokio::net::lookup_host((host, port)).await.ok()?.next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn upstream_is_recognised_by_address_or_resolved_name() {
        let reg = |host: &str, proxy: Option<&str>| OutboundRegistration {
            id: "default/carrier".into(),
            host: host.into(),
            port: 5060,
            outbound_proxy: proxy.map(str::to_string),
            ..Default::default()
        };
        let src: SocketAddr = "127.0.0.1:5099".parse().unwrap();
        assert!(from_upstream(&reg("127.0.0.1", None), src).await);
        assert!(from_upstream(&reg("localhost", None), src).await);
        assert!(!from_upstream(&reg("192.0.2.1", None), src).await);
        assert!(from_upstream(&reg("192.0.2.1", Some("127.0.0.1:5070")), src).await);
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:5099".parse().unwrap();
        assert!(from_upstream(&reg("127.0.0.1", None), mapped).await);
    }
}
