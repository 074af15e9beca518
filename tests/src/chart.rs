//! The Helm chart as files: load `charts/switchboard`, render it with [`crate::gotmpl`] against
//! its defaults plus overrides, and parse the result as Kubernetes objects.

use crate::gotmpl::{self, Templates};
use anyhow::{bail, Context as _};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The repository's root (this crate lives in `tests/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// `charts/switchboard`.
pub fn chart_dir() -> PathBuf {
    repo_root().join("charts/switchboard")
}

/// Reads YAML into JSON values, one per non-empty document.
pub fn yaml_documents(text: &str) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let v: serde_yaml::Value = serde::Deserialize::deserialize(doc)?;
        let v: Value = serde_json::to_value(v)?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}

/// A loaded chart.
pub struct Chart {
    /// Chart.yaml.
    pub meta: Value,
    /// values.yaml.
    pub values: Value,
    /// values.schema.json.
    pub schema: Value,
    /// The files under `files/`, by path relative to the chart (`.Files.Get`).
    pub files: BTreeMap<String, String>,
    templates: Templates,
}

/// One rendering.
pub struct Rendered {
    /// Output per template file (partials, `_*.tpl`, excluded), NOTES.txt included.
    pub files: BTreeMap<String, String>,
}

/// One object of a rendering, with the file it came from.
#[derive(Clone, Debug)]
pub struct Object {
    /// Template file.
    pub file: String,
    /// The object.
    pub value: Value,
}

impl Object {
    /// `kind`.
    pub fn kind(&self) -> &str {
        self.value["kind"].as_str().unwrap_or_default()
    }
    /// `metadata.name`.
    pub fn name(&self) -> &str {
        self.value["metadata"]["name"].as_str().unwrap_or_default()
    }
}

impl Rendered {
    /// Every object of every YAML template (NOTES.txt excluded), in file order.
    pub fn objects(&self) -> anyhow::Result<Vec<Object>> {
        let mut out = Vec::new();
        for (file, text) in &self.files {
            if file.ends_with(".txt") {
                continue;
            }
            for value in
                yaml_documents(text).with_context(|| format!("{file}: not YAML:\n{text}"))?
            {
                out.push(Object {
                    file: file.clone(),
                    value,
                });
            }
        }
        Ok(out)
    }

    /// The one object of `kind` whose name ends with `suffix`.
    pub fn find(&self, kind: &str, suffix: &str) -> anyhow::Result<Object> {
        let found: Vec<Object> = self
            .objects()?
            .into_iter()
            .filter(|o| o.kind() == kind && o.name().ends_with(suffix))
            .collect();
        match found.len() {
            1 => Ok(found.into_iter().next().expect("one")),
            n => bail!("{n} objects of kind {kind} named *{suffix}"),
        }
    }
}

impl Chart {
    /// Loads the chart in `dir`.
    pub fn load(dir: &Path) -> anyhow::Result<Chart> {
        let read =
            |p: &str| std::fs::read_to_string(dir.join(p)).with_context(|| format!("reading {p}"));
        let meta: Value = serde_yaml::from_str(&read("Chart.yaml")?)?;
        let values: Value = serde_yaml::from_str(&read("values.yaml")?)?;
        let schema: Value = serde_json::from_str(&read("values.schema.json")?)?;
        let mut sources = Vec::new();
        for entry in std::fs::read_dir(dir.join("templates"))? {
            let path = entry?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .context("file name")?
                .to_string();
            sources.push((name, std::fs::read_to_string(&path)?));
        }
        sources.sort();
        let templates = Templates::parse(sources.iter().map(|(n, s)| (n.as_str(), s.as_str())))?;
        let mut files = BTreeMap::new();
        read_files(dir, Path::new("files"), &mut files)?;
        Ok(Chart {
            meta,
            values,
            schema,
            files,
            templates,
        })
    }

    /// The chart's defaults with `overrides` merged in.
    pub fn values_with(&self, overrides: &Value) -> Value {
        let mut v = self.values.clone();
        gotmpl::merge(&mut v, overrides);
        v
    }

    /// Renders every template with the defaults plus `overrides`.
    pub fn render(
        &self,
        overrides: &Value,
        release: &str,
        namespace: &str,
    ) -> anyhow::Result<Rendered> {
        let mut root = gotmpl::root(self.values_with(overrides), release, namespace, &self.meta);
        root["Files"] = json!(self.files);
        let mut files = BTreeMap::new();
        for name in self.templates.names() {
            if name.starts_with('_') {
                continue;
            }
            files.insert(name.to_string(), self.templates.render(name, &root)?);
        }
        Ok(Rendered { files })
    }
}

/// Reads the files under `dir/rel` into `out`, keyed by their path relative to `dir`.
fn read_files(dir: &Path, rel: &Path, out: &mut BTreeMap<String, String>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir.join(rel))? {
        let path = rel.join(entry?.file_name());
        if dir.join(&path).is_dir() {
            read_files(dir, &path, out)?;
        } else {
            let text = std::fs::read_to_string(dir.join(&path))
                .with_context(|| format!("reading {}", path.display()))?;
            out.insert(path.to_string_lossy().into_owned(), text);
        }
    }
    Ok(())
}

/// Every option switched on, in the combinations that exclude each other.
pub fn overlays() -> Vec<(&'static str, Value)> {
    vec![
        ("defaults", json!({})),
        (
            "everything",
            json!({
                "commonLabels": {"team": "voice"},
                "imagePullSecrets": [{"name": "ghcr"}],
                "operator": {"replicas": 2, "podAnnotations": {"a": "b"}, "nodeSelector": {"k": "v"},
                             "tolerations": [{"key": "k", "operator": "Exists"}], "affinity": {"podAntiAffinity": {}}},
                "registrar": {
                    "replicas": 3,
                    "tls": {"enabled": true, "certManager": {"enabled": true,
                            "issuerRef": {"name": "letsencrypt", "kind": "ClusterIssuer"},
                            "dnsNames": ["sip.example.com"]}},
                    "service": {"type": "LoadBalancer", "loadBalancerIP": "192.0.2.1",
                                "loadBalancerSourceRanges": ["198.51.100.0/24"],
                                "nodePorts": {"udp": 30060, "tcp": 30060, "tls": 30061, "wss": 30443},
                                "annotations": {"metallb.universe.tf/allow-shared-ip": "sip"}},
                    "websocket": {"ws": true, "wss": true,
                                  "allowedOrigins": ["https://phone.example.com"]},
                    "autoscaling": {"enabled": true},
                    "extraArgs": ["--auth-failure-limit", "20"],
                    "extraEnv": [{"name": "X", "value": "y"}],
                    "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                                   "whenUnsatisfiable": "ScheduleAnyway"}],
                    "serviceAccount": {"annotations": {"x": "y"}}
                },
                "metrics": {"serviceMonitor": {"enabled": true, "labels": {"release": "prom"}},
                            "grafanaDashboard": {"enabled": true, "namespace": "monitoring"},
                            "prometheusRule": {"enabled": true, "labels": {"release": "prom"}}},
                "redis": {"enabled": true}
            }),
        ),
        (
            "hostnetwork-nodeport-external-redis",
            json!({
                "registrar": {"hostNetwork": true, "service": {"type": "NodePort", "externalTrafficPolicy": "Cluster"},
                              "sip": {"udp": true, "tcp": false}, "podDisruptionBudget": {"enabled": false}},
                "redis": {"enabled": true, "url": "redis://redis.example:6379/1"},
                "metrics": {"podAnnotations": false}
            }),
        ),
        (
            "clusterip-no-operator-existing-accounts",
            json!({
                "fullnameOverride": "voice",
                "operator": {"enabled": false},
                "registrar": {"service": {"type": "ClusterIP"},
                              "serviceAccount": {"create": false, "name": "registrar"}}
            }),
        ),
    ]
}
