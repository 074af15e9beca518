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
pub fn plan(config: &RegistrarConfig, index: &Index) -> Option<Plan> {
    if index.published_hash().as_deref() == Some(config.hash.as_str()) {
        return None;
    }
    let split = shards::split(config, MAX_SHARD_BYTES);
    let count = split.len();
    let bytes = split.iter().map(|s| s.data.len()).sum();
    let writes = split
        .iter()
        .map(|s| shards::to_secret(s, &index.config_namespace))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{Change, Op};

    #[test]
    fn unchanged_hash_writes_nothing_and_stale_shards_go_last() {
        let mut index = Index::synced("switchboard");
        let config = RegistrarConfig::default().seal();
        let p = plan(&config, &index).expect("nothing published yet");
        assert_eq!(p.writes.len(), 1);
        for s in p.writes {
            index.apply(Change::secret(Op::Apply(s)));
        }
        assert!(plan(&config, &index).is_none());
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
        let p = plan(&other.seal(), &index).unwrap();
        assert_eq!(
            p.deletes,
            vec!["switchboard-registrar-config-1".to_string()]
        );
    }
}
