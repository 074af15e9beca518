//! The chart's CRDs, plain and templated, are exactly what the Rust types generate.

use std::path::Path;
use switchboard_crds::manifests::{
    render_crd_template, render_crds, CHART_CRD_DIR, CHART_CRD_TEMPLATE,
};

#[test]
fn checked_in_crds_are_fresh() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for (name, yaml) in render_crds() {
        let on_disk =
            std::fs::read_to_string(root.join(CHART_CRD_DIR).join(&name)).unwrap_or_default();
        assert!(
            on_disk == yaml,
            "{CHART_CRD_DIR}/{name} is stale: run `cargo run -p switchboard-crds --bin crdgen`"
        );
    }
    let template = std::fs::read_to_string(root.join(CHART_CRD_TEMPLATE)).unwrap_or_default();
    assert!(
        template == render_crd_template(),
        "{CHART_CRD_TEMPLATE} is stale: run `cargo run -p switchboard-crds --bin crdgen`"
    );
    // Helm's own crds/ folder would install the CRDs a second time, and never upgrade them.
    assert!(
        !root.join("charts/switchboard/crds").exists(),
        "charts/switchboard/crds/ is back: the chart templates its CRDs"
    );
}

#[test]
fn every_crd_has_status_short_name_and_columns() {
    for (name, yaml) in render_crds() {
        let crd: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
        let version = &crd["spec"]["versions"][0];
        assert_eq!(crd["spec"]["scope"], "Namespaced", "{name}");
        assert_eq!(crd["spec"]["group"], "sip.switchboard.dev", "{name}");
        assert_eq!(version["name"], "v1alpha1", "{name}");
        assert!(
            version["subresources"]["status"].is_mapping(),
            "{name}: no status subresource"
        );
        assert!(
            version["additionalPrinterColumns"]
                .as_sequence()
                .is_some_and(|c| c.len() >= 3),
            "{name}: printer columns"
        );
        assert!(
            crd["spec"]["names"]["shortNames"]
                .as_sequence()
                .is_some_and(|s| !s.is_empty()),
            "{name}: short names"
        );
    }
}

/// The API server refuses a CRD whose schema is not structural; these are the usual ways a
/// derived schema breaks that.
#[test]
fn schemas_are_structural() {
    fn walk(path: &str, v: &serde_yaml::Value, problems: &mut Vec<String>) {
        match v {
            serde_yaml::Value::Mapping(m) => {
                for key in ["oneOf", "anyOf", "allOf"] {
                    if let Some(alts) = m.get(key) {
                        let typed = alts.as_sequence().is_some_and(|alts| {
                            alts.iter()
                                .all(|a| a.get("type").is_none() && a.get("properties").is_none())
                        });
                        if !typed || m.get("type").is_none() {
                            problems.push(format!("{path}: {key} without a type beside it"));
                        }
                    }
                }
                if m.contains_key("x-kubernetes-preserve-unknown-fields") {
                    problems.push(format!("{path}: x-kubernetes-preserve-unknown-fields"));
                }
                if m.contains_key("$ref") {
                    problems.push(format!("{path}: $ref"));
                }
                if m.get("properties").is_some() && m.get("type").is_none() {
                    problems.push(format!("{path}: properties without type"));
                }
                for (k, child) in m {
                    walk(
                        &format!("{path}.{}", k.as_str().unwrap_or("?")),
                        child,
                        problems,
                    );
                }
            }
            serde_yaml::Value::Sequence(s) => {
                for (i, child) in s.iter().enumerate() {
                    walk(&format!("{path}[{i}]"), child, problems);
                }
            }
            _ => {}
        }
    }
    for (name, yaml) in render_crds() {
        let crd: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
        let mut problems = Vec::new();
        walk(
            name.as_str(),
            &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"],
            &mut problems,
        );
        assert!(problems.is_empty(), "{problems:#?}");
    }
}

#[test]
fn cel_rules_are_in_the_schema() {
    let all: String = render_crds().into_iter().map(|(_, y)| y).collect();
    for rule in [
        "!(has(self.site) && has(self.user))",
        "transport and port disagree",
        "give either spec.rules or spec.compact",
        "minExpires <= defaultExpires",
    ] {
        assert!(all.contains(rule), "missing CEL rule {rule:?}");
    }
}
