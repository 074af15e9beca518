//! The registrar's config: one [`RegistrarConfig`] (the operator's compiled format), swapped
//! atomically while requests run.
//!
//! [`ConfigHandle`] holds the current config behind an `ArcSwap`, so a request reads it with one
//! atomic load and a reload never waits for requests; a generation counter and a `watch`
//! channel tell the runtime a new config arrived (it then drops the bindings of removed
//! devices). Sources feed it through [`ConfigHandle::replace`]: [`file`] (standalone, with
//! reload on change and SIGHUP) and [`kube_source`] (in a cluster: the operator's shard
//! Secrets). Both hand over configs in canonical order (`RegistrarConfig::from_yaml` sorts a
//! hand-written file; the operator publishes sorted ones), which device lookups rely on.

pub mod file;
pub mod kube_source;

use crate::auth::nonce::NonceKey;
use arc_swap::ArcSwapOption;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use switchboard_crds::config::{DeviceConfig, DomainConfig, RegistrarConfig};
use tokio::sync::watch;

/// The standalone config compiled into the binary (`examples/registrar/standalone.yaml`).
pub const EMBEDDED: &str = include_str!("../../../examples/registrar/standalone.yaml");

/// The devices of `new` whose digest secrets differ from what `old` held for them: rotated
/// credentials, or a new SIP user or domain (both part of the HA1). Their bindings were made
/// with credentials that no longer hold. Devices new in `new` are not listed.
pub fn credentials_changed<'n>(old: &RegistrarConfig, new: &'n RegistrarConfig) -> Vec<&'n str> {
    let before: HashMap<&str, (&str, &str)> = old
        .domains
        .iter()
        .flat_map(|d| &d.devices)
        .map(|d| (d.id.as_str(), (d.ha1_md5.as_str(), d.ha1_sha256.as_str())))
        .collect();
    new.domains
        .iter()
        .flat_map(|d| &d.devices)
        .filter(|d| {
            before
                .get(d.id.as_str())
                .is_some_and(|&(md5, sha)| md5 != d.ha1_md5 || sha != d.ha1_sha256)
        })
        .map(|d| d.id.as_str())
        .collect()
}

/// A config in force, with what is derived from it once.
#[derive(Debug)]
pub struct Loaded {
    /// The config.
    pub config: RegistrarConfig,
    /// 1 for the first config loaded, +1 per replacement.
    pub generation: u64,
    /// The nonce key (the config's `nonceKey`, or the process's random key).
    pub nonce_key: NonceKey,
    /// Number of devices across domains.
    pub devices: usize,
    /// Per domain (in `config.domains` order), SIP user → index in its `devices`: a REGISTER
    /// finds its device with one hash instead of a binary search over 10 000s of heap
    /// strings (a cache miss per step; 4 % of the CPU per registration in a profile).
    by_user: Vec<foldhash::HashMap<Box<str>, usize>>,
}

impl Loaded {
    /// The device with SIP user `sip_user` in `domain`, as [`RegistrarConfig::device`].
    pub fn device(&self, domain: &str, sip_user: &str) -> Option<(&DomainConfig, &DeviceConfig)> {
        let i = self
            .config
            .domains
            .binary_search_by(|d| d.domain.as_str().cmp(domain))
            .ok()?;
        let d = &self.config.domains[i];
        Some((d, &d.devices[*self.by_user[i].get(sip_user)?]))
    }
}

impl crate::auth::Directory for Loaded {
    fn device(&self, realm: &str, user: &str) -> Option<&DeviceConfig> {
        Loaded::device(self, realm, user).map(|(_, d)| d)
    }
}

fn index_by_user(config: &RegistrarConfig) -> Vec<foldhash::HashMap<Box<str>, usize>> {
    config
        .domains
        .iter()
        .map(|d| {
            d.devices
                .iter()
                .enumerate()
                .map(|(i, dev)| (dev.sip_user.as_str().into(), i))
                .collect()
        })
        .collect()
}

/// The current config, shared by every task.
pub struct ConfigHandle {
    current: ArcSwapOption<Loaded>,
    generation: AtomicU64,
    notify: watch::Sender<u64>,
    random_key: NonceKey,
}

impl Default for ConfigHandle {
    fn default() -> Self {
        ConfigHandle::new()
    }
}

impl ConfigHandle {
    /// A handle with no config yet (not ready).
    pub fn new() -> ConfigHandle {
        let key: [u8; 32] = rand::random();
        ConfigHandle {
            current: ArcSwapOption::empty(),
            generation: AtomicU64::new(0),
            notify: watch::channel(0).0,
            random_key: NonceKey::new(&key),
        }
    }

    /// Puts a new config in force; returns its generation. Requests already running finish on
    /// the config they started with. The config must be in canonical order (as loaded).
    pub fn replace(&self, config: RegistrarConfig) -> u64 {
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let nonce_key = match config.nonce_key.as_deref() {
            Some(k) if !k.is_empty() => NonceKey::from_config(k),
            _ => self.random_key.clone(),
        };
        let devices = config.domains.iter().map(|d| d.devices.len()).sum();
        let by_user = index_by_user(&config);
        self.current.store(Some(Arc::new(Loaded {
            config,
            generation,
            nonce_key,
            devices,
            by_user,
        })));
        self.notify.send_replace(generation);
        generation
    }

    /// The config in force, if any.
    pub fn current(&self) -> Option<Arc<Loaded>> {
        self.current.load_full()
    }

    /// Whether a config has been loaded.
    pub fn is_loaded(&self) -> bool {
        self.current.load().is_some()
    }

    /// A receiver that sees the generation of every new config.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.notify.subscribe()
    }
}

/// The embedded standalone config.
pub fn embedded() -> RegistrarConfig {
    RegistrarConfig::from_yaml(EMBEDDED).expect("the embedded config parses")
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_crds::config::{ha1, ha1b};

    /// The passwords documented in `examples/registrar/standalone.yaml`.
    const DEMO: [(&str, &str); 3] = [
        ("1001", "switchboard-1001"),
        ("1002", "switchboard-1002"),
        ("1003", "switchboard-1003"),
    ];

    #[test]
    fn embedded_ha1s_match_the_documented_passwords() {
        let c = embedded();
        let d = c.domain("switchboard.local").expect("demo domain");
        assert_eq!(d.devices.len(), DEMO.len());
        for (user, password) in DEMO {
            let (_, dev) = c.device("switchboard.local", user).expect("demo device");
            let (md5, sha) = ha1(user, "switchboard.local", password);
            assert_eq!(dev.ha1_md5, md5, "MD5 HA1 of {user}");
            assert_eq!(dev.ha1_sha256, sha, "SHA-256 HA1 of {user}");
            let (md5, sha) = ha1b(user, "switchboard.local", password);
            assert_eq!(dev.ha1b_md5.as_deref(), Some(md5.as_str()), "{user}@realm");
            assert_eq!(
                dev.ha1b_sha256.as_deref(),
                Some(sha.as_str()),
                "{user}@realm"
            );
        }
        for (user, _) in DEMO {
            assert!(
                EMBEDDED.contains(&format!("{user} / switchboard-{user}")),
                "the password of {user} is documented in the file"
            );
        }
    }

    #[test]
    fn the_index_finds_what_the_sorted_lists_find() {
        let h = ConfigHandle::new();
        h.replace(embedded());
        let loaded = h.current().unwrap();
        for (domain, user) in [
            ("switchboard.local", "1001"),
            ("switchboard.local", "1003"),
            ("switchboard.local", "1004"),
            ("switchboard.local", ""),
            ("other.test", "1001"),
        ] {
            let indexed = loaded.device(domain, user).map(|(_, d)| &d.id);
            let searched = loaded.config.device(domain, user).map(|(_, d)| &d.id);
            assert_eq!(indexed, searched, "{user}@{domain}");
        }
        assert!(loaded.device("switchboard.local", "1002").is_some());
    }

    #[test]
    fn replace_bumps_generation_and_notifies() {
        let h = ConfigHandle::new();
        assert!(!h.is_loaded());
        let mut rx = h.subscribe();
        assert_eq!(h.replace(embedded()), 1);
        assert!(rx.has_changed().unwrap());
        assert_eq!(*rx.borrow_and_update(), 1);
        assert_eq!(h.replace(embedded()), 2);
        assert_eq!(h.current().unwrap().generation, 2);
        assert_eq!(h.current().unwrap().devices, 3);
    }

    #[test]
    fn changed_credentials_are_found_by_device() {
        let old = embedded();
        let mut new = old.clone();
        new.domains[0].devices[1].ha1_md5 = "0".repeat(32);
        new.domains[0].devices[2].id = "default/brand-new".into();
        let changed = credentials_changed(&old, &new);
        assert_eq!(changed, vec![new.domains[0].devices[1].id.as_str()]);
        assert!(credentials_changed(&old, &old).is_empty());
    }
}
