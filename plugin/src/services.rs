//! Where phones reach Switchboard: the addresses of the registrar's Services (the chart labels
//! them `app.kubernetes.io/component: registrar`), by transport, and the provisioning service's
//! URL (`app.kubernetes.io/component: provisioning`).

use k8s_openapi::api::core::v1::{Service, ServicePort};
use kube::api::ListParams;
use kube::{Api, Client};

/// The label the chart puts on the registrar's Service.
pub const REGISTRAR: &str = "app.kubernetes.io/component=registrar";
/// The label the chart puts on the provisioning service's Service.
pub const PROVISIONING: &str = "app.kubernetes.io/component=provisioning";

/// One way in: `UDP 192.0.2.10:5060`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// `UDP`, `TCP`, `TLS`, `WS`, `WSS` (from the port's name, `sip-udp`, …).
    pub transport: String,
    /// `host:port` as phones dial it.
    pub address: String,
    /// What the address is, when phones outside the cluster cannot use it as it stands.
    pub note: Option<&'static str>,
}

/// The endpoints of one Service's `sip-*` ports (`sip-udp` is UDP, …).
pub fn endpoints(svc: &Service) -> Vec<Endpoint> {
    let ports = svc.spec.as_ref().and_then(|s| s.ports.as_ref());
    let mut out = Vec::new();
    for port in ports.into_iter().flatten() {
        let Some(transport) = port.name.as_deref().and_then(|n| n.strip_prefix("sip-")) else {
            continue;
        };
        out.extend(
            addresses(svc, port)
                .into_iter()
                .map(|(address, note)| Endpoint {
                    transport: transport.to_ascii_uppercase(),
                    address,
                    note,
                }),
        );
    }
    out
}

/// The provisioning base URLs of one Service (its `https` port).
pub fn provisioning_urls(svc: &Service) -> Vec<String> {
    let ports = svc.spec.as_ref().and_then(|s| s.ports.as_ref());
    ports
        .into_iter()
        .flatten()
        .filter(|p| p.name.as_deref() == Some("https"))
        .flat_map(|p| addresses(svc, p))
        .map(|(address, note)| match note {
            Some(n) => format!("https://{address}/provisioning/ ({n})"),
            None => format!("https://{address}/provisioning/"),
        })
        .collect()
}

/// How `port` of `svc` is reached: its load balancer's addresses, else its external IPs, else
/// its node port, else its cluster IP (inside the cluster only).
fn addresses(svc: &Service, port: &ServicePort) -> Vec<(String, Option<&'static str>)> {
    let ingress: Vec<String> = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.clone().or_else(|| i.hostname.clone()))
        .collect();
    let spec = svc.spec.as_ref();
    let external = spec
        .and_then(|s| s.external_ips.clone())
        .unwrap_or_default();
    let hosts = if ingress.is_empty() {
        external
    } else {
        ingress
    };
    if !hosts.is_empty() {
        hosts
            .iter()
            .map(|h| (format!("{h}:{}", port.port), None))
            .collect()
    } else if let Some(node_port) = port.node_port {
        vec![(format!("<node address>:{node_port}"), Some("node port"))]
    } else {
        let ip = spec.and_then(|s| s.cluster_ip.clone()).unwrap_or_default();
        vec![(
            format!("{ip}:{}", port.port),
            Some("inside the cluster only"),
        )]
    }
}

/// The Services labelled `selector` in `namespace` (or every namespace).
pub async fn find(
    client: Client,
    namespace: Option<&str>,
    selector: &str,
) -> anyhow::Result<Vec<Service>> {
    let api: Api<Service> = match namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    Ok(api
        .list(&ListParams::default().labels(selector))
        .await?
        .items)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The chart's registrar Service with `ports`, its status `status`.
    fn service(ports: serde_json::Value, status: serde_json::Value) -> Service {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "sb-switchboard-registrar"},
            "spec": {"clusterIP": "10.96.0.20", "ports": ports},
            "status": status
        }))
        .unwrap()
    }

    fn chart_ports() -> serde_json::Value {
        serde_json::json!([
            {"name": "sip-udp", "port": 5060, "protocol": "UDP"},
            {"name": "sip-tls", "port": 5061, "protocol": "TCP"},
            {"name": "metrics", "port": 9090}
        ])
    }

    #[test]
    fn a_load_balancer_address_comes_first() {
        let lb = service(
            chart_ports(),
            serde_json::json!({"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}]}}),
        );
        let got: Vec<_> = endpoints(&lb)
            .into_iter()
            .map(|e| (e.transport, e.address, e.note))
            .collect();
        assert_eq!(
            got,
            [
                ("UDP".to_string(), "192.0.2.10:5060".to_string(), None),
                ("TLS".to_string(), "192.0.2.10:5061".to_string(), None)
            ]
        );
    }

    #[test]
    fn without_one_node_ports_then_the_cluster_ip() {
        let np = service(
            serde_json::json!([{"name": "sip-tcp", "port": 5060, "nodePort": 30060}]),
            serde_json::json!({}),
        );
        assert_eq!(endpoints(&np)[0].address, "<node address>:30060");
        let cluster = service(chart_ports(), serde_json::json!({}));
        assert!(provisioning_urls(&cluster).is_empty());
        let e = &endpoints(&cluster)[0];
        assert_eq!(
            (e.address.as_str(), e.note),
            ("10.96.0.20:5060", Some("inside the cluster only"))
        );
    }

    #[test]
    fn the_provisioning_url_is_its_https_port() {
        let svc = service(
            serde_json::json!([{"name": "https", "port": 8443}]),
            serde_json::json!({"loadBalancer": {"ingress": [{"hostname": "prov.example.com"}]}}),
        );
        assert_eq!(
            provisioning_urls(&svc),
            ["https://prov.example.com:8443/provisioning/"]
        );
        assert!(endpoints(&svc).is_empty());
    }
}
