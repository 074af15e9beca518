//! The shipped `examples/` as tests read them: the scenario folders (those holding resources,
//! each meant for `kubectl apply -f examples/<folder>/`) and the YAML documents of a folder.

use crate::process::repo_root;
use serde::Deserialize;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// `examples/`.
pub fn examples_dir() -> PathBuf {
    repo_root().join("examples")
}

/// The folders holding resources: every folder of `examples/` but `invalid/` (broken on
/// purpose), `registrar/` (the standalone registrar's config) and `gitops/` (wrappers), sorted.
pub fn scenario_folders() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(examples_dir())
        .expect("reading examples/")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.is_dir())
        .filter(|p| {
            !["invalid", "registrar", "gitops"]
                .iter()
                .any(|n| p.ends_with(n))
        })
        .collect();
    dirs.sort();
    dirs
}

/// Every document of the folder's YAML files, in file order, as `kubectl apply -f DIR` reads
/// them (empty documents skipped).
pub fn documents(dir: &Path) -> Vec<Value> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("reading an examples folder")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut docs = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("reading a manifest");
        for de in serde_yaml::Deserializer::from_str(&text) {
            let doc = Value::deserialize(de).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            if !doc.is_null() {
                docs.push(doc);
            }
        }
    }
    docs
}
