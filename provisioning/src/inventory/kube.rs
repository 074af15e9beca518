//! The Kubernetes API as the source: SipDevices and Sites of every namespace kept in memory
//! by watches, Secrets read when a fetch needs them (so a rotated password is served at once,
//! and no Secret is held in memory between fetches).

use super::{secret_text, DevicesWithSites, SecretData, Source};
use crate::mac::Mac;
use futures::future::BoxFuture;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::watcher::{self, watcher, Event};
use kube::{Client, Resource, ResourceExt};
use parking_lot::RwLock;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use switchboard_crds::{SipDevice, Site};
use tokio::sync::Notify;

/// Objects of one kind by (namespace, name), once the watch's first list is complete.
struct Cache<K> {
    ready: bool,
    objects: BTreeMap<(String, String), K>,
    /// The list being received (between `Init` and `InitDone`).
    next: BTreeMap<(String, String), K>,
}

impl<K: ResourceExt> Cache<K> {
    fn new() -> Self {
        Cache {
            ready: false,
            objects: BTreeMap::new(),
            next: BTreeMap::new(),
        }
    }

    fn apply(&mut self, event: Event<K>) {
        let key = |o: &K| (o.namespace().unwrap_or_default(), o.name_any());
        match event {
            Event::Init => self.next.clear(),
            Event::InitApply(o) => {
                self.next.insert(key(&o), o);
            }
            Event::InitDone => {
                self.objects = std::mem::take(&mut self.next);
                self.ready = true;
            }
            Event::Apply(o) => {
                self.objects.insert(key(&o), o);
            }
            Event::Delete(o) => {
                self.objects.remove(&key(&o));
            }
        }
    }
}

/// The Kubernetes source.
pub struct KubeSource {
    client: Client,
    devices: Arc<RwLock<Cache<SipDevice>>>,
    sites: Arc<RwLock<Cache<Site>>>,
    /// Told of every Site event.
    sites_changed: Arc<Notify>,
}

impl KubeSource {
    /// Starts watching SipDevices and Sites of every namespace.
    pub fn start(client: Client) -> KubeSource {
        let devices = Arc::new(RwLock::new(Cache::new()));
        let sites = Arc::new(RwLock::new(Cache::new()));
        let device_api: Api<SipDevice> = Api::all(client.clone());
        let site_api: Api<Site> = Api::all(client.clone());
        let config = watcher::Config::default;
        let (devices_changed, sites_changed) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        tokio::spawn(follow(
            watcher(device_api, config()),
            devices.clone(),
            devices_changed,
        ));
        tokio::spawn(follow(
            watcher(site_api, config()),
            sites.clone(),
            sites_changed.clone(),
        ));
        KubeSource {
            client,
            devices,
            sites,
            sites_changed,
        }
    }

    /// Waits for the next Site event (or returns at once if one came since the last call).
    pub async fn site_changed(&self) {
        self.sites_changed.notified().await
    }

    /// Every Site, as last seen.
    pub fn sites(&self) -> Vec<Site> {
        self.sites.read().objects.values().cloned().collect()
    }

    /// Whether both watches have their first list.
    pub fn ready(&self) -> bool {
        self.devices.read().ready && self.sites.read().ready
    }
}

/// Feeds a watch into a cache for ever, telling `changed` of each event, pausing a second
/// after each error (the watcher then lists again).
async fn follow<K>(
    stream: impl futures::Stream<Item = Result<Event<K>, watcher::Error>> + Send,
    cache: Arc<RwLock<Cache<K>>>,
    changed: Arc<Notify>,
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let mut stream = std::pin::pin!(stream);
    while let Some(item) = stream.next().await {
        match item {
            Ok(event) => {
                cache.write().apply(event);
                changed.notify_one();
            }
            Err(e) => {
                tracing::warn!(error = %e, "watch failed; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    }
}

impl Source for KubeSource {
    fn listed(&self) -> bool {
        self.ready()
    }

    fn devices(&self, mac: &Mac) -> BoxFuture<'_, anyhow::Result<DevicesWithSites>> {
        let found = if self.ready() {
            let devices = self.devices.read();
            let sites = self.sites.read();
            // A scan: fetches are rare (a phone's boot, a check-sync), and a MAC index would
            // have to be kept in step with every device change.
            let found: Vec<_> = devices
                .objects
                .values()
                .filter(|d| Mac::parse(&d.spec.mac_address).as_ref() == Some(mac))
                .map(|d| {
                    let ns = d.namespace().unwrap_or_default();
                    let of_ns = sites.objects.range((ns.clone(), String::new())..);
                    let site_list = of_ns
                        .take_while(|((n, _), _)| *n == ns)
                        .map(|(_, s)| s.clone());
                    (d.clone(), site_list.collect())
                })
                .collect();
            Ok(found)
        } else {
            Err(anyhow::anyhow!("devices and sites are still being listed"))
        };
        Box::pin(async move { found })
    }

    fn secret<'a>(
        &'a self,
        device_ns: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<Option<SecretData>>> {
        Box::pin(async move {
            // The device's namespace, any namespace: not this process's own.
            let api: Api<Secret> = Api::namespaced(self.client.clone(), device_ns);
            let secret = api.get_opt(name).await?;
            Ok(secret.as_ref().map(secret_text))
        })
    }
}
