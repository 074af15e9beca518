//! Where phones reach the registrar: the addresses of the registrar's Services (the chart
//! labels them `app.kubernetes.io/component: registrar`), by transport.

use k8s_openapi::api::core::v1::Service;
use kube::api::ListParams;
use kube::{Api, Client};

/// The label the chart puts on the registrar's Service.
pub const SELECTOR: &str = "app.kubernetes.io/component=registrar";

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

/// The endpoints of one Service: its load balancer's addresses, else its external IPs, else
/// its node ports, else its cluster IP (inside the cluster only).
pub fn endpoints(svc: &Service) -> Vec<Endpoint> {
    let Some(spec) = &svc.spec else {
        return Vec::new();
    };
    let ingress: Vec<String> = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.clone().or_else(|| i.hostname.clone()))
        .collect();
    let external = spec.external_ips.clone().unwrap_or_default();
    let mut out = Vec::new();
    for port in spec.ports.iter().flatten() {
        let Some(transport) = port.name.as_deref().and_then(|n| n.strip_prefix("sip-")) else {
            continue;
        };
        let transport = transport.to_ascii_uppercase();
        let hosts = if !ingress.is_empty() {
            &ingress
        } else {
            &external
        };
        let found: Vec<(String, Option<&'static str>)> = if !hosts.is_empty() {
            hosts
                .iter()
                .map(|h| (format!("{h}:{}", port.port), None))
                .collect()
        } else if let Some(node_port) = port.node_port {
            vec![(format!("<node address>:{node_port}"), Some("node port"))]
        } else {
            let ip = spec.cluster_ip.clone().unwrap_or_default();
            vec![(
                format!("{ip}:{}", port.port),
                Some("inside the cluster only"),
            )]
        };
        out.extend(found.into_iter().map(|(address, note)| Endpoint {
            transport: transport.clone(),
            address,
            note,
        }));
    }
    out
}

/// The endpoints of every registrar Service in `namespace` (or every namespace).
pub async fn find(client: Client, namespace: Option<&str>) -> anyhow::Result<Vec<Endpoint>> {
    let api: Api<Service> = match namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    let services = api.list(&ListParams::default().labels(SELECTOR)).await?;
    Ok(services.items.iter().flat_map(endpoints).collect())
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
        let e = &endpoints(&cluster)[0];
        assert_eq!(
            (e.address.as_str(), e.note),
            ("10.96.0.20:5060", Some("inside the cluster only"))
        );
    }
}
