//! The Kubernetes config source: watches the operator's shard Secrets and hands every new
//! complete config to the registrar.
//!
//! The operator publishes the config as Secrets `switchboard-registrar-config-<n>` in its
//! namespace (see [`switchboard_crds::shards`]). The registrar may read those Secrets and no
//! other (its Role names them: RBAC grants by name, never by label), so this source runs one
//! watcher per possible shard name, `0..MAX_SHARDS`, each selecting its Secret with a
//! `metadata.name` field selector ([`kube::runtime::watcher`]), merged into one stream. It keeps
//! the latest copy of each, and whenever they form a complete set with one hash that it has
//! not handed over yet, joins and checks them and calls `on_config`. While a publication is
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
use kube::{Api, Client};
use std::collections::BTreeMap;
use switchboard_crds::config::RegistrarConfig;
use switchboard_crds::shards::{self, JoinError};

/// The shard Secrets seen so far, by watched name, and the hash last handed over. Pure: no
/// I/O.
#[derive(Debug, Default)]
pub struct Assembler {
    secrets: BTreeMap<String, Secret>,
    /// Per watched name, what its (re)list in progress has delivered so far.
    relists: BTreeMap<String, Option<Secret>>,
    handed_over: Option<String>,
}

impl Assembler {
    /// An assembler that has handed nothing over.
    pub fn new() -> Self {
        Assembler::default()
    }

    /// Applies one event of the watcher of Secret `name`; returns a config when a complete set
    /// with a new hash appears. A (re)list replaces only that name's Secret.
    pub fn apply(&mut self, name: &str, event: Event<Secret>) -> Option<RegistrarConfig> {
        match event {
            Event::Init => {
                self.relists.insert(name.to_string(), None);
                return None;
            }
            Event::InitApply(s) => {
                self.relists.insert(name.to_string(), Some(s));
                return None;
            }
            Event::InitDone => match self.relists.remove(name).flatten() {
                Some(s) => {
                    self.secrets.insert(name.to_string(), s);
                }
                None => {
                    self.secrets.remove(name);
                }
            },
            Event::Apply(s) => {
                self.secrets.insert(name.to_string(), s);
            }
            Event::Delete(_) => {
                self.secrets.remove(name);
            }
        }
        self.assemble()
    }

    fn assemble(&mut self) -> Option<RegistrarConfig> {
        // The set in hand is checked by its annotations first: joining and parsing a config of
        // tens of MiB again for every event of every watcher would cost seconds.
        if let Ok(Some(hash)) = shards::complete_hash(self.secrets.values()) {
            if self.handed_over.as_deref() == Some(hash.as_str()) {
                return None;
            }
        }
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

/// Feeds watch events, each with the name of the Secret its watcher selects, through an
/// [`Assembler`], calling `on_config` for every new config, until the stream ends. Watch
/// errors are logged (the watcher retries with backoff).
pub async fn run_stream<S>(events: S, mut on_config: impl FnMut(RegistrarConfig))
where
    S: Stream<Item = (String, Result<Event<Secret>, watcher::Error>)>,
{
    let mut assembler = Assembler::new();
    let mut events = std::pin::pin!(events);
    while let Some((name, event)) = events.next().await {
        match event {
            Ok(event) => {
                if let Some(config) = assembler.apply(&name, event) {
                    tracing::info!(hash = %config.short_hash(), "registrar config received from Kubernetes");
                    on_config(config);
                }
            }
            Err(e) => {
                tracing::warn!(secret = %name, error = %e, "watching a registrar config Secret")
            }
        }
    }
}

/// Watches the shard Secrets in `namespace`, each by name, and calls `on_config` for every new
/// complete config. Runs until the task is dropped.
pub async fn run(client: Client, namespace: String, on_config: impl FnMut(RegistrarConfig)) {
    let api: Api<Secret> = Api::namespaced(client, &namespace);
    let watchers = shards::secret_names().map(|name| {
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        watcher::watcher(api.clone(), config)
            .default_backoff()
            .map(move |event| (name.clone(), event))
            .boxed()
    });
    run_stream(futures::stream::select_all(watchers), on_config).await;
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

    fn name(s: &Secret) -> String {
        s.metadata.name.clone().unwrap()
    }

    /// The initial list of every shard name's watcher: Init, the Secret of that name if
    /// published, InitDone.
    fn initial_lists(published: &[Secret]) -> Vec<(String, Event<Secret>)> {
        let mut out = Vec::new();
        for n in shards::secret_names() {
            out.push((n.clone(), Event::Init));
            if let Some(s) = published.iter().find(|s| name(s) == n) {
                out.push((n.clone(), Event::InitApply(s.clone())));
            }
            out.push((n, Event::InitDone));
        }
        out
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
        let mut handed = Vec::new();
        for (n, e) in initial_lists(&s1) {
            handed.extend(a.apply(&n, e).map(|c| c.hash));
        }
        assert_eq!(handed, vec![v1.hash], "once, when the set is complete");
        // Half of v2 written: nothing.
        assert!(a
            .apply(&name(&s2[0]), Event::Apply(s2[0].clone()))
            .is_none());
        let mut got = None;
        for s in &s2[1..] {
            got = got.or(a.apply(&name(s), Event::Apply(s.clone())));
        }
        assert_eq!(got.unwrap().hash, v2.hash);
        // A re-delivery of the same set hands nothing over again.
        assert!(a
            .apply(&name(&s2[0]), Event::Apply(s2[0].clone()))
            .is_none());
    }

    #[test]
    fn a_relist_replaces_only_its_own_secret() {
        let v2 = config(vec![
            device("k3x9q2-lobby", "pw1"),
            device("ab12cd-desk", "pw2"),
        ]);
        let s2 = secrets(&v2, 300);
        let mut a = Assembler::new();
        for (n, e) in initial_lists(&s2) {
            a.apply(&n, e);
        }
        // Another name's watcher relists (its Secret does not exist): the set stays whole.
        let unused = shards::secret_name(s2.len());
        assert!(a.apply(&unused, Event::Init).is_none());
        assert!(a.apply(&unused, Event::InitDone).is_none());
        assert_eq!(
            shards::complete_hash(a.secrets.values()),
            Ok(Some(v2.hash.clone()))
        );
        // Shard 0's watcher relists and finds it gone: incomplete, nothing handed over; back
        // with the same hash: still nothing new.
        let first = name(&s2[0]);
        a.apply(&first, Event::Init);
        assert!(a.apply(&first, Event::InitDone).is_none());
        assert_eq!(shards::complete_hash(a.secrets.values()), Ok(None));
        assert!(a.apply(&first, Event::Apply(s2[0].clone())).is_none());
        assert_eq!(
            shards::complete_hash(a.secrets.values()),
            Ok(Some(v2.hash.clone()))
        );
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
        let mut events: Vec<(String, Result<Event<Secret>, watcher::Error>)> =
            initial_lists(&secrets(&v1, 400))
                .into_iter()
                .map(|(n, e)| (n, Ok(e)))
                .collect();
        events.extend(
            secrets(&v2, 400)
                .into_iter()
                .map(|s| (name(&s), Ok(Event::Apply(s)))),
        );

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
