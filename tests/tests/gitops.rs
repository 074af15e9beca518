//! The GitOps examples: `examples/gitops/kustomization.yaml` lists every valid example (a new
//! example not added there fails here), builds with `kubectl kustomize` where kubectl exists,
//! and every object it yields passes the same validation as `switchboard-validate`; the Argo CD
//! Applications point at paths that exist.

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use switchboard_tests::chart::{repo_root, yaml_documents};

fn kustomization() -> Value {
    let text =
        std::fs::read_to_string(repo_root().join("examples/gitops/kustomization.yaml")).unwrap();
    yaml_documents(&text).unwrap().remove(0)
}

fn example_manifests(dir: &Path, out: &mut BTreeSet<String>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            example_manifests(&p, out);
        } else if p.extension().is_some_and(|x| x == "yaml") {
            let rel = p
                .strip_prefix(repo_root().join("examples"))
                .unwrap()
                .display()
                .to_string();
            // Not resources: the registrar's own config, the GitOps files; refused on purpose: invalid/.
            if !rel.starts_with("registrar/")
                && !rel.starts_with("gitops/")
                && !rel.starts_with("invalid/")
            {
                out.insert(format!("../{rel}"));
            }
        }
    }
}

#[test]
fn the_kustomization_lists_every_valid_example() {
    let listed: BTreeSet<String> = kustomization()["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    let mut present = BTreeSet::new();
    example_manifests(&repo_root().join("examples"), &mut present);
    assert_eq!(
        listed, present,
        "examples/gitops/kustomization.yaml vs examples/"
    );
}

#[test]
fn the_kustomization_builds_into_valid_resources() {
    let out = Command::new("kubectl")
        .args(["kustomize", "--load-restrictor", "LoadRestrictionsNone"])
        .arg(repo_root().join("examples/gitops"))
        .output();
    let text = match out {
        Ok(o) if o.status.success() => String::from_utf8(o.stdout).unwrap(),
        Ok(o) => panic!(
            "kubectl kustomize failed: {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => {
            println!("SKIP kustomize build: kubectl is not available ({e}); the resource list is still checked");
            return;
        }
    };
    let objects = yaml_documents(&text).unwrap();
    let mut expected = 0;
    for r in kustomization()["resources"].as_array().unwrap() {
        let path = repo_root()
            .join("examples/gitops")
            .join(r.as_str().unwrap());
        expected += yaml_documents(&std::fs::read_to_string(path).unwrap())
            .unwrap()
            .len();
    }
    assert_eq!(
        objects.len(),
        expected,
        "every document of every listed file"
    );
    for o in &objects {
        assert_eq!(
            o["metadata"]["labels"]["app.kubernetes.io/part-of"],
            "switchboard-examples"
        );
    }
    let mut problems = Vec::new();
    for d in switchboard_crds::documents::parse(&text) {
        let d = d.expect("typed");
        problems.extend(
            d.validate()
                .into_iter()
                .map(|e| format!("{}: {e:?}", d.describe())),
        );
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn the_argo_cd_applications_point_at_real_paths() {
    let text = std::fs::read_to_string(repo_root().join("examples/gitops/argocd-application.yaml"))
        .unwrap();
    let apps = yaml_documents(&text).unwrap();
    assert_eq!(apps.len(), 2);
    for app in &apps {
        assert_eq!(app["kind"], "Application");
        assert_eq!(app["apiVersion"], "argoproj.io/v1alpha1");
        let path = app["spec"]["source"]["path"].as_str().unwrap();
        assert!(repo_root().join(path).is_dir(), "{path}");
    }
    assert_eq!(apps[0]["spec"]["source"]["path"], "charts/switchboard");
    let exclude = apps[1]["spec"]["source"]["directory"]["exclude"]
        .as_str()
        .unwrap();
    for dir in ["invalid", "registrar", "gitops"] {
        assert!(exclude.contains(&format!("{dir}/*")), "{exclude}");
    }
}
