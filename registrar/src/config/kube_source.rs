//! The Kubernetes config source: watches the operator's shard Secrets and hands every new
//! complete config to the registrar.
//!
//! The operator publishes the config as Secrets `switchboard-registrar-config-<n>` labelled
//! `sip.switchboard.dev/registrar-config: "true"` in its namespace (see
//! [`switchboard_crds::shards`]). This source watches them ([`kube::runtime::watcher`]),
//! keeps the latest copy of each, and whenever they form a complete set with one hash that it
//! has not handed over yet, joins and checks them and calls `on_config`. While a publication is
//! half written (mixed hashes, a missing shard) it waits; the config in force stays.
//!
//! Wiring, in the registrar's runtime:
//!
//! ```ignore
//! let handle: Arc<ConfigHandle> = ...;
//! tokio::spawn(kube_source::run(client, namespace, move |c| { handle.replace(c); }));
//! ```

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client, ResourceExt};
use std::collections::BTreeMap;
use switchboard_crds::config::RegistrarConfig;
use switchboard_crds::shards::{self, JoinError, CONFIG_LABEL};

/// The shard Secrets seen so far, and the hash last handed over. Pure: no I/O.
#[derive(Debug, Default)]
pub struct Assembler {
    secrets: BTreeMap<String, Secret>,
    relist: Option<BTreeMap<String, Secret>>,
    handed_over: Option<String>,
}

impl Assembler {
    /// An assembler that has handed nothing over.
    pub fn new() -> Self {
        Assembler::default()
    }

    /// Applies one watch event; returns a config when a complete set with a new hash appears.
    pub fn apply(&mut self, event: Event<Secret>) -> Option<RegistrarConfig> {
        match event {
            Event::Init => {
                self.relist = Some(BTreeMap::new());
                return None;
            }
            Event::InitApply(s) => {
                self.relist
                    .get_or_insert_with(BTreeMap::new)
                    .insert(s.name_any(), s);
                return None;
            }
            Event::InitDone => {
                self.secrets = self.relist.take().unwrap_or_default();
            }
            Event::Apply(s) => {
                self.secrets.insert(s.name_any(), s);
            }
            Event::Delete(s) => {
                self.secrets.remove(&s.name_any());
            }
        }
        self.assemble()
    }

    fn assemble(&mut self) -> Option<RegistrarConfig> {
        match shards::assemble(self.secrets.values()) {
            Ok(config) if self.handed_over.as_deref() != Some(config.hash.as_str()) => {
                self.handed_over = Some(config.hash.clone());
                Some(config)
            }
            Ok(_) => None,
            Err(JoinError::Empty) => None,
            Err(e @ JoinError::Incomplete(_)) => {
                tracing::debug!(reason = %e, "registrar config publication in progress");
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "registrar config shards refused; keeping the config in force");
                None
            }
        }
    }
}

/// Feeds watch events through an [`Assembler`], calling `on_config` for every new config, until
/// the stream ends. Watch errors are logged (the watcher retries with backoff).
pub async fn run_stream<S>(events: S, mut on_config: impl FnMut(RegistrarConfig))
where
    S: Stream<Item = Result<Event<Secret>, watcher::Error>>,
{
    let mut assembler = Assembler::new();
    let mut events = std::pin::pin!(events);
    while let Some(event) = events.next().await {
        match event {
            Ok(event) => {
                if let Some(config) = assembler.apply(event) {
                    tracing::info!(hash = %config.short_hash(), "registrar config received from Kubernetes");
                    on_config(config);
                }
            }
            Err(e) => tracing::warn!(error = %e, "watching registrar config Secrets"),
        }
    }
}

/// Watches the labelled shard Secrets in `namespace` and calls `on_config` for every new
/// complete config. Runs until the task is dropped.
pub async fn run(client: Client, namespace: String, on_config: impl FnMut(RegistrarConfig)) {
    let api: Api<Secret> = Api::namespaced(client, &namespace);
    let config = watcher::Config::default().labels(&format!("{CONFIG_LABEL}=true"));
    let events = watcher::watcher(api, config).default_backoff();
    run_stream(events, on_config).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::digest::{expected_response, Algorithm};
    use crate::config::ConfigHandle;
    use crate::location::MemoryStore;
    use crate::metrics::Metrics;
    use crate::service::{Service, ServiceSettings};
    use std::sync::{Arc, Mutex};
    use switchboard_crds::common::Transport;
    use switchboard_crds::config::{ha1, DeviceConfig, DomainConfig};

    const DOMAIN: &str = "hq.acme.test";

    fn device(user: &str, password: &str) -> DeviceConfig {
        let (ha1_md5, ha1_sha256) = ha1(user, DOMAIN, password);
        DeviceConfig {
            id: format!("acme/{user}"),
            sip_user: user.into(),
            ha1_md5,
            ha1_sha256,
            ..Default::default()
        }
    }

    fn config(devices: Vec<DeviceConfig>) -> RegistrarConfig {
        let mut c = RegistrarConfig {
            nonce_key: Some("00112233445566778899aabbccddeeff".into()),
            domains: vec![DomainConfig {
                domain: DOMAIN.into(),
                site: "acme/hq".into(),
                extensions: "1000-1999".into(),
                devices,
                ..Default::default()
            }],
            ..Default::default()
        };
        c.canonicalize();
        c.seal()
    }

    fn secrets(c: &RegistrarConfig, max: usize) -> Vec<Secret> {
        shards::split(c, max)
            .iter()
            .map(|s| shards::to_secret(s, "switchboard"))
            .collect()
    }

    #[test]
    fn assembler_waits_for_a_complete_set_and_hands_each_hash_over_once() {
        let v1 = config(vec![device("k3x9q2-lobby", "pw1")]);
        let v2 = config(vec![
            device("k3x9q2-lobby", "pw1"),
            device("ab12cd-desk", "pw2"),
        ]);
        let (s1, s2) = (secrets(&v1, 300), secrets(&v2, 300));
        assert!(s2.len() > 1);
        let mut a = Assembler::new();
        assert!(a.apply(Event::Init).is_none());
        for s in &s1 {
            assert!(a.apply(Event::InitApply(s.clone())).is_none());
        }
        assert_eq!(a.apply(Event::InitDone).unwrap().hash, v1.hash);
        // Half of v2 written: nothing.
        assert!(a.apply(Event::Apply(s2[0].clone())).is_none());
        let mut got = None;
        for s in &s2[1..] {
            got = got.or(a.apply(Event::Apply(s.clone())));
        }
        assert_eq!(got.unwrap().hash, v2.hash);
        // A re-delivery of the same set hands nothing over again.
        assert!(a.apply(Event::Apply(s2[0].clone())).is_none());
    }

    fn register(user: &str, cseq: u32, extra: &str) -> String {
        format!(
            "REGISTER sip:{DOMAIN} SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bK-ks{cseq};rport\r\n\
             From: <sip:{user}@{DOMAIN}>;tag=t1\r\n\
             To: <sip:{user}@{DOMAIN}>\r\n\
             Call-ID: ks-{user}\r\n\
             CSeq: {cseq} REGISTER\r\n\
             Contact: <sip:{user}@127.0.0.1:40000>\r\n\
             {extra}Content-Length: 0\r\n\r\n"
        )
    }

    async fn send(s: &Service, msg: &str) -> String {
        let out = s
            .handle(
                msg.as_bytes(),
                "127.0.0.1:40000".parse().unwrap(),
                Transport::Udp,
            )
            .await
            .expect("a response");
        String::from_utf8(out.data.to_vec()).unwrap()
    }

    fn authorization(user: &str, password: &str, response: &str) -> String {
        let challenge = response
            .lines()
            .find(|l| l.starts_with("WWW-Authenticate:") && l.contains("MD5"))
            .expect("an MD5 challenge");
        let nonce = challenge
            .split("nonce=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let (md5, _) = ha1(user, DOMAIN, password);
        let uri = format!("sip:{DOMAIN}");
        let resp = expected_response(
            Algorithm::Md5,
            &md5,
            "REGISTER",
            &uri,
            nonce,
            Some("00000001"),
            Some("abc"),
            Some("auth"),
        );
        format!(
            "Authorization: Digest username=\"{user}\", realm=\"{DOMAIN}\", nonce=\"{nonce}\", \
             uri=\"{uri}\", response=\"{resp}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"abc\"\r\n"
        )
    }

    /// Secret changes arrive as a watch stream; a device added in a later publication can
    /// register as soon as its shards are complete.
    #[tokio::test]
    async fn device_added_through_secret_changes_can_register() {
        let v1 = config(vec![device("k3x9q2-lobby", "pw1")]);
        let v2 = config(vec![
            device("k3x9q2-lobby", "pw1"),
            device("ab12cd-desk", "pw2"),
        ]);
        let mut events: Vec<Result<Event<Secret>, watcher::Error>> = vec![Ok(Event::Init)];
        events.extend(
            secrets(&v1, 400)
                .into_iter()
                .map(|s| Ok(Event::InitApply(s))),
        );
        events.push(Ok(Event::InitDone));
        events.extend(secrets(&v2, 400).into_iter().map(|s| Ok(Event::Apply(s))));

        let handle = Arc::new(ConfigHandle::new());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (h, log) = (handle.clone(), seen.clone());
        run_stream(futures::stream::iter(events), move |c| {
            log.lock().unwrap().push(c.hash.clone());
            h.replace(c);
        })
        .await;
        assert_eq!(
            *seen.lock().unwrap(),
            vec![v1.hash.clone(), v2.hash.clone()]
        );

        let service = Service::new(
            ServiceSettings::default(),
            handle,
            Arc::new(MemoryStore::new()),
            Arc::new(Metrics::new()),
        );
        let challenge = send(&service, &register("ab12cd-desk", 1, "")).await;
        assert!(challenge.starts_with("SIP/2.0 401 "), "{challenge}");
        let auth = authorization("ab12cd-desk", "pw2", &challenge);
        let ok = send(&service, &register("ab12cd-desk", 2, &auth)).await;
        assert!(ok.starts_with("SIP/2.0 200 OK"), "{ok}");
    }
}
