//! Pass tests against the fake API server: which calls a pass makes.

use super::fixtures::{self, Call};
use super::reconcile::Memory;
use crate::index::{Change, Index, Op};
use crate::samples::*;
use http::Method;
use k8s_openapi::api::core::v1::Secret;
use rand::rngs::StdRng;
use rand::SeedableRng;
use switchboard_crds::shards;

const NS: &str = "acme";

fn hq_index() -> Index {
    let mut index = Index::synced("switchboard");
    index.apply(Change::Site(Op::Apply(site(
        NS,
        "hq",
        "hq.acme.test",
        "1000-1999",
    ))));
    let lobby = at_site(
        device(NS, "lobby", "00:1a:2b:3c:4d:5e", "lobby", 1),
        "hq",
        "1000",
    );
    index.apply(Change::secret(Op::Apply(generated_secret(
        &lobby, "pw-lobby",
    ))));
    index.apply(Change::device(Op::Apply(lobby)));
    index
}

fn patches<'a>(calls: &'a [Call], path_part: &str) -> Vec<&'a Call> {
    calls
        .iter()
        .filter(|c| c.method == Method::PATCH && c.path().contains(path_part))
        .collect()
}

/// Event writes: a POST, or a PATCH when the Recorder folds a repeat into a series.
fn events(calls: &[Call]) -> Vec<&Call> {
    calls
        .iter()
        .filter(|c| c.path().contains("/apis/events.k8s.io/"))
        .collect()
}

fn shard_secrets(calls: &[Call]) -> Vec<Secret> {
    patches(calls, "/secrets/switchboard-registrar-config-")
        .iter()
        .map(|c| serde_json::from_value(c.body.clone()).unwrap())
        .collect()
}

#[tokio::test]
async fn new_device_gets_secret_conditions_and_published_config() {
    let (mut h, calls) = fixtures::harness();
    let mut index = hq_index();
    let mut memory = Memory::default();
    let mut rng = StdRng::seed_from_u64(7);
    h.settle(&mut memory, &mut index, &mut rng).await;
    calls.take();

    // A new device without credentials arrives.
    let desk = at_site(
        device(NS, "desk", "00:1a:2b:3c:4d:99", "desk", 5),
        "hq",
        "1001",
    );
    index.apply(Change::device(Op::Apply(desk)));
    let report = h.settle(&mut memory, &mut index, &mut rng).await;
    let log = calls.take();
    assert_eq!(report.credentials, 1);
    assert!(report.published);

    // 1. Its Secret: generated, owned by the device, username = prefix + suffix.
    let secret_calls = patches(&log, "/namespaces/acme/secrets/desk-sip-credentials");
    assert_eq!(secret_calls.len(), 1);
    assert!(secret_calls[0]
        .uri
        .contains("fieldManager=switchboard-operator"));
    let secret: Secret = serde_json::from_value(secret_calls[0].body.clone()).unwrap();
    let owner = &secret.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("SipDevice", "desk")
    );
    let data = secret.data.as_ref().unwrap();
    let user = String::from_utf8(data["username"].0.clone()).unwrap();
    let password = String::from_utf8(data["password"].0.clone()).unwrap();
    assert!(user.ends_with("-desk") && user.len() == 11, "{user}");
    assert_eq!(password.len(), 24);

    // 2. The published config contains it, with HA1 of that password, never the password.
    let config = shards::assemble(&shard_secrets(&log)).unwrap();
    let (_, dev) = config
        .device("hq.acme.test", &user)
        .expect("device published");
    let (md5, _) = switchboard_crds::config::ha1(&user, "hq.acme.test", &password);
    assert_eq!(dev.ha1_md5, md5);
    assert!(!serde_json::to_string(&config).unwrap().contains(&password));

    // 3. Its status: Accepted and Ready, SIP URI and Secret name, by server-side apply.
    let status = patches(&log, "/sipdevices/desk/status");
    assert_eq!(status.len(), 1);
    assert!(
        status[0].uri.contains("fieldManager=switchboard-operator")
            && status[0].uri.contains("force=true")
    );
    let st = &status[0].body["status"];
    assert_eq!(st["conditions"][0]["type"], "Accepted");
    assert_eq!(st["conditions"][0]["status"], "True");
    assert_eq!(st["conditions"][1]["type"], "Ready");
    assert_eq!(st["conditions"][1]["status"], "True");
    assert_eq!(st["sipUri"], format!("sip:{user}@hq.acme.test"));
    assert_eq!(st["credentialsSecret"], "desk-sip-credentials");
    // The site's count moved; the other device's status did not need a write.
    assert_eq!(
        patches(&log, "/sites/hq/status")[0].body["status"]["devices"],
        2
    );
    assert!(patches(&log, "/sipdevices/lobby/status").is_empty());

    // 4. Events: CredentialsGenerated, ConfigPublished, Accepted.
    let reasons: Vec<&str> = events(&log)
        .iter()
        .filter_map(|c| c.body["reason"].as_str())
        .collect();
    let published = events(&log)
        .iter()
        .any(|c| c.path().contains("switchboard-registrar-config-0"));
    assert!(
        published || reasons.contains(&"ConfigPublished"),
        "{reasons:?}"
    );
    for r in ["CredentialsGenerated", "Accepted"] {
        assert!(reasons.contains(&r), "{reasons:?}");
    }

    // 5. Nothing changed: the next pass makes no call at all.
    let report = h.settle(&mut memory, &mut index, &mut rng).await;
    assert_eq!(
        (report.credentials, report.published, report.statuses),
        (0, false, 0)
    );
    assert!(calls.take().is_empty());
}

#[tokio::test]
async fn invalid_device_gets_accepted_false_and_event_and_config_is_unchanged() {
    let (mut h, calls) = fixtures::harness();
    let mut index = hq_index();
    let mut memory = Memory::default();
    let mut rng = StdRng::seed_from_u64(7);
    h.settle(&mut memory, &mut index, &mut rng).await;
    let published = index.published_hash().unwrap();
    calls.take();

    // Same MAC as the lobby phone, created later, with its own credentials.
    let copy = at_site(
        device(NS, "copy", "00-1A-2B-3C-4D-5E", "copy", 9),
        "hq",
        "1002",
    );
    index.apply(Change::secret(Op::Apply(generated_secret(
        &copy, "pw-copy",
    ))));
    index.apply(Change::device(Op::Apply(copy)));
    let report = h.settle(&mut memory, &mut index, &mut rng).await;
    let log = calls.take();

    assert!(!report.published, "config of the others must not change");
    assert_eq!(index.published_hash().unwrap(), published);
    assert!(shard_secrets(&log).is_empty());
    let status = patches(&log, "/sipdevices/copy/status");
    assert_eq!(status.len(), 1);
    let accepted = &status[0].body["status"]["conditions"][0];
    assert_eq!(accepted["status"], "False");
    assert_eq!(accepted["reason"], "Conflict");
    assert!(accepted["message"]
        .as_str()
        .unwrap()
        .contains("SipDevice acme/lobby"));
    assert_eq!(status[0].body["status"]["conditions"][1]["status"], "False");
    let ev = events(&log);
    let warning = ev
        .iter()
        .find(|c| c.body["reason"] == "Invalid")
        .expect("Invalid event");
    assert_eq!(warning.body["type"], "Warning");
    assert_eq!(warning.body["regarding"]["name"], "copy");
    assert!(patches(&log, "/sipdevices/lobby/status").is_empty());

    // No event spam: the next pass is silent.
    h.settle(&mut memory, &mut index, &mut rng).await;
    assert!(calls.take().is_empty());
}

#[tokio::test]
async fn rotation_annotation_rotates_once_and_republishes() {
    let (mut h, calls) = fixtures::harness();
    let mut index = Index::synced("switchboard");
    index.apply(Change::Site(Op::Apply(site(
        NS,
        "hq",
        "hq.acme.test",
        "1000-1999",
    ))));
    let mut d = at_site(
        device(NS, "desk", "00:1a:2b:3c:4d:99", "desk", 5),
        "hq",
        "1001",
    );
    index.apply(Change::device(Op::Apply(d.clone())));
    let mut memory = Memory::default();
    let mut rng = StdRng::seed_from_u64(1);
    h.settle(&mut memory, &mut index, &mut rng).await;
    let before = index.published_hash().unwrap();
    calls.take();

    d.metadata.annotations = Some(
        [(
            crate::credentials::ROTATE_ANNOTATION.to_string(),
            "2026-01".to_string(),
        )]
        .into(),
    );
    index.apply(Change::device(Op::Apply(d)));
    let report = h.settle(&mut memory, &mut index, &mut rng).await;
    assert_eq!(report.credentials, 1);
    assert!(report.published);
    assert_ne!(index.published_hash().unwrap(), before);
    let log = calls.take();
    let reasons: Vec<&str> = events(&log)
        .iter()
        .map(|c| c.body["reason"].as_str().unwrap())
        .collect();
    assert!(reasons.contains(&"CredentialsRotated"), "{reasons:?}");
    // Done once.
    let report = h.settle(&mut memory, &mut index, &mut rng).await;
    assert_eq!(report.credentials, 0);
}
