//! Membership in a cluster: the ready endpoints of the registrar Service's EndpointSlices.
//! Each endpoint's pod name is the replica's name (the registrar's `--replica`, `$POD_NAME`)
//! and its address with the Service's SIP UDP port is where the replica is probed and where
//! calls to its phones go.

use super::Cluster;
use futures::StreamExt;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher;
use kube::{Api, Client};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use tokio::sync::watch;

/// The members named by `slices`: endpoints not marked unready, backed by a pod, with the UDP
/// port named `sip-udp` (else the first UDP port, else `default_port`).
pub fn members_from_slices<'a>(
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
    default_port: u16,
) -> Vec<(String, SocketAddr)> {
    let mut out = BTreeMap::new();
    for slice in slices {
        let ports = slice.ports.as_deref().unwrap_or_default();
        let udp = |p: &&k8s_openapi::api::discovery::v1::EndpointPort| {
            p.protocol.as_deref() == Some("UDP")
        };
        let port = ports
            .iter()
            .filter(udp)
            .find(|p| p.name.as_deref() == Some("sip-udp"))
            .or_else(|| ports.iter().find(udp))
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or(default_port);
        for ep in slice.endpoints.iter().flatten() {
            let ready = ep.conditions.as_ref().and_then(|c| c.ready) != Some(false);
            let pod = ep
                .target_ref
                .as_ref()
                .filter(|r| r.kind.as_deref() == Some("Pod"))
                .and_then(|r| r.name.clone());
            let ip = ep.addresses.first().and_then(|a| a.parse::<IpAddr>().ok());
            if let (true, Some(pod), Some(ip)) = (ready, pod, ip) {
                out.insert(pod, SocketAddr::new(ip, port));
            }
        }
    }
    out.into_iter().collect()
}

/// The Service's slices as the watch has delivered them: each event gives the new member list,
/// except during the initial listing (the list is complete only at its end).
#[derive(Default)]
pub struct Slices {
    current: BTreeMap<String, EndpointSlice>,
    listing: Option<BTreeMap<String, EndpointSlice>>,
}

impl Slices {
    /// Applies a watch event; the members when they may have changed.
    pub fn apply(
        &mut self,
        event: watcher::Event<EndpointSlice>,
        default_port: u16,
    ) -> Option<Vec<(String, SocketAddr)>> {
        let name = |s: &EndpointSlice| s.metadata.name.clone().unwrap_or_default();
        match event {
            watcher::Event::Init => {
                self.listing = Some(BTreeMap::new());
                return None;
            }
            watcher::Event::InitApply(s) => {
                self.listing
                    .get_or_insert_with(BTreeMap::new)
                    .insert(name(&s), s);
                return None;
            }
            watcher::Event::InitDone => self.current = self.listing.take().unwrap_or_default(),
            watcher::Event::Apply(s) => {
                self.current.insert(name(&s), s);
            }
            watcher::Event::Delete(s) => {
                self.current.remove(&name(&s));
            }
        }
        Some(members_from_slices(self.current.values(), default_port))
    }
}

/// Follows the EndpointSlices of `service` in `namespace` into the cluster's members until
/// `shutdown`. Watch errors are logged and retried by the watcher's backoff; the members stay
/// as last known meanwhile.
pub async fn run(
    client: Client,
    namespace: String,
    service: String,
    default_port: u16,
    cluster: Cluster,
    mut shutdown: watch::Receiver<bool>,
) {
    use kube::runtime::WatchStreamExt;
    let api: Api<EndpointSlice> = Api::namespaced(client, &namespace);
    let config =
        watcher::Config::default().labels(&format!("kubernetes.io/service-name={service}"));
    let mut stream = watcher(api, config).default_backoff().boxed();
    let mut slices = Slices::default();
    loop {
        let event = tokio::select! {
            _ = crate::transport::shutdown_requested(&mut shutdown) => return,
            e = stream.next() => e,
        };
        match event {
            None => return,
            Some(Err(e)) => {
                tracing::warn!(error = %e, %service, "watching the registrar's EndpointSlices");
            }
            Some(Ok(event)) => {
                if let Some(members) = slices.apply(event, default_port) {
                    cluster.set_members(&members);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_pods_with_the_sip_udp_port() {
        let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "registrar-abc"},
            "addressType": "IPv4",
            "ports": [
                {"name": "sip-tcp", "port": 5060, "protocol": "TCP"},
                {"name": "sip-udp", "port": 5070, "protocol": "UDP"}
            ],
            "endpoints": [
                {"addresses": ["10.0.0.1"], "conditions": {"ready": true},
                 "targetRef": {"kind": "Pod", "name": "registrar-0"}},
                {"addresses": ["10.0.0.2"], "conditions": {"ready": false},
                 "targetRef": {"kind": "Pod", "name": "registrar-1"}},
                {"addresses": ["10.0.0.3"],
                 "targetRef": {"kind": "Pod", "name": "registrar-2"}},
                {"addresses": ["10.0.0.4"], "conditions": {"ready": true}}
            ]
        }))
        .unwrap();
        assert_eq!(
            members_from_slices([&slice], 5060),
            vec![
                ("registrar-0".to_string(), "10.0.0.1:5070".parse().unwrap()),
                ("registrar-2".to_string(), "10.0.0.3:5070".parse().unwrap()),
            ]
        );
        let no_udp: EndpointSlice = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "x"}, "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.0.0.9"], "targetRef": {"kind": "Pod", "name": "p"}}]
        }))
        .unwrap();
        assert_eq!(
            members_from_slices([&no_udp], 5060),
            vec![("p".to_string(), "10.0.0.9:5060".parse().unwrap())]
        );
    }

    fn slice(name: &str, endpoints: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name}, "addressType": "IPv4",
            "ports": [{"name": "sip-udp", "port": 5060, "protocol": "UDP"}],
            "endpoints": endpoints
        }))
        .unwrap()
    }

    fn pod(name: &str, ip: &str, ready: bool) -> serde_json::Value {
        serde_json::json!({"addresses": [ip], "conditions": {"ready": ready},
            "targetRef": {"kind": "Pod", "name": name}})
    }

    #[test]
    fn members_follow_the_watch() {
        use watcher::Event;
        let names = |m: Option<Vec<(String, SocketAddr)>>| {
            m.map(|m| m.into_iter().map(|(n, _)| n).collect::<Vec<_>>())
        };
        let mut s = Slices::default();
        let a = slice("a", serde_json::json!([pod("r0", "10.0.0.1", true)]));
        let b = slice("b", serde_json::json!([pod("r1", "10.0.0.2", true)]));
        // The initial listing counts once complete.
        assert_eq!(s.apply(Event::Init, 5060), None);
        assert_eq!(s.apply(Event::InitApply(a.clone()), 5060), None);
        assert_eq!(s.apply(Event::InitApply(b.clone()), 5060), None);
        assert_eq!(
            names(s.apply(Event::InitDone, 5060)),
            Some(vec!["r0".into(), "r1".into()])
        );
        // A pod turning unready leaves; a deleted slice takes its pods along.
        let a2 = slice("a", serde_json::json!([pod("r0", "10.0.0.1", false)]));
        assert_eq!(
            names(s.apply(Event::Apply(a2), 5060)),
            Some(vec!["r1".into()])
        );
        assert_eq!(names(s.apply(Event::Delete(b), 5060)), Some(vec![]));
        // A relist replaces everything known.
        s.apply(Event::Init, 5060);
        s.apply(Event::InitApply(a), 5060);
        assert_eq!(
            names(s.apply(Event::InitDone, 5060)),
            Some(vec!["r0".into()])
        );
    }
}
