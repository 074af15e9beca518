//! The chart's CRDs and the shipped examples on a real API server: the CRDs are accepted and
//! Established (structural schema, CEL within its cost limits), every example folder applies on
//! its own to an empty namespace and the operator accepts every object in it, and every
//! deliberately broken object is refused by the API server naming the field, or — where only
//! the operator can tell (a regex that does not compile) — gets `Accepted=False` naming it.

use serde_json::Value;
use std::time::Duration;
use switchboard_testkit::controlplane::ControlPlane;
use switchboard_testkit::examples::{documents, examples_dir, scenario_folders};
use switchboard_testkit::wait_until_within;
use switchboard_tests::installation::{self, Installation};
use switchboard_tests::resources::{condition, get};

const LIMIT: Duration = Duration::from_secs(30);
const EXPECTED_ERROR: &str = "test.switchboard.dev/expected-error";
const NAMESPACE: &str = "acme";

fn is_switchboard(doc: &Value) -> bool {
    doc["apiVersion"]
        .as_str()
        .is_some_and(|v| v.starts_with("sip.switchboard.dev/"))
}

/// Waits until the operator has accepted every Switchboard object of `docs`.
fn wait_accepted(cp: &ControlPlane, inst: &Installation, folder: &str, docs: &[Value]) {
    for doc in docs.iter().filter(|d| is_switchboard(d)) {
        let kind = doc["kind"].as_str().expect("kind").to_lowercase();
        let name = doc["metadata"]["name"].as_str().expect("name");
        let mut last = Value::Null;
        let accepted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wait_until_within(&format!("{folder}: {kind}/{name} Accepted"), LIMIT, || {
                last = get(cp, NAMESPACE, &kind, name)?;
                (condition(&last, "Accepted") == Some("True")).then_some(())
            })
        }));
        assert!(
            accepted.is_ok(),
            "{folder}: {kind}/{name} not accepted: {}\n{}",
            last["status"],
            inst.logs()
        );
    }
}

#[test]
fn every_example_folder_applies_on_its_own_and_is_accepted() {
    let Some((cp, inst)) = installation::shared() else {
        return;
    };
    let namespace = examples_dir().join("namespace.yaml");
    for dir in scenario_folders() {
        let folder = dir.file_name().unwrap().to_string_lossy().into_owned();
        cp.kubectl_ok(
            &[
                "apply",
                "-f",
                namespace.to_str().unwrap(),
                "-f",
                dir.to_str().unwrap(),
            ],
            None,
        );
        wait_accepted(cp, inst, &folder, &documents(&dir));
        cp.kubectl_ok(&["delete", "namespace", NAMESPACE, "--timeout=60s"], None);
    }
}

#[test]
fn broken_objects_are_refused_naming_the_field() {
    let Some((cp, inst)) = installation::shared() else {
        return;
    };
    let ns = "invalid-examples";
    installation::ensure_namespace(cp, ns);
    for mut doc in documents(&examples_dir().join("invalid")) {
        let field = doc["metadata"]["annotations"][EXPECTED_ERROR]
            .as_str()
            .expect("every broken object names its field")
            .to_string();
        doc["metadata"]["namespace"] = ns.into();
        let name = doc["metadata"]["name"].as_str().unwrap().to_string();
        let kind = doc["kind"].as_str().unwrap().to_lowercase();
        let applied = cp.kubectl_with_input(&["apply", "-f", "-"], &doc.to_string());
        if applied.status.success() {
            // Only the operator can tell: its condition names the field.
            let obj = wait_until_within(&format!("{kind}/{name} Accepted=False"), LIMIT, || {
                let o = get(cp, ns, &kind, &name)?;
                (condition(&o, "Accepted") == Some("False")).then_some(o)
            });
            let message = obj["status"]["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == "Accepted")
                .unwrap()["message"]
                .to_string();
            assert!(
                message.contains(&field),
                "{kind}/{name}: {message}\n{}",
                inst.logs()
            );
        } else {
            let refusal = String::from_utf8_lossy(&applied.stderr);
            assert!(
                refusal.contains(&field) && refusal.contains("is invalid"),
                "{kind}/{name}: the API server's refusal does not name {field}: {refusal}"
            );
        }
    }
}
