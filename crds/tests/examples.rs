//! Every example manifest parses into the Rust types and passes validation; every deliberately
//! broken one is refused, blaming the field its annotation names.

use std::path::{Path, PathBuf};
use switchboard_crds::documents::{parse, Document};

const EXPECTED_ERROR: &str = "test.switchboard.dev/expected-error";

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(yaml_files(&path));
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            files.push(path);
        }
    }
    files.sort();
    files
}

fn documents(path: &Path) -> Vec<Document> {
    let text = std::fs::read_to_string(path).unwrap();
    parse(&text)
        .into_iter()
        .map(|d| d.unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .collect()
}

/// Manifests of resources, not the registrar's own config or kustomize/Argo files.
fn is_resource_manifest(path: &Path) -> bool {
    let rel = path.strip_prefix(examples_dir()).unwrap();
    !rel.starts_with("registrar") && !rel.starts_with("invalid")
}

#[test]
fn every_example_is_valid() {
    let mut kinds = std::collections::BTreeMap::<&str, usize>::new();
    for path in yaml_files(&examples_dir())
        .into_iter()
        .filter(|p| is_resource_manifest(p))
    {
        for doc in documents(&path) {
            let errors = doc.validate();
            assert!(
                errors.is_empty(),
                "{}: {}: {errors:?}",
                path.display(),
                doc.describe()
            );
            let kind = match doc {
                Document::Site(_) => "Site",
                Document::SipDevice(_) => "SipDevice",
                Document::CallPattern(_) => "CallPattern",
                Document::SipRegistration(_) => "SipRegistration",
                Document::Other { .. } => "other",
            };
            *kinds.entry(kind).or_default() += 1;
        }
    }
    // The scenarios of the API: 1 site, 5 devices, 3 dial plans, 4 upstream registrations.
    assert!(kinds.get("Site").copied().unwrap_or(0) >= 1, "{kinds:?}");
    assert!(
        kinds.get("SipDevice").copied().unwrap_or(0) >= 5,
        "{kinds:?}"
    );
    assert!(
        kinds.get("CallPattern").copied().unwrap_or(0) >= 2,
        "{kinds:?}"
    );
    assert!(
        kinds.get("SipRegistration").copied().unwrap_or(0) >= 4,
        "{kinds:?}"
    );
}

#[test]
fn broken_examples_are_refused_naming_the_field() {
    let path = examples_dir().join("invalid/broken.yaml");
    let docs = documents(&path);
    assert!(docs.len() >= 4);
    for doc in docs {
        let expected = doc
            .annotations()
            .and_then(|a| a.get(EXPECTED_ERROR))
            .unwrap_or_else(|| panic!("{} lacks {EXPECTED_ERROR}", doc.describe()))
            .clone();
        let errors = doc.validate();
        assert!(
            errors.iter().any(|e| e.field == expected),
            "{}: expected an error on {expected}, got {errors:?}",
            doc.describe()
        );
    }
}

#[test]
fn compact_and_structured_dial_plans_agree() {
    let docs = documents(&examples_dir().join("dialplans/callpatterns.yaml"));
    let plans: Vec<_> = docs
        .iter()
        .filter_map(|d| match d {
            Document::CallPattern(p) => Some(p.spec.dial_rules()),
            _ => None,
        })
        .collect();
    let normalize = switchboard_crds::dialrules::DialPlan::compile(&plans[0]).unwrap();
    let mobile = switchboard_crds::dialrules::DialPlan::compile(&plans[1]).unwrap();
    assert_eq!(normalize.apply("8 (926) 123-45-67").unwrap(), "79261234567");
    assert_eq!(mobile.apply("8 (926) 123-45-67").unwrap(), "79261234567");
    assert!(mobile.apply("8 (495) 123-45-67").is_err());
}

#[cfg(feature = "cel")]
#[test]
fn cel_rules_catch_what_the_schema_promises() {
    // Two assignments: the CEL rule itself, without the Rust validation.
    let docs = documents(&examples_dir().join("invalid/broken.yaml"));
    let two = docs
        .iter()
        .find(|d| d.describe() == "SipDevice/two-assignments")
        .unwrap();
    let Document::SipDevice(device) = two else {
        unreachable!()
    };
    let err = kube::core::cel::validate_cel(device.as_ref()).unwrap_err();
    assert!(
        format!("{err:?}").contains("exactly one of site or user"),
        "{err:?}"
    );
    // A valid device passes the CEL rules.
    let lobby = documents(&examples_dir().join("site-common-area/lobby-phone.yaml"));
    let Document::SipDevice(device) = &lobby[0] else {
        panic!("not a device")
    };
    kube::core::cel::validate_cel(device.as_ref()).unwrap();
}
