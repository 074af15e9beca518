//! Publishing the config: shard Secrets in the operator's namespace.
//!
//! [`plan`] is pure: from the compiled config and the shards already published (seen through
//! the index) it says what to write. An unchanged hash writes nothing. Otherwise every shard of
//! the new config is written (server-side apply), and only after that the shards past the new
//! count are deleted, so a registrar never sees a complete set that mixes two configs (see
//! [`switchboard_crds::shards`]).

mod write;

pub use write::execute;

use crate::index::Index;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use std::io::Write;
use switchboard_crds::config::RegistrarConfig;
use switchboard_crds::shards::{self, MAX_SHARD_BYTES};

/// What publishing a config takes.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The config's hash.
    pub hash: String,
    /// Shard Secrets to apply, in index order.
    pub writes: Vec<Secret>,
    /// Names of stale shard Secrets to delete afterwards.
    pub deletes: Vec<String>,
    /// Total bytes of the serialized config.
    pub bytes: usize,
}

/// The writes that publish `config`, or `None` when it is already published.
///
/// The config's domains (nearly all of its size) are serialized out of it one at a time and
/// dropped, so the config and its bytes are not both held whole: `config.domains` is left
/// empty when a plan is returned (the rest of it is untouched). The bytes are exactly
/// [`shards::split`]'s.
pub fn plan(config: &mut RegistrarConfig, index: &Index) -> Option<Plan> {
    if index.published_hash().as_deref() == Some(config.hash.as_str()) {
        return None;
    }
    let chunks = serialize_draining(config, MAX_SHARD_BYTES);
    let count = chunks.len();
    let bytes = chunks.iter().map(Vec::len).sum();
    let writes = chunks
        .into_iter()
        .enumerate()
        .map(|(i, data)| {
            let shard = shards::Shard {
                index: i,
                count,
                hash: config.hash.clone(),
                data: Vec::new(),
            };
            let mut secret = shards::to_secret(&shard, &index.config_namespace);
            if let Some(v) = secret
                .data
                .as_mut()
                .and_then(|d| d.get_mut(shards::DATA_KEY))
            {
                *v = ByteString(data);
            }
            secret
        })
        .collect();
    let keep: Vec<String> = (0..count).map(shards::secret_name).collect();
    let deletes = index
        .shards
        .keys()
        .filter(|name| !keep.contains(name))
        .cloned()
        .collect();
    Some(Plan {
        hash: config.hash.clone(),
        writes,
        deletes,
        bytes,
    })
}

/// The canonical JSON of `config`, cut into chunks of at most `max` bytes, taking the domains
/// out of it as they are written. The JSON without domains has `"domains":[]` exactly once (a
/// quote inside a string value is escaped), and serde_json writes a sequence as its elements
/// joined by `,`: writing the domains one by one in that place gives the same bytes.
fn serialize_draining(config: &mut RegistrarConfig, max: usize) -> Vec<Vec<u8>> {
    let domains = std::mem::take(&mut config.domains);
    let skeleton = serde_json::to_vec(&*config).expect("config serializes");
    const HOLE: &[u8] = b"\"domains\":[";
    let at = skeleton
        .windows(HOLE.len() + 1)
        .position(|w| &w[..HOLE.len()] == HOLE && w[HOLE.len()] == b']')
        .expect("a config serializes its domains")
        + HOLE.len();
    let mut w = shards::ChunkWriter::new(max);
    w.write_all(&skeleton[..at]).expect("in memory");
    for (i, domain) in domains.into_iter().enumerate() {
        if i > 0 {
            w.write_all(b",").expect("in memory");
        }
        serde_json::to_writer(&mut w, &domain).expect("domain serializes");
    }
    w.write_all(&skeleton[at..]).expect("in memory");
    w.into_chunks()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{Change, Op};

    #[test]
    fn unchanged_hash_writes_nothing_and_stale_shards_go_last() {
        let mut index = Index::synced("switchboard");
        let config = RegistrarConfig::default().seal();
        let p = plan(&mut config.clone(), &index).expect("nothing published yet");
        assert_eq!(p.writes.len(), 1);
        for s in p.writes {
            index.apply(Change::secret(Op::Apply(s)));
        }
        assert!(plan(&mut config.clone(), &index).is_none());
        // A stale shard 1 of an older, bigger config.
        let mut stale = shards::to_secret(
            &shards::Shard {
                index: 1,
                count: 2,
                hash: "old".into(),
                data: vec![],
            },
            "switchboard",
        );
        stale.metadata.name = Some(shards::secret_name(1));
        index.apply(Change::secret(Op::Apply(stale)));
        let other = RegistrarConfig {
            nonce_key: Some("k".into()),
            ..Default::default()
        };
        let p = plan(&mut other.seal(), &index).unwrap();
        assert_eq!(
            p.deletes,
            vec!["switchboard-registrar-config-1".to_string()]
        );
    }

    #[test]
    fn draining_gives_the_bytes_split_gives() {
        use switchboard_crds::config::{DeviceConfig, DomainConfig, PatternConfig};
        let domain = |d: &str, n: usize| DomainConfig {
            domain: d.into(),
            site: format!("ns/{d}"),
            devices: (0..n)
                .map(|i| DeviceConfig {
                    id: format!("ns/{d}-{i}"),
                    sip_user: format!("abc123-{d}-{i}"),
                    ..DeviceConfig::default()
                })
                .collect(),
            ..DomainConfig::default()
        };
        for domains in [
            vec![],
            vec![domain("a", 3)],
            vec![domain("a", 40), domain("b\"domains\":[]", 7)],
        ] {
            let config = RegistrarConfig {
                nonce_key: Some("\"domains\":[]".into()),
                domains,
                patterns: vec![PatternConfig {
                    id: "ns/p".into(),
                    ..PatternConfig::default()
                }],
                ..RegistrarConfig::default()
            }
            .seal();
            for max in [7, 100, 1 << 20] {
                let want: Vec<Vec<u8>> = shards::split(&config, max)
                    .into_iter()
                    .map(|s| s.data)
                    .collect();
                let mut drained = config.clone();
                assert_eq!(serialize_draining(&mut drained, max), want);
                assert!(drained.domains.is_empty());
                assert_eq!(drained.patterns, config.patterns);
            }
        }
    }
}
