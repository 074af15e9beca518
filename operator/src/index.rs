//! The in-memory index: every Site, SipDevice, CallPattern and SipRegistration, the Secrets
//! they may reference, and the published config shards, kept up to date from watch events.
//!
//! No I/O here: the runtime feeds [`Change`]s in, the reconciler reads a consistent view out.
//! A kind counts as synced after its first full list; nothing is compiled before every kind is,
//! so a starting operator never publishes a config that is missing objects it has not seen yet.

mod device;
mod published;
pub mod status_digest;

pub use device::{Device, DeviceSpec, SiteOverrides, SitePlacement, OWNED_FIELDS};
pub use published::{Published, ShardInfo};

use crate::key::ObjectKey;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use switchboard_crds::common::{GENERATED_LABEL, ROTATED_FOR_ANNOTATION};
use switchboard_crds::shards::CONFIG_LABEL;
use switchboard_crds::{CallPattern, SipDevice, SipRegistration, Site};

/// What happened to objects of one kind.
#[derive(Debug, Clone)]
pub enum Op<K> {
    /// Created or modified.
    Apply(K),
    /// Deleted.
    Delete(K),
    /// A full list (after a watch (re)start): replaces everything of the kind.
    Replace(Vec<K>),
}

impl<K> Op<K> {
    /// The same operation on converted objects.
    pub fn map<R>(self, f: impl Fn(K) -> R) -> Op<R> {
        match self {
            Op::Apply(k) => Op::Apply(f(k)),
            Op::Delete(k) => Op::Delete(f(k)),
            Op::Replace(all) => Op::Replace(all.into_iter().map(f).collect()),
        }
    }
}

/// A watch event for one of the kinds the operator indexes. Devices and Secrets arrive already
/// reduced to what the index keeps ([`Device`], [`SecretEntry`]); the other kinds are few.
/// Short-lived (moved straight into the index), so the variants' size difference costs nothing
/// worth a Box.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)]
pub enum Change {
    /// A `Site`.
    Site(Op<Site>),
    /// A `SipDevice`.
    Device(Op<Device>),
    /// A `CallPattern`.
    Pattern(Op<CallPattern>),
    /// A `SipRegistration`.
    Registration(Op<SipRegistration>),
    /// A credentials `Secret` (labelled [`switchboard_crds::common::CREDENTIALS_LABEL`]): a full list
    /// replaces only these.
    Secret(Op<SecretEntry>),
    /// The full list of the credentials Secrets of one namespace (a watch limited to it, in the
    /// namespaced install mode): replaces that namespace's only.
    SecretsOf(String, Vec<SecretEntry>),
    /// A config shard `Secret` of the config namespace: a full list replaces only the shards.
    Shard(Op<SecretEntry>),
}

impl Change {
    /// A change of `SipDevice` objects, reduced.
    pub fn device(op: Op<SipDevice>) -> Change {
        Change::Device(op.map(Device::from))
    }

    /// A change of credentials Secrets, reduced.
    pub fn secret(op: Op<Secret>) -> Change {
        Change::Secret(op.map(SecretEntry::from))
    }

    /// A change of config shard Secrets.
    pub fn shard(op: Op<Secret>) -> Change {
        Change::Shard(op.map(SecretEntry::from))
    }
}

/// A Secret as the watch hands it over: whole when it carries the config label (a shard, if it
/// is in the config namespace), else reduced at once.
#[derive(Debug, Clone)]
pub enum SecretEntry {
    /// Labelled [`CONFIG_LABEL`]`: "true"`.
    Labelled(Arc<Secret>),
    /// Any other Secret, reduced.
    Other(ObjectKey, StoredSecret),
}

fn labelled(s: &Secret) -> bool {
    s.labels().get(CONFIG_LABEL).map(String::as_str) == Some("true")
}

impl From<Secret> for SecretEntry {
    fn from(s: Secret) -> Self {
        if labelled(&s) {
            SecretEntry::Labelled(Arc::new(s))
        } else {
            SecretEntry::Other(ObjectKey::of(&s), StoredSecret::from_secret(&s))
        }
    }
}

/// What the operator keeps of a Secret: whether it generated it, the rotation it was made for,
/// and its small values. Secrets of types that never hold SIP passwords (TLS, service-account
/// tokens, Helm releases, …) and values over [`StoredSecret::MAX_VALUE`] bytes are not kept, so a
/// cluster full of large Secrets does not fill the operator's memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredSecret {
    /// Carries the operator's generated-credentials label.
    pub generated: bool,
    /// The rotation annotation value it was generated for.
    pub rotated_for: Option<String>,
    /// Values by key, sorted.
    pub data: Box<[(String, Box<[u8]>)]>,
}

impl StoredSecret {
    /// Largest value kept.
    pub const MAX_VALUE: usize = 1024;

    /// Reduces a Secret.
    pub fn from_secret(s: &Secret) -> Self {
        let kept_type = matches!(
            s.type_.as_deref(),
            None | Some("Opaque") | Some("kubernetes.io/basic-auth")
        );
        let data = match (&s.data, kept_type) {
            (Some(d), true) => d
                .iter()
                .filter(|(_, v)| v.0.len() <= Self::MAX_VALUE)
                .map(|(k, v)| (k.clone(), v.0.clone().into_boxed_slice()))
                .collect(),
            _ => Box::default(),
        };
        StoredSecret {
            generated: s.labels().get(GENERATED_LABEL).map(String::as_str) == Some("true"),
            rotated_for: s.annotations().get(ROTATED_FOR_ANNOTATION).cloned(),
            data,
        }
    }

    /// A value.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.data
            .binary_search_by(|(k, _)| k.as_str().cmp(key))
            .ok()
            .map(|i| &*self.data[i].1)
    }
}

/// Which kinds have been listed at least once.
#[derive(Debug, Default, Clone)]
struct Synced {
    sites: bool,
    devices: bool,
    patterns: bool,
    registrations: bool,
    secrets: bool,
    shards: bool,
    /// Namespaces whose credentials Secrets were listed (namespaced install mode).
    secret_namespaces: BTreeSet<String>,
}

/// Everything the operator knows about the cluster.
#[derive(Debug, Default, Clone)]
pub struct Index {
    /// The namespace config shards are published in.
    pub config_namespace: String,
    /// Sites by key.
    pub sites: BTreeMap<ObjectKey, Arc<Site>>,
    /// Devices by key, compact.
    pub devices: BTreeMap<ObjectKey, Box<Device>>,
    /// Call patterns by key.
    pub patterns: BTreeMap<ObjectKey, Arc<CallPattern>>,
    /// Outbound registrations by key.
    pub registrations: BTreeMap<ObjectKey, Arc<SipRegistration>>,
    /// Secrets other than config shards, by key, reduced to what credentials need.
    pub secrets: BTreeMap<ObjectKey, StoredSecret>,
    /// The published config shards, by Secret name: where each belongs, not its bytes.
    pub shards: BTreeMap<String, ShardInfo>,
    /// What the operator reads back of the complete set of shards, if there is one.
    pub published: Option<Published>,
    /// Owners whose generated credentials Secret the operator is writing: `None` while the
    /// write is queued or under way, the error once it failed (it is retried). Their devices
    /// are not ready yet rather than invalid.
    pub credentials_in_writing: BTreeMap<ObjectKey, Option<String>>,
    /// Shards whose set is not complete yet, with their bytes.
    pending: BTreeMap<String, Arc<Secret>>,
    synced: Synced,
    /// Every namespace seen, so the 100 000 keys of one namespace share one string.
    namespaces: BTreeSet<Arc<str>>,
    /// The namespaces whose Secrets are listed one by one (namespaced install mode); empty:
    /// one list of every namespace.
    secret_namespaces: Vec<String>,
}

fn apply_op<K: ResourceExt>(map: &mut BTreeMap<ObjectKey, Arc<K>>, op: Op<K>) {
    match op {
        Op::Apply(obj) => {
            map.insert(ObjectKey::of(&obj), Arc::new(obj));
        }
        Op::Delete(obj) => {
            map.remove(&ObjectKey::of(&obj));
        }
        Op::Replace(objs) => {
            *map = objs
                .into_iter()
                .map(|o| (ObjectKey::of(&o), Arc::new(o)))
                .collect();
        }
    }
}

impl Index {
    /// An empty index publishing into `config_namespace`.
    pub fn new(config_namespace: impl Into<String>) -> Self {
        Index {
            config_namespace: config_namespace.into(),
            ..Index::default()
        }
    }

    /// An index whose credentials Secrets come namespace by namespace, from `namespaces` (the
    /// namespaced install mode): synced once each of them was listed.
    pub fn with_secret_namespaces(
        config_namespace: impl Into<String>,
        namespaces: Vec<String>,
    ) -> Self {
        Index {
            config_namespace: config_namespace.into(),
            secret_namespaces: namespaces,
            ..Index::default()
        }
    }

    /// An index that starts synced (for tests and benchmarks that build it by hand).
    pub fn synced(config_namespace: impl Into<String>) -> Self {
        Index {
            config_namespace: config_namespace.into(),
            synced: Synced {
                sites: true,
                devices: true,
                patterns: true,
                registrations: true,
                secrets: true,
                shards: true,
                secret_namespaces: BTreeSet::new(),
            },
            ..Index::default()
        }
    }

    /// Whether every kind has been listed once.
    pub fn is_synced(&self) -> bool {
        let s = &self.synced;
        s.sites && s.devices && s.patterns && s.registrations && s.secrets && s.shards
    }

    /// Applies one watch event.
    pub fn apply(&mut self, change: Change) {
        match change {
            Change::Site(op) => {
                self.synced.sites |= matches!(op, Op::Replace(_));
                apply_op(&mut self.sites, op);
            }
            Change::Device(op) => {
                self.synced.devices |= matches!(op, Op::Replace(_));
                self.apply_device(op);
            }
            Change::Pattern(op) => {
                self.synced.patterns |= matches!(op, Op::Replace(_));
                apply_op(&mut self.patterns, op);
            }
            Change::Registration(op) => {
                self.synced.registrations |= matches!(op, Op::Replace(_));
                apply_op(&mut self.registrations, op);
            }
            Change::Secret(op) => {
                self.synced.secrets |= matches!(op, Op::Replace(_));
                self.apply_secret(op, false);
            }
            Change::Shard(op) => {
                self.synced.shards |= matches!(op, Op::Replace(_));
                self.apply_secret(op, true);
            }
            Change::SecretsOf(namespace, all) => {
                self.secrets.retain(|k, _| *k.namespace != *namespace);
                for entry in all {
                    self.put_secret(entry);
                }
                self.settle_shards();
                self.synced.secret_namespaces.insert(namespace);
                let needed = &self.secret_namespaces;
                self.synced.secrets |= needed
                    .iter()
                    .all(|n| self.synced.secret_namespaces.contains(n));
            }
        }
    }

    fn is_shard(&self, s: &Secret) -> bool {
        s.namespace().as_deref() == Some(self.config_namespace.as_str()) && labelled(s)
    }

    /// `key` with its namespace shared with every other key of the namespace.
    fn intern(&mut self, key: &mut ObjectKey) {
        match self.namespaces.get(&key.namespace) {
            Some(ns) => key.namespace = ns.clone(),
            None => {
                self.namespaces.insert(key.namespace.clone());
            }
        }
    }

    fn apply_device(&mut self, op: Op<Device>) {
        match op {
            Op::Apply(mut d) => {
                self.intern(&mut d.key);
                self.devices.insert(d.key.clone(), Box::new(d));
            }
            Op::Delete(d) => {
                self.devices.remove(&d.key);
            }
            Op::Replace(all) => {
                self.devices = BTreeMap::new();
                // Collecting sorts (stably) and builds full nodes; of duplicates the later wins,
                // as it would inserting one by one.
                self.devices = all
                    .into_iter()
                    .map(|mut d| {
                        self.intern(&mut d.key);
                        (d.key.clone(), Box::new(d))
                    })
                    .collect();
            }
        }
    }

    /// Applies one reduced Secret.
    fn put_secret(&mut self, entry: SecretEntry) {
        match entry {
            SecretEntry::Labelled(s) if self.is_shard(&s) => {
                let name = s.name_any();
                let info = ShardInfo::of(&s);
                if info == ShardInfo::Malformed {
                    self.pending.remove(&name);
                } else {
                    self.pending.insert(name.clone(), s);
                }
                self.shards.insert(name, info);
            }
            SecretEntry::Labelled(s) => {
                let mut key = ObjectKey::of(&*s);
                self.intern(&mut key);
                self.secrets.insert(key, StoredSecret::from_secret(&s));
            }
            SecretEntry::Other(mut key, stored) => {
                self.intern(&mut key);
                self.secrets.insert(key, stored);
            }
        }
    }

    /// `shards`: the change comes from the config namespace's watch, whose full list replaces
    /// the shards; otherwise from the credentials watch, whose list replaces the Secrets.
    fn apply_secret(&mut self, op: Op<SecretEntry>, shards: bool) {
        match op {
            Op::Apply(entry) => self.put_secret(entry),
            Op::Delete(SecretEntry::Labelled(s)) if self.is_shard(&s) => {
                self.shards.remove(&s.name_any());
                self.pending.remove(&s.name_any());
            }
            Op::Delete(SecretEntry::Labelled(s)) => {
                self.secrets.remove(&ObjectKey::of(&*s));
            }
            Op::Delete(SecretEntry::Other(key, _)) => {
                self.secrets.remove(&key);
            }
            Op::Replace(all) => {
                if shards {
                    self.shards = BTreeMap::new();
                    self.pending = BTreeMap::new();
                    self.published = None;
                } else {
                    self.secrets = BTreeMap::new();
                }
                for entry in all {
                    self.put_secret(entry);
                }
            }
        }
        self.settle_shards();
    }

    /// Keeps [`Index::published`] true to the shards: dropped when its set is no longer
    /// complete; read (and the set's bytes let go) when a set becomes complete. Shard names
    /// are by index, so at most one set is complete at a time.
    fn settle_shards(&mut self) {
        let mut sets: BTreeMap<&str, Vec<(&String, usize, usize)>> = BTreeMap::new();
        for (name, info) in &self.shards {
            if let ShardInfo::Part { hash, index, count } = info {
                sets.entry(hash.as_str())
                    .or_default()
                    .push((name, *index, *count));
            }
        }
        let complete = sets.into_iter().find_map(|(hash, members)| {
            let count = members[0].2;
            let mut idx: Vec<(usize, &String)> = members
                .iter()
                .filter(|m| m.2 == count)
                .map(|m| (m.1, m.0))
                .collect();
            idx.sort_unstable();
            idx.dedup_by_key(|m| m.0);
            let whole = idx.iter().map(|m| m.0).eq(0..count);
            whole.then(|| {
                let names: Vec<String> = idx.into_iter().map(|m| m.1.clone()).collect();
                (hash.to_string(), names)
            })
        });
        let Some((hash, names)) = complete else {
            self.published = None;
            return;
        };
        if self.published.as_ref().is_some_and(|p| p.hash == hash) {
            // Read already (the watch echoing the operator's own writes, say).
            for n in &names {
                self.pending.remove(n);
            }
            return;
        }
        let set: Option<Vec<Arc<Secret>>> =
            names.iter().map(|n| self.pending.get(n).cloned()).collect();
        self.published = set.and_then(|set| published::read(&set, &hash));
        for n in &names {
            self.pending.remove(n);
        }
    }

    /// The hash every published shard carries, if they agree and form a complete set.
    pub fn published_hash(&self) -> Option<String> {
        let mut parts = self.shards.values().map(|s| match s {
            ShardInfo::Part { hash, count, .. } => Some((hash, *count)),
            ShardInfo::Malformed => None,
        });
        let (hash, count) = parts.next()??;
        let mut n = 1;
        for p in parts {
            if p? != (hash, count) {
                return None;
            }
            n += 1;
        }
        (n == count).then(|| hash.clone())
    }

    /// A Secret's value by key, if the Secret and key exist.
    pub fn secret_value(&self, key: &ObjectKey, data_key: &str) -> Option<&[u8]> {
        self.secrets.get(key)?.get(data_key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use switchboard_crds::shards;

    fn secret(ns: &str, name: &str) -> Secret {
        Secret {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn synced_only_after_every_kind_is_listed() {
        let mut index = Index::new("switchboard");
        assert!(!index.is_synced());
        index.apply(Change::Site(Op::Replace(vec![])));
        index.apply(Change::device(Op::Replace(vec![])));
        index.apply(Change::Pattern(Op::Replace(vec![])));
        index.apply(Change::Registration(Op::Replace(vec![])));
        assert!(!index.is_synced());
        index.apply(Change::secret(Op::Replace(vec![])));
        assert!(!index.is_synced());
        index.apply(Change::shard(Op::Replace(vec![])));
        assert!(index.is_synced());
    }

    #[test]
    fn namespaced_secret_lists_replace_their_namespace_and_sync_once_all_are_listed() {
        let mut index = Index::with_secret_namespaces("switchboard", vec!["a".into(), "b".into()]);
        index.apply(Change::Site(Op::Replace(vec![])));
        index.apply(Change::device(Op::Replace(vec![])));
        index.apply(Change::Pattern(Op::Replace(vec![])));
        index.apply(Change::Registration(Op::Replace(vec![])));
        index.apply(Change::shard(Op::Replace(vec![])));
        let secret = |ns: &str, name: &str| {
            SecretEntry::from(Secret {
                metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                    name: Some(name.into()),
                    namespace: Some(ns.into()),
                    ..Default::default()
                },
                ..Secret::default()
            })
        };
        index.apply(Change::SecretsOf("a".into(), vec![secret("a", "x")]));
        assert!(!index.is_synced(), "b not listed yet");
        index.apply(Change::SecretsOf("b".into(), vec![secret("b", "y")]));
        assert!(index.is_synced());
        // A relist of a replaces a's Secrets and leaves b's.
        index.apply(Change::SecretsOf("a".into(), vec![]));
        assert_eq!(index.secrets.len(), 1);
        assert!(index.secrets.keys().all(|k| &*k.namespace == "b"));
    }

    #[test]
    fn shards_are_kept_apart_from_credentials() {
        let mut index = Index::synced("switchboard");
        let config = switchboard_crds::config::RegistrarConfig::default().seal();
        let shard = shards::to_secret(&shards::split(&config, 1000)[0], "switchboard");
        let mut foreign = shard.clone();
        foreign.metadata.namespace = Some("elsewhere".into());
        index.apply(Change::secret(Op::Apply(shard.clone())));
        index.apply(Change::secret(Op::Apply(foreign)));
        index.apply(Change::secret(Op::Apply(secret("acme", "creds"))));
        assert_eq!(index.shards.len(), 1);
        assert_eq!(index.secrets.len(), 2);
        assert_eq!(index.published_hash(), Some(config.hash.clone()));
        // Read back, and the bytes let go.
        assert_eq!(
            index.published.as_ref().map(|p| &p.hash),
            Some(&config.hash)
        );
        assert!(index.pending.is_empty());
        index.apply(Change::secret(Op::Delete(shard)));
        assert_eq!(index.published_hash(), None);
        assert_eq!(index.published, None);
        index.apply(Change::secret(Op::Delete(secret("acme", "creds"))));
        assert_eq!(index.secrets.len(), 1);
    }
}
