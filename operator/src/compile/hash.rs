//! Sealing without copying: [`RegistrarConfig::seal`] clones the config to hash it; at 100 000
//! devices that clone alone is tens of MiB, so the compiler streams the canonical JSON straight
//! into SHA-256 instead. The result is byte-for-byte the hash `seal` computes.

use sha2::{Digest, Sha256};
use std::io;
use switchboard_crds::config::{RegistrarConfig, CONFIG_FORMAT};

struct HashWriter(Sha256);

impl io::Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Sets `format` and `hash` (SHA-256 of the canonical JSON with `hash` empty).
pub fn seal(mut config: RegistrarConfig) -> RegistrarConfig {
    config.format = CONFIG_FORMAT;
    config.hash.clear();
    let mut w = HashWriter(Sha256::new());
    serde_json::to_writer(&mut w, &config).expect("config serializes");
    config.hash = hex::encode(w.0.finalize());
    config
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_crds::config::DomainConfig;

    #[test]
    fn same_hash_as_crds_seal() {
        let c = RegistrarConfig {
            domains: vec![DomainConfig {
                domain: "a.example".into(),
                site: "ns/a".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(seal(c.clone()), c.seal());
    }
}
