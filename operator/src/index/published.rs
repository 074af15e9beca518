//! The published config as the index keeps it: each shard Secret's place (hash, index, count),
//! and, of the last complete set, only what the operator reads back (the nonce key and the
//! patterns, see [`crate::runtime::reconcile`]'s seeding), not its bytes.
//!
//! At 100 000 devices the shards are 42 MiB; holding them, and joining and parsing them whole
//! to seed a new leader (the config and its copies, several times that), would be most of the
//! operator's memory. A shard's bytes are held only until its set is complete; then the set is
//! read in one pass over the bytes as they lie, shard after shard: SHA-256 of the canonical
//! JSON (the bytes with the hash value blanked) must be the hash the shards carry, and a
//! deserializer that parses the domains one at a time without keeping them takes the rest. A
//! set whose bytes are not the canonical form (not written by an operator) is joined and
//! checked the full way, [`shards::assemble`], instead.

use k8s_openapi::api::core::v1::Secret;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use switchboard_crds::config::{DomainConfig, OutboundRegistration, PatternConfig, CONFIG_FORMAT};
use switchboard_crds::shards::{
    self, COUNT_ANNOTATION, DATA_KEY, HASH_ANNOTATION, INDEX_ANNOTATION,
};

/// Where a shard Secret belongs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardInfo {
    /// Well-formed.
    Part {
        /// The config's hash.
        hash: String,
        /// This shard's index.
        index: usize,
        /// Shards in the set.
        count: usize,
    },
    /// Annotations or data missing or wrong (what [`shards::from_secret`] refuses).
    Malformed,
}

impl ShardInfo {
    /// Of a shard Secret, without copying its bytes.
    pub fn of(s: &Secret) -> Self {
        let a = s.metadata.annotations.as_ref();
        let get = |k: &str| a.and_then(|a| a.get(k));
        let num = |k: &str| get(k).and_then(|v| v.parse::<usize>().ok());
        let has_data = s.data.as_ref().is_some_and(|d| d.contains_key(DATA_KEY));
        match (
            get(HASH_ANNOTATION),
            num(INDEX_ANNOTATION),
            num(COUNT_ANNOTATION),
        ) {
            (Some(hash), Some(index), Some(count)) if index < count && has_data => {
                ShardInfo::Part {
                    hash: hash.clone(),
                    index,
                    count,
                }
            }
            _ => ShardInfo::Malformed,
        }
    }
}

/// What the operator reads back from the published config.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Published {
    /// Its hash.
    pub hash: String,
    /// The digest nonce key it carries.
    pub nonce_key: Option<String>,
    /// Its patterns.
    pub patterns: Vec<PatternConfig>,
}

/// A config as [`Published`] reads it: the domains and registrations are parsed (so a set
/// that is not a config is refused, as [`shards::assemble`] refuses it) one entry at a time and
/// dropped.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Head {
    format: u32,
    #[serde(default)]
    hash: String,
    #[serde(default)]
    nonce_key: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    domains: Skim<DomainConfig>,
    #[serde(default)]
    patterns: Vec<PatternConfig>,
    #[serde(default)]
    #[allow(dead_code)]
    registrations: Skim<OutboundRegistration>,
}

/// A sequence of `T`, each parsed and dropped.
struct Skim<T>(std::marker::PhantomData<T>);

impl<T> Default for Skim<T> {
    fn default() -> Self {
        Skim(std::marker::PhantomData)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Skim<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Visit<T> {
            type Value = Skim<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a sequence")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                while seq.next_element::<T>()?.is_some() {}
                Ok(Skim::default())
            }
        }
        d.deserialize_seq(Visit(std::marker::PhantomData))
    }
}

/// Reads slices one after another.
struct Chain<'a> {
    parts: Vec<&'a [u8]>,
    at: usize,
}

impl std::io::Read for Chain<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while let Some(part) = self.parts.get_mut(self.at) {
            if part.is_empty() {
                self.at += 1;
                continue;
            }
            let n = part.len().min(buf.len());
            buf[..n].copy_from_slice(&part[..n]);
            *part = &part[n..];
            return Ok(n);
        }
        Ok(0)
    }
}

/// Whether the joined `parts` are the canonical JSON of a config sealed with `hash`: SHA-256 of
/// them with the hash value blanked is `hash`. The hash field comes right after `format`, in
/// the first bytes.
fn canonical(parts: &[&[u8]], hash: &str) -> bool {
    let field = format!("\"hash\":\"{hash}\"");
    let mut head = Vec::new();
    let mut rest = Chain {
        parts: parts.to_vec(),
        at: 0,
    };
    let mut byte = [0u8; 1];
    while head.len() < 64 + field.len() {
        match std::io::Read::read(&mut rest, &mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    let Some(at) = head
        .windows(field.len())
        .position(|w| w == field.as_bytes())
    else {
        return false;
    };
    let mut sha = Sha256::new();
    sha.update(&head[..at]);
    sha.update(b"\"hash\":\"\"");
    sha.update(&head[at + field.len()..]);
    for part in &rest.parts[rest.at..] {
        sha.update(part);
    }
    hex::encode(sha.finalize()) == hash
}

/// Reads a complete set (`set[i]` is shard `i` of `hash`).
pub fn read(set: &[Arc<Secret>], hash: &str) -> Option<Published> {
    let parts: Vec<&[u8]> = set
        .iter()
        .map(|s| {
            s.data
                .as_ref()
                .and_then(|d| d.get(DATA_KEY))
                .map_or(&[][..], |b| &b.0[..])
        })
        .collect();
    if canonical(&parts, hash) {
        let head: Head = serde_json::from_reader(Chain { parts, at: 0 }).ok()?;
        if head.format != CONFIG_FORMAT || head.hash != hash {
            return None;
        }
        return Some(Published {
            hash: head.hash,
            nonce_key: head.nonce_key,
            patterns: head.patterns,
        });
    }
    let config = shards::assemble(set.iter().map(|s| &**s)).ok()?;
    Some(Published {
        hash: config.hash,
        nonce_key: config.nonce_key,
        patterns: config.patterns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_crds::config::{DeviceConfig, RegistrarConfig};

    fn config() -> RegistrarConfig {
        RegistrarConfig {
            nonce_key: Some("k".into()),
            domains: vec![DomainConfig {
                domain: "a.example".into(),
                site: "ns/a".into(),
                devices: (0..50)
                    .map(|i| DeviceConfig {
                        id: format!("ns/d{i}"),
                        sip_user: format!("abc123-d{i}"),
                        ..DeviceConfig::default()
                    })
                    .collect(),
                ..DomainConfig::default()
            }],
            patterns: vec![PatternConfig {
                id: "ns/p".into(),
                ..PatternConfig::default()
            }],
            ..RegistrarConfig::default()
        }
        .seal()
    }

    fn secrets(config: &RegistrarConfig, max: usize) -> Vec<Arc<Secret>> {
        shards::split(config, max)
            .iter()
            .map(|s| Arc::new(shards::to_secret(s, "switchboard")))
            .collect()
    }

    #[test]
    fn reads_what_assemble_reads_without_joining() {
        let c = config();
        for max in [10, 333, 1 << 20] {
            let set = secrets(&c, max);
            assert!(set
                .iter()
                .all(|s| matches!(ShardInfo::of(s), ShardInfo::Part { .. })));
            let p = read(&set, &c.hash).expect("a sealed config");
            assert_eq!(p.nonce_key, c.nonce_key);
            assert_eq!(p.patterns, c.patterns);
            assert_eq!(p.hash, c.hash);
        }
    }

    #[test]
    fn tampered_bytes_are_refused() {
        let c = config();
        let set = secrets(&c, 1 << 20);
        let mut s = (*set[0]).clone();
        let data = &mut s.data.as_mut().unwrap().get_mut(DATA_KEY).unwrap().0;
        let at = data.windows(4).position(|w| w == b"d17\"").unwrap();
        data[at + 1] = b'9';
        assert_eq!(read(&[Arc::new(s)], &c.hash), None);
    }

    #[test]
    fn a_non_canonical_set_is_read_the_full_way() {
        let c = config();
        let pretty = serde_json::to_vec_pretty(&c).unwrap();
        let set = vec![Arc::new(shards::to_secret(
            &shards::split_bytes(&pretty, &c.hash, 1 << 20)[0],
            "switchboard",
        ))];
        let p = read(&set, &c.hash).expect("assemble accepts it");
        assert_eq!(p.nonce_key, c.nonce_key);
    }
}
