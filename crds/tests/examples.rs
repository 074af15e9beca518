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
    // The scenarios of the API (each folder with the sites, plans and trunks it names): 6
    // sites, 6 devices, 6 dial plans, 5 upstream registrations.
    assert!(kinds.get("Site").copied().unwrap_or(0) >= 6, "{kinds:?}");
    assert!(
        kinds.get("SipDevice").copied().unwrap_or(0) >= 6,
        "{kinds:?}"
    );
    assert!(
        kinds.get("CallPattern").copied().unwrap_or(0) >= 6,
        "{kinds:?}"
    );
    assert!(
        kinds.get("SipRegistration").copied().unwrap_or(0) >= 5,
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

/// The first two dial plans of an example file: the compact form and its structured twin.
fn compact_and_structured(file: &str) -> [switchboard_crds::dialrules::DialPlan; 2] {
    let docs = documents(&examples_dir().join(file));
    let mut plans = docs.iter().filter_map(|d| match d {
        Document::CallPattern(p) => {
            Some(switchboard_crds::dialrules::DialPlan::compile(&p.spec.dial_rules()).unwrap())
        }
        _ => None,
    });
    [plans.next().unwrap(), plans.next().unwrap()]
}

#[test]
fn compact_and_structured_dial_plans_agree() {
    let [normalize, mobile] = compact_and_structured("site-common-area/callpatterns.yaml");
    assert_eq!(normalize.apply("8 (926) 123-45-67").unwrap(), "79261234567");
    assert_eq!(mobile.apply("8 (926) 123-45-67").unwrap(), "79261234567");
    assert!(mobile.apply("8 (495) 123-45-67").is_err());

    let [normalize, intl] = compact_and_structured("dialplans/callpatterns.yaml");
    assert_eq!(
        normalize.apply("00 44 (20) 7946-0958").unwrap(),
        "+442079460958"
    );
    assert_eq!(intl.apply("00 44 (20) 7946-0958").unwrap(), "+442079460958");
    assert_eq!(normalize.apply("1100").unwrap(), "1100");
    assert!(intl.apply("1100").is_err(), "not international");
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
