//! The shipped examples against the operator's own checks, without a cluster: each folder of
//! `examples/` holding resources (not `invalid/`, `registrar/`, `gitops/`), alone in an empty
//! namespace, has every object accepted and in the compiled config, so it names nothing it does
//! not hold; and all folders at once have too, so none claims another's name, MAC, SIP user,
//! domain or extension.

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::Resource;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::BTreeMap;
use switchboard_crds::SipDevice;
use switchboard_operator::compile::{compile, LastGood, Ready};
use switchboard_operator::index::{Change, Index, Op};
use switchboard_operator::key::ObjectKey;
use switchboard_operator::samples;
use switchboard_operator::validate::{validate, Problems};
use switchboard_testkit::examples::{documents, scenario_folders};

/// A typed object with what the API server would add: a UID and a creation time, in order.
fn object<K: DeserializeOwned + Resource>(doc: &Value, seq: i64) -> K {
    let mut obj: K = serde_json::from_value(doc.clone())
        .unwrap_or_else(|e| panic!("{}: {e}", doc["metadata"]["name"]));
    let m = obj.meta_mut();
    let server = samples::meta(
        m.namespace.as_deref().unwrap(),
        m.name.as_deref().unwrap(),
        seq,
    );
    m.uid = server.uid;
    m.creation_timestamp = server.creation_timestamp;
    m.generation = server.generation;
    obj
}

/// A Secret as stored: `stringData` folded into `data`.
fn stored(mut s: Secret) -> Secret {
    let data = s.data.get_or_insert_with(BTreeMap::new);
    for (k, v) in s.string_data.take().unwrap_or_default() {
        data.insert(k, ByteString(v.into_bytes()));
    }
    s
}

/// An index of `docs`, with the Secrets the operator generates for devices without credentials.
fn index_of(docs: &[Value]) -> Index {
    let mut index = Index::synced("switchboard-system");
    for (seq, doc) in (0..).zip(docs) {
        let change = match doc["kind"].as_str().unwrap() {
            "Site" => Change::Site(Op::Apply(object(doc, seq))),
            "CallPattern" => Change::Pattern(Op::Apply(object(doc, seq))),
            "SipRegistration" => Change::Registration(Op::Apply(object(doc, seq))),
            "SipDevice" => {
                let d: SipDevice = object(doc, seq);
                if d.spec.credentials.is_none() {
                    let generated = samples::generated_secret(&d, "generated-password");
                    index.apply(Change::secret(Op::Apply(generated)));
                }
                Change::device(Op::Apply(d))
            }
            "Secret" => Change::secret(Op::Apply(stored(object(doc, seq)))),
            "Namespace" => continue,
            other => panic!("unexpected kind {other} in the examples"),
        };
        index.apply(change);
    }
    index
}

fn problems(what: &str, map: &Problems, out: &mut Vec<String>) {
    for (key, ps) in map {
        for p in ps {
            out.push(format!(
                "{what} {key}: {}: {}",
                p.reason.as_str(),
                p.message
            ));
        }
    }
}

fn not_ready<'a>(
    what: &str,
    outcomes: impl Iterator<Item = (&'a ObjectKey, &'a Ready)>,
    out: &mut Vec<String>,
) {
    for (key, ready) in outcomes {
        if let Err(nr) = ready {
            out.push(format!(
                "{what} {key} not ready: {}: {}",
                nr.reason, nr.message
            ));
        }
    }
}

/// What keeps the objects of `docs` from being accepted and published, if anything.
fn verdict(docs: &[Value]) -> Vec<String> {
    let index = index_of(docs);
    let verdicts = validate(&index);
    let mut out = Vec::new();
    problems("Site", &verdicts.sites, &mut out);
    problems("SipDevice", &verdicts.devices, &mut out);
    problems("CallPattern", &verdicts.patterns, &mut out);
    problems("SipRegistration", &verdicts.registrations, &mut out);
    let compiled = compile(&index, &verdicts, &LastGood::new(), None);
    not_ready(
        "Site",
        compiled.sites.iter().map(|(k, o)| (k, &o.ready)),
        &mut out,
    );
    not_ready(
        "SipDevice",
        compiled.devices.iter().map(|(k, o)| (k, &o.ready)),
        &mut out,
    );
    not_ready(
        "CallPattern",
        compiled.patterns.iter().map(|(k, o)| (k, &o.ready)),
        &mut out,
    );
    not_ready("SipRegistration", compiled.registrations.iter(), &mut out);
    out
}

#[test]
fn every_example_folder_is_accepted_on_its_own() {
    let folders = scenario_folders();
    assert!(folders.len() >= 7, "{folders:?}");
    for dir in folders {
        let docs = documents(&dir);
        assert!(!docs.is_empty(), "{}", dir.display());
        let problems = verdict(&docs);
        assert!(problems.is_empty(), "{}: {problems:#?}", dir.display());
    }
}

#[test]
fn all_example_folders_together_are_accepted() {
    let mut docs = Vec::new();
    let mut names = BTreeMap::new();
    for dir in scenario_folders() {
        for doc in documents(&dir) {
            let id = format!(
                "{}/{}",
                doc["kind"].as_str().unwrap(),
                doc["metadata"]["name"]
            );
            // One object in two folders would be two specs fighting over one name.
            if let Some(other) = names.insert(id.clone(), dir.clone()) {
                assert!(
                    doc["kind"] == "Namespace",
                    "{id} is in both {} and {}",
                    other.display(),
                    dir.display()
                );
                continue;
            }
            docs.push(doc);
        }
    }
    let problems = verdict(&docs);
    assert!(problems.is_empty(), "{problems:#?}");
}
