//! The UAC's connection to an upstream: a connected UDP socket, a TCP stream, or TLS over
//! TCP (rustls; system roots plus optional extra CAs). Resolution failures and connection
//! failures are told apart so the status can say `DNS failure: …`.

use crate::message::framing::{next_frame, Frame};
use crate::message::MAX_MESSAGE_SIZE;
use bytes::{Buf, BytesMut};
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use switchboard_crds::common::Transport;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio_rustls::rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

/// Where to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Host name or IP.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Transport.
    pub transport: Transport,
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{} ({})", self.host, self.port, self.transport)
    }
}

/// Why a flow could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlowError {
    /// The host did not resolve.
    #[error("DNS failure: {0}")]
    Dns(String),
    /// Connecting (or the TLS handshake) failed.
    #[error("connection failed: {0}")]
    Connect(String),
}

/// A byte stream: TCP, or TLS over TCP.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

enum Kind {
    Udp(UdpSocket),
    Stream { io: Box<dyn Io>, buf: BytesMut },
}

/// An open flow to one upstream address.
pub struct Flow {
    kind: Kind,
    local: SocketAddr,
    remote: SocketAddr,
    transport: Transport,
}

/// A rustls client config trusting the system's roots and the PEM certificates in
/// `extra_ca` (a test CA, or a private PBX's CA).
pub fn tls_client_config(extra_ca: &[&Path]) -> anyhow::Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    for path in extra_ca {
        let mut n = 0;
        for cert in CertificateDer::pem_file_iter(path)
            .map_err(|e| anyhow::anyhow!("reading CA file {}: {e}", path.display()))?
        {
            let cert = cert.map_err(|e| anyhow::anyhow!("CA file {}: {e}", path.display()))?;
            roots.add(cert)?;
            n += 1;
        }
        anyhow::ensure!(n > 0, "CA file {} holds no certificate", path.display());
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Resolves `host:port` (an IP literal needs no DNS).
pub async fn resolve(host: &str, port: u16) -> Result<SocketAddr, FlowError> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let mut addrs = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| FlowError::Dns(format!("{host}: {e}")))?;
    addrs
        .next()
        .ok_or_else(|| FlowError::Dns(format!("{host}: no address")))
}

impl Flow {
    /// Resolves and connects, within `timeout`.
    pub async fn open(
        peer: &Peer,
        tls: Option<&Arc<ClientConfig>>,
        timeout: Duration,
    ) -> Result<Flow, FlowError> {
        let remote = tokio::time::timeout(timeout, resolve(&peer.host, peer.port))
            .await
            .map_err(|_| FlowError::Dns(format!("{}: timed out", peer.host)))??;
        let connect = async {
            match peer.transport {
                Transport::Udp => {
                    let bind: SocketAddr = if remote.is_ipv4() {
                        "0.0.0.0:0".parse().expect("addr")
                    } else {
                        "[::]:0".parse().expect("addr")
                    };
                    let sock = UdpSocket::bind(bind).await?;
                    // Connected, so the kernel picks the source address we put in Via.
                    sock.connect(remote).await?;
                    let local = sock.local_addr()?;
                    Ok::<_, io::Error>(Flow {
                        kind: Kind::Udp(sock),
                        local,
                        remote,
                        transport: peer.transport,
                    })
                }
                Transport::Tcp | Transport::Tls => {
                    let tcp = TcpStream::connect(remote).await?;
                    tcp.set_nodelay(true)?;
                    let local = tcp.local_addr()?;
                    let io: Box<dyn Io> = if peer.transport == Transport::Tls {
                        let config =
                            tls.ok_or_else(|| io::Error::other("TLS is not configured"))?;
                        let name = ServerName::try_from(peer.host.clone())
                            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                        Box::new(
                            TlsConnector::from(config.clone())
                                .connect(name, tcp)
                                .await?,
                        )
                    } else {
                        Box::new(tcp)
                    };
                    Ok(Flow {
                        kind: Kind::Stream {
                            io,
                            buf: BytesMut::with_capacity(4096),
                        },
                        local,
                        remote,
                        transport: peer.transport,
                    })
                }
                // Browser transports: nothing here dials out over WebSocket (validation
                // refuses them for upstreams).
                Transport::Ws | Transport::Wss => Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "WS/WSS are for browser phones, not upstreams",
                )),
            }
        };
        match tokio::time::timeout(timeout, connect).await {
            Ok(Ok(f)) => Ok(f),
            Ok(Err(e)) => Err(FlowError::Connect(format!("{remote}: {e}"))),
            Err(_) => Err(FlowError::Connect(format!("{remote}: timed out"))),
        }
    }

    /// Our address on this flow (for Via).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The upstream's address.
    pub fn remote_addr(&self) -> SocketAddr {
        self.remote
    }

    /// Whether requests must be retransmitted (UDP).
    pub fn unreliable(&self) -> bool {
        matches!(self.kind, Kind::Udp(_))
    }

    /// The transport.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// The stream of a TCP/TLS flow and the bytes already read from it (None for UDP), for
    /// a reader of its own (the proxy's connections to trunks).
    pub fn into_stream(self) -> Option<(Box<dyn Io>, BytesMut)> {
        match self.kind {
            Kind::Udp(_) => None,
            Kind::Stream { io, buf } => Some((io, buf)),
        }
    }

    /// Sends one message. On UDP, an ICMP error reported on send is ignored: a lost
    /// datagram is the retransmission timer's business, and a dead peer ends in a timeout.
    pub async fn send(&mut self, data: &[u8]) -> io::Result<()> {
        match &mut self.kind {
            Kind::Udp(s) => match s.send(data).await {
                Ok(_) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Ok(()),
                Err(e) => Err(e),
            },
            Kind::Stream { io, .. } => {
                io.write_all(data).await?;
                io.flush().await
            }
        }
    }

    /// Receives the next message (cancel-safe). A closed stream is an `UnexpectedEof` error.
    pub async fn recv(&mut self) -> io::Result<String> {
        match &mut self.kind {
            Kind::Udp(s) => {
                let mut buf = vec![0u8; 65536];
                loop {
                    match s.recv(&mut buf).await {
                        Ok(n) => return Ok(String::from_utf8_lossy(&buf[..n]).into_owned()),
                        // ICMP port unreachable from an earlier send: keep waiting.
                        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
                        Err(e) => return Err(e),
                    }
                }
            }
            Kind::Stream { io, buf } => loop {
                match next_frame(buf, MAX_MESSAGE_SIZE) {
                    Frame::Message { len } => {
                        let msg = buf.split_to(len);
                        return Ok(String::from_utf8_lossy(&msg).into_owned());
                    }
                    // CRLF keepalives are dropped: RFC 5626 §3.5.1 asks only the server side
                    // to answer a ping.
                    Frame::KeepAlive { consumed, .. } => {
                        buf.advance(consumed);
                        continue;
                    }
                    Frame::Error(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
                    Frame::Incomplete => {}
                }
                if io.read_buf(buf).await? == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed",
                    ));
                }
            },
        }
    }
}
