//! The registrar config as Kubernetes Secrets: split into shards by the operator, joined back by
//! every registrar replica.
//!
//! A Secret holds at most 1 MiB, and a config for 100 000 devices is tens of MiB, so the
//! canonical JSON of a sealed [`RegistrarConfig`] is cut into byte ranges of at most
//! [`MAX_SHARD_BYTES`], one per Secret `switchboard-registrar-config-<n>` in the operator's
//! namespace. Every shard carries the labels and annotations below:
//!
//! - label [`CONFIG_LABEL`]`: "true"` (what the registrar watches),
//! - annotation [`HASH_ANNOTATION`]: the config's content hash,
//! - annotations [`INDEX_ANNOTATION`] and [`COUNT_ANNOTATION`]: `n` and how many shards in all.
//!
//! The operator writes shards 0..count-1 and only then deletes shards past the count. A reader
//! assembles a config only from a complete set, indexes `0..count`, all with one hash and one
//! count, and checks the joined bytes against that hash; while a write is half done it keeps the
//! config it has.
//!
//! A config has at most [`MAX_SHARDS`] shards: the registrar may read exactly the Secrets
//! [`secret_names`] lists (its Role names them; RBAC cannot grant by label) and watches each by
//! name, so the operator refuses to publish a larger config ([`check_count`]).

use crate::config::{ConfigError, RegistrarConfig, CONFIG_FORMAT};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use std::collections::BTreeMap;

/// Label on every shard Secret (value `"true"`).
pub const CONFIG_LABEL: &str = "sip.switchboard.dev/registrar-config";
/// Annotation: the config's content hash ([`RegistrarConfig::hash`]).
pub const HASH_ANNOTATION: &str = "sip.switchboard.dev/config-hash";
/// Annotation: this shard's index, from 0.
pub const INDEX_ANNOTATION: &str = "sip.switchboard.dev/shard-index";
/// Annotation: the number of shards of this config.
pub const COUNT_ANNOTATION: &str = "sip.switchboard.dev/shard-count";
/// The Secret key holding the shard's bytes.
pub const DATA_KEY: &str = "config.json";
/// Shard Secrets are named this plus the index.
pub const SECRET_PREFIX: &str = "switchboard-registrar-config-";
/// Largest shard payload: well under the API server's 1 MiB Secret limit, leaving room for
/// metadata.
pub const MAX_SHARD_BYTES: usize = 900 * 1024;
/// Most shards a config may have (about 56 MiB). 100 000 devices over 100 sites take 42 MiB
/// in 48 shards (`cargo bench -p switchboard-operator --bench compile`); each possible shard
/// costs every registrar replica one watch.
pub const MAX_SHARDS: usize = 64;

/// One byte range of a serialized config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shard {
    /// Position, from 0.
    pub index: usize,
    /// Number of shards of this config.
    pub count: usize,
    /// Content hash of the whole config.
    pub hash: String,
    /// The bytes.
    pub data: Vec<u8>,
}

/// Why shards could not be joined into a config.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum JoinError {
    /// No shard at all.
    #[error("no registrar config shards")]
    Empty,
    /// A Secret carries the label but not well-formed annotations or data.
    #[error("shard Secret {name}: {problem}")]
    Malformed {
        /// Secret name.
        name: String,
        /// What is wrong.
        problem: String,
    },
    /// Shards are missing or disagree on hash or count (a write in progress).
    #[error("incomplete config: {0}")]
    Incomplete(String),
    /// The joined bytes are not a config matching the hash.
    #[error("{0}")]
    Config(String),
}

impl From<ConfigError> for JoinError {
    fn from(e: ConfigError) -> Self {
        JoinError::Config(e.to_string())
    }
}

/// The name of shard `index`.
pub fn secret_name(index: usize) -> String {
    format!("{SECRET_PREFIX}{index}")
}

/// The name of every shard a config may use, `0..MAX_SHARDS`: all the Secrets the registrar
/// reads.
pub fn secret_names() -> impl Iterator<Item = String> {
    (0..MAX_SHARDS).map(secret_name)
}

/// A config too large for [`MAX_SHARDS`] shards.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "the registrar config is {bytes} bytes, {count} shards of {MAX_SHARD_BYTES} bytes; \
     registrars read at most {MAX_SHARDS} shards: not published, the config in force stays"
)]
pub struct TooManyShards {
    /// Shards it would take.
    pub count: usize,
    /// Its size.
    pub bytes: usize,
}

/// Whether a config of `count` shards (`bytes` in all) may be published.
pub fn check_count(count: usize, bytes: usize) -> Result<(), TooManyShards> {
    if count > MAX_SHARDS {
        Err(TooManyShards { count, bytes })
    } else {
        Ok(())
    }
}

/// Serializes a sealed config to its canonical JSON bytes.
pub fn serialize(config: &RegistrarConfig) -> Vec<u8> {
    serde_json::to_vec(config).expect("config serializes")
}

/// Splits a sealed config into shards of at most `max` bytes (at least one shard). The JSON is
/// written straight into the shards, so the config's bytes are in memory once, not twice.
pub fn split(config: &RegistrarConfig, max: usize) -> Vec<Shard> {
    let mut w = ChunkWriter::new(max);
    serde_json::to_writer(&mut w, config).expect("config serializes");
    let chunks = w.into_chunks();
    let count = chunks.len();
    chunks
        .into_iter()
        .enumerate()
        .map(|(index, data)| Shard {
            index,
            count,
            hash: config.hash.clone(),
            data,
        })
        .collect()
}

/// Cuts written bytes into chunks of at most `max` bytes: [`split`]'s cut, public so the
/// operator can stream a config into the same shards without holding its whole JSON.
pub struct ChunkWriter {
    max: usize,
    chunks: Vec<Vec<u8>>,
}

impl ChunkWriter {
    /// A writer cutting at `max` bytes (positive).
    pub fn new(max: usize) -> ChunkWriter {
        assert!(max > 0, "shard size must be positive");
        ChunkWriter {
            max,
            chunks: vec![Vec::new()],
        }
    }

    /// The chunks written (at least one, possibly empty).
    pub fn into_chunks(self) -> Vec<Vec<u8>> {
        self.chunks
    }
}

impl std::io::Write for ChunkWriter {
    fn write(&mut self, mut buf: &[u8]) -> std::io::Result<usize> {
        let n = buf.len();
        while !buf.is_empty() {
            let last = self.chunks.last_mut().expect("at least one chunk");
            if last.len() == self.max {
                self.chunks.push(Vec::with_capacity(self.max.min(1 << 20)));
                continue;
            }
            let take = (self.max - last.len()).min(buf.len());
            last.extend_from_slice(&buf[..take]);
            buf = &buf[take..];
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Splits serialized bytes into shards of at most `max` bytes (at least one shard).
pub fn split_bytes(bytes: &[u8], hash: &str, max: usize) -> Vec<Shard> {
    assert!(max > 0, "shard size must be positive");
    let chunks: Vec<&[u8]> = if bytes.is_empty() {
        vec![&[]]
    } else {
        bytes.chunks(max).collect()
    };
    let count = chunks.len();
    chunks
        .into_iter()
        .enumerate()
        .map(|(index, data)| Shard {
            index,
            count,
            hash: hash.to_string(),
            data: data.to_vec(),
        })
        .collect()
}

/// Joins shards (any order) into a config, checking completeness, format and hash.
pub fn join(mut shards: Vec<Shard>) -> Result<RegistrarConfig, JoinError> {
    let first = shards.first().ok_or(JoinError::Empty)?;
    let (hash, count) = (first.hash.clone(), first.count);
    if let Some(s) = shards.iter().find(|s| s.hash != hash || s.count != count) {
        return Err(JoinError::Incomplete(format!(
            "shard {} has hash {}/count {}, shard {} has {}/{}",
            first.index, hash, count, s.index, s.hash, s.count
        )));
    }
    shards.sort_by_key(|s| s.index);
    shards.dedup_by_key(|s| s.index);
    let indexes: Vec<usize> = shards.iter().map(|s| s.index).collect();
    if indexes != (0..count).collect::<Vec<_>>() {
        return Err(JoinError::Incomplete(format!(
            "have shards {indexes:?} of {count}"
        )));
    }
    let mut bytes = Vec::with_capacity(shards.iter().map(|s| s.data.len()).sum());
    for s in &shards {
        bytes.extend_from_slice(&s.data);
    }
    parse(&bytes, &hash)
}

/// Parses joined bytes and checks them against the hash the shards carry.
fn parse(bytes: &[u8], hash: &str) -> Result<RegistrarConfig, JoinError> {
    let config: RegistrarConfig =
        serde_json::from_slice(bytes).map_err(|e| ConfigError::Parse(e.to_string()))?;
    if config.format != CONFIG_FORMAT {
        return Err(ConfigError::Format {
            found: config.format,
        }
        .into());
    }
    let actual = config.content_hash();
    if actual != config.hash || actual != hash {
        return Err(ConfigError::Hash {
            stated: hash.to_string(),
            actual,
        }
        .into());
    }
    Ok(config)
}

/// The Secret holding a shard.
pub fn to_secret(shard: &Shard, namespace: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(secret_name(shard.index)),
            namespace: Some(namespace.to_string()),
            labels: Some(BTreeMap::from([(CONFIG_LABEL.into(), "true".into())])),
            annotations: Some(BTreeMap::from([
                (HASH_ANNOTATION.into(), shard.hash.clone()),
                (INDEX_ANNOTATION.into(), shard.index.to_string()),
                (COUNT_ANNOTATION.into(), shard.count.to_string()),
            ])),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(
            DATA_KEY.into(),
            ByteString(shard.data.clone()),
        )])),
        type_: Some("Opaque".into()),
        ..Secret::default()
    }
}

/// Reads a shard from a Secret.
pub fn from_secret(secret: &Secret) -> Result<Shard, JoinError> {
    let (index, count, hash) = header(secret)?;
    let data = secret
        .data
        .as_ref()
        .and_then(|d| d.get(DATA_KEY))
        .ok_or_else(|| JoinError::Malformed {
            name: secret.metadata.name.clone().unwrap_or_default(),
            problem: format!("key {DATA_KEY} missing"),
        })?;
    Ok(Shard {
        index,
        count,
        hash,
        data: data.0.clone(),
    })
}

/// A shard Secret's index, count and hash, from its annotations.
fn header(secret: &Secret) -> Result<(usize, usize, String), JoinError> {
    let name = secret.metadata.name.clone().unwrap_or_default();
    let malformed = |problem: String| JoinError::Malformed {
        name: name.clone(),
        problem,
    };
    let annotations = secret.metadata.annotations.as_ref();
    let get = |key: &str| {
        annotations
            .and_then(|a| a.get(key))
            .ok_or_else(|| malformed(format!("annotation {key} missing")))
    };
    let number = |key: &str| -> Result<usize, JoinError> {
        get(key)?
            .parse()
            .map_err(|_| malformed(format!("annotation {key} is not a number")))
    };
    let hash = get(HASH_ANNOTATION)?.clone();
    let (index, count) = (number(INDEX_ANNOTATION)?, number(COUNT_ANNOTATION)?);
    if index >= count {
        return Err(malformed(format!("index {index} >= count {count}")));
    }
    Ok((index, count, hash))
}

/// The hash of the complete set among `secrets`, read from their annotations alone (nothing
/// is joined or parsed), so a reader can tell a set it already has for the price of a lookup.
pub fn complete_hash<'a>(
    secrets: impl IntoIterator<Item = &'a Secret>,
) -> Result<Option<String>, JoinError> {
    let mut by_hash: BTreeMap<(String, usize), Vec<usize>> = BTreeMap::new();
    for secret in secrets {
        let (index, count, hash) = header(secret)?;
        by_hash.entry((hash, count)).or_default().push(index);
    }
    Ok(by_hash.into_iter().find_map(|((hash, count), mut idx)| {
        idx.sort_unstable();
        idx.dedup();
        (idx == (0..count).collect::<Vec<_>>()).then_some(hash)
    }))
}

/// Assembles the config from every labelled Secret seen. Stale shards of an older config (past
/// the new count, not deleted yet) are ignored; the one hash with a complete set wins.
pub fn assemble<'a>(
    secrets: impl IntoIterator<Item = &'a Secret>,
) -> Result<RegistrarConfig, JoinError> {
    let mut by_hash: BTreeMap<String, Vec<Shard>> = BTreeMap::new();
    let mut seen = 0;
    for secret in secrets {
        seen += 1;
        let shard = from_secret(secret)?;
        by_hash.entry(shard.hash.clone()).or_default().push(shard);
    }
    if seen == 0 {
        return Err(JoinError::Empty);
    }
    let complete = by_hash.into_iter().find(|(_, shards)| {
        let count = shards[0].count;
        let mut idx: Vec<usize> = shards
            .iter()
            .filter(|s| s.count == count)
            .map(|s| s.index)
            .collect();
        idx.sort_unstable();
        idx.dedup();
        idx == (0..count).collect::<Vec<_>>()
    });
    match complete {
        Some((_, shards)) => join(shards),
        None => Err(JoinError::Incomplete(format!(
            "no complete set among {seen} shard Secrets"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ha1, DeviceConfig, DomainConfig};

    fn config(devices: usize) -> RegistrarConfig {
        let devices = (0..devices)
            .map(|i| {
                let user = format!("abc123-phone{i:06}");
                let (ha1_md5, ha1_sha256) = ha1(&user, "example.test", "pw");
                DeviceConfig {
                    id: format!("default/phone{i:06}"),
                    sip_user: user,
                    ha1_md5,
                    ha1_sha256,
                    ..Default::default()
                }
            })
            .collect();
        RegistrarConfig {
            domains: vec![DomainConfig {
                domain: "example.test".into(),
                site: "default/hq".into(),
                devices,
                ..Default::default()
            }],
            ..Default::default()
        }
        .seal()
    }

    #[test]
    fn streaming_split_equals_splitting_the_bytes() {
        let c = config(2_000);
        assert_eq!(
            split(&c, 7_777),
            split_bytes(&serialize(&c), &c.hash, 7_777)
        );
    }

    #[test]
    fn round_trip_over_one_mib() {
        let c = config(5_000);
        let bytes = serialize(&c);
        assert!(bytes.len() > 1024 * 1024, "{} bytes", bytes.len());
        let mut shards = split(&c, MAX_SHARD_BYTES);
        assert!(shards.len() >= 2);
        assert!(shards.iter().all(|s| s.data.len() <= MAX_SHARD_BYTES));
        shards.reverse();
        assert_eq!(join(shards).unwrap(), c);
    }

    #[test]
    fn round_trip_through_secrets() {
        let c = config(3_000);
        let secrets: Vec<Secret> = split(&c, 100_000)
            .iter()
            .map(|s| to_secret(s, "switchboard"))
            .collect();
        assert_eq!(
            secrets[1].metadata.name.as_deref(),
            Some("switchboard-registrar-config-1")
        );
        assert_eq!(assemble(&secrets).unwrap(), c);
    }

    #[test]
    fn missing_or_mixed_shards_are_incomplete() {
        let old = config(10);
        let new = config(3_000);
        let mut shards = split(&new, 50_000);
        shards.remove(1);
        assert!(matches!(
            join(shards.clone()),
            Err(JoinError::Incomplete(_))
        ));
        shards.push(split(&old, 50_000).remove(0));
        assert!(matches!(join(shards), Err(JoinError::Incomplete(_))));
    }

    #[test]
    fn stale_extra_shards_are_ignored() {
        let old = config(3_000);
        let new = config(1_000);
        let old_secrets: Vec<Secret> = split(&old, 60_000)
            .iter()
            .map(|s| to_secret(s, "ns"))
            .collect();
        let new_secrets: Vec<Secret> = split(&new, 60_000)
            .iter()
            .map(|s| to_secret(s, "ns"))
            .collect();
        assert!(old_secrets.len() > new_secrets.len());
        // new shards overwrite old ones by name; old extras not yet deleted
        let mut live = new_secrets.clone();
        live.extend(old_secrets[new_secrets.len()..].iter().cloned());
        assert_eq!(assemble(&live).unwrap(), new);
        // half-way through writing the new set: old extras plus some new → nothing complete
        let mut half = vec![new_secrets[0].clone()];
        half.extend(old_secrets[1..].iter().cloned());
        if new_secrets.len() > 1 {
            assert!(matches!(assemble(&half), Err(JoinError::Incomplete(_))));
        }
    }

    #[test]
    fn shard_count_is_bounded_and_every_name_is_listed() {
        assert_eq!(check_count(MAX_SHARDS, 1), Ok(()));
        let e = check_count(MAX_SHARDS + 1, 7).unwrap_err();
        assert!(e.to_string().contains("at most 64 shards"), "{e}");
        let names: Vec<String> = secret_names().collect();
        assert_eq!(names.len(), MAX_SHARDS);
        assert_eq!(names[0], "switchboard-registrar-config-0");
        assert_eq!(names[MAX_SHARDS - 1], "switchboard-registrar-config-63");
    }

    #[test]
    fn the_complete_hash_is_read_without_joining() {
        let c = config(3_000);
        let mut secrets: Vec<Secret> = split(&c, 60_000)
            .iter()
            .map(|s| to_secret(s, "ns"))
            .collect();
        assert_eq!(complete_hash(&secrets), Ok(Some(c.hash.clone())));
        let last = secrets.pop().unwrap();
        assert_eq!(complete_hash(&secrets), Ok(None));
        secrets.push(last);
        secrets[0].data = None;
        assert_eq!(
            complete_hash(&secrets),
            Ok(Some(c.hash.clone())),
            "data is not read"
        );
    }

    #[test]
    fn corrupted_bytes_are_refused() {
        let c = config(10);
        let mut shards = split(&c, MAX_SHARD_BYTES);
        let n = shards[0].data.len();
        shards[0].data[n / 2] = b'X';
        assert!(join(shards).is_err());
    }
}
