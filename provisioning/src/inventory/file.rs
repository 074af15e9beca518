//! A manifest file as the source, for a setup without a cluster: Sites, SipDevices and the
//! Secrets they name (`stringData` or `data`), in one multi-document YAML file. It is read
//! again on every fetch, so an edited password is served at once; a file that no longer reads
//! fails that fetch (503) and says why in the log, and nothing else changes.

use super::{secret_text, DevicesWithSites, SecretData, Source};
use crate::mac::Mac;
use anyhow::Context;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Secret;
use serde::Deserialize;
use std::path::PathBuf;
use switchboard_crds::{SipDevice, Site};

/// Resources read from one file.
#[derive(Clone, Debug, Default)]
pub struct Manifest {
    /// The Sites.
    pub sites: Vec<Site>,
    /// The devices.
    pub devices: Vec<SipDevice>,
    /// The Secrets.
    pub secrets: Vec<Secret>,
}

/// Namespace of an object that names none.
const DEFAULT_NAMESPACE: &str = "default";

impl Manifest {
    /// Reads multi-document YAML; other kinds are passed over. An error names the document.
    pub fn parse(text: &str) -> anyhow::Result<Manifest> {
        let mut m = Manifest::default();
        for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
            let value =
                serde_yaml::Value::deserialize(doc).with_context(|| format!("document {i}"))?;
            if value.is_null() {
                continue;
            }
            let kind = value
                .get("kind")
                .and_then(|k| k.as_str())
                .unwrap_or_default()
                .to_string();
            let read = |what: &str| format!("document {i} ({what})");
            match kind.as_str() {
                "Site" => m
                    .sites
                    .push(serde_yaml::from_value(value).with_context(|| read("Site"))?),
                "SipDevice" => m
                    .devices
                    .push(serde_yaml::from_value(value).with_context(|| read("SipDevice"))?),
                "Secret" => m
                    .secrets
                    .push(serde_yaml::from_value(value).with_context(|| read("Secret"))?),
                _ => {}
            }
        }
        for s in &mut m.sites {
            s.metadata
                .namespace
                .get_or_insert_with(|| DEFAULT_NAMESPACE.into());
        }
        for d in &mut m.devices {
            d.metadata
                .namespace
                .get_or_insert_with(|| DEFAULT_NAMESPACE.into());
        }
        for s in &mut m.secrets {
            s.metadata
                .namespace
                .get_or_insert_with(|| DEFAULT_NAMESPACE.into());
        }
        Ok(m)
    }
}

/// The file source.
pub enum FileSource {
    /// A file, read on every fetch.
    Path(PathBuf),
    /// Text fixed at start (the embedded demo).
    Text(Manifest),
}

impl FileSource {
    /// A source over the file at `path`; reads it once to fail early on a bad file.
    pub fn open(path: PathBuf) -> anyhow::Result<FileSource> {
        let s = FileSource::Path(path);
        s.read()?;
        Ok(s)
    }

    /// A source over fixed text.
    pub fn text(text: &str) -> anyhow::Result<FileSource> {
        Ok(FileSource::Text(Manifest::parse(text)?))
    }

    fn read(&self) -> anyhow::Result<Manifest> {
        match self {
            FileSource::Text(m) => Ok(m.clone()),
            FileSource::Path(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                Manifest::parse(&text).with_context(|| format!("in {}", path.display()))
            }
        }
    }
}

impl Source for FileSource {
    fn devices(&self, mac: &Mac) -> BoxFuture<'_, anyhow::Result<DevicesWithSites>> {
        let found = self.read().map(|m| {
            let with_sites = |d: SipDevice| {
                let sites = m
                    .sites
                    .iter()
                    .filter(|s| s.metadata.namespace == d.metadata.namespace);
                (d.clone(), sites.cloned().collect())
            };
            m.devices
                .iter()
                .filter(|d| Mac::parse(&d.spec.mac_address).as_ref() == Some(mac))
                .cloned()
                .map(with_sites)
                .collect()
        });
        Box::pin(async move { found })
    }

    fn secret<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<Option<SecretData>>> {
        let found = self.read().map(|m| {
            m.secrets
                .iter()
                .find(|s| {
                    s.metadata.namespace.as_deref() == Some(namespace)
                        && s.metadata.name.as_deref() == Some(name)
                })
                .map(secret_text)
        });
        Box::pin(async move { found })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_document_is_named_and_other_kinds_are_passed_over() {
        let m = Manifest::parse("kind: Namespace\n---\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: {password: x}\n").unwrap();
        assert_eq!(m.secrets.len(), 1);
        assert_eq!(secret_text(&m.secrets[0])["password"], "x");
        assert_eq!(m.secrets[0].metadata.namespace.as_deref(), Some("default"));
        let e = Manifest::parse("kind: Site\n---\nkind: SipDevice\nspec: {}\n").unwrap_err();
        assert!(format!("{e:#}").contains("document 0 (Site)"), "{e:#}");
    }
}
