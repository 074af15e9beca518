//! Command-line options.

use crate::profile::{Ports, SipServer};
use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;
use switchboard_crds::common::Transport;
use switchboard_registrar::cli::LimiterArgs;

/// Switchboard provisioning service: desk phones fetch their files by MAC over HTTPS.
///
/// Where devices come from: `--manifests FILE` (standalone: Sites, SipDevices and Secrets in
/// one YAML file, read on every fetch); `--kube`, or `KUBERNETES_SERVICE_HOST` set (in a pod):
/// the cluster; otherwise the embedded demo (examples/registrar/provisioning.yaml), beside the
/// registrar's embedded demo config.
#[derive(Parser, Debug, Clone)]
#[command(name = "switchboard-provisioning", version, about)]
pub struct Cli {
    /// HTTPS listen address.
    #[arg(long, default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// Plain-HTTP address of `/metrics`, `/healthz` and `/readyz`.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub http: SocketAddr,
    /// Manifest file (standalone): Sites, SipDevices and the Secrets they name.
    #[arg(long, conflicts_with = "kube")]
    pub manifests: Option<PathBuf>,
    /// Read devices, sites and Secrets from the cluster and record fetches in the devices'
    /// status.
    #[arg(long)]
    pub kube: bool,
    /// TLS certificate chain (PEM). Without it a self-signed certificate is made at start
    /// (for a demo; phones must then skip verification or trust it).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Names (DNS or IP) of the self-signed certificate.
    #[arg(long, value_delimiter = ',', default_value = "localhost,127.0.0.1")]
    pub self_signed_names: Vec<String>,
    /// Where to write the self-signed certificate (PEM), for clients to trust.
    #[arg(long)]
    pub self_signed_cert_out: Option<PathBuf>,
    /// Host name or address phones register to. Default: the host the phone fetched its file
    /// from (right when the registrar runs beside this service, as in the demo).
    #[arg(long, env = "SWITCHBOARD_SIP_SERVER")]
    pub sip_server: Option<String>,
    /// Preferred transport; a site that does not allow it gets the first one it allows.
    #[arg(long, default_value = "UDP", value_parser = parse_transport)]
    pub sip_transport: Transport,
    /// The registrar's UDP port.
    #[arg(long, default_value_t = 5060)]
    pub sip_udp_port: u16,
    /// The registrar's TCP port.
    #[arg(long, default_value_t = 5060)]
    pub sip_tcp_port: u16,
    /// The registrar's TLS port.
    #[arg(long, default_value_t = 5061)]
    pub sip_tls_port: u16,
    /// Outbound proxy phones send everything through, `host[:port]`.
    #[arg(long)]
    pub outbound_proxy: Option<String>,
    /// The failed-login limiter (the registrar's flags and limiter).
    #[command(flatten)]
    pub limiter: LimiterArgs,
    /// This replica's name, for Events.
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,
}

fn parse_transport(s: &str) -> Result<Transport, String> {
    Transport::from_sip_param(s)
        .filter(|t| !t.is_websocket())
        .ok_or_else(|| format!("{s}: expected UDP, TCP or TLS"))
}

impl Cli {
    /// The registrar as phones reach it (an empty host: the host the phone fetched from).
    pub fn sip_server(&self) -> SipServer {
        SipServer {
            host: self.sip_server.clone().unwrap_or_default(),
            transport: self.sip_transport,
            ports: Ports {
                udp: self.sip_udp_port,
                tcp: self.sip_tcp_port,
                tls: self.sip_tls_port,
            },
            outbound_proxy: self.outbound_proxy.clone(),
        }
    }
}
