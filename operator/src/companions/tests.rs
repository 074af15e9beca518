use super::*;
use crate::index::{Change, Op};
use crate::samples::*;
use kube::ResourceExt;
use switchboard_crds::validation::validate_device;

const NS: &str = "acme";

fn keeping(mut site: Site) -> Site {
    site.spec.companion_devices = Some(CompanionDevices {
        receive_calls: true,
    });
    site
}

fn sales() -> Site {
    let s = site(NS, "sales", "sales.acme.test", "3000-3999");
    let s = with_user(with_user(s, "alice", Some("3100")), "Bob_Smith", None);
    keeping(s)
}

fn index_with(site: Site) -> Index {
    let mut index = Index::synced("switchboard");
    index.apply(Change::Site(Op::Apply(site)));
    index
}

fn applied(writes: &[CompanionWrite]) -> Vec<&SipDevice> {
    writes
        .iter()
        .filter_map(|w| match w {
            CompanionWrite::Apply { device, .. } => Some(&**device),
            _ => None,
        })
        .collect()
}

fn kind(w: &CompanionWrite) -> &'static str {
    match w {
        CompanionWrite::Apply { .. } => "apply",
        CompanionWrite::Delete { .. } => "delete",
        CompanionWrite::Conflict { .. } => "conflict",
    }
}

#[test]
fn each_listed_user_gets_a_valid_companion_owned_by_the_site() {
    let index = index_with(sales());
    let writes = plan(&index);
    let devices = applied(&writes);
    let names: Vec<_> = devices
        .iter()
        .map(|d| d.metadata.name.clone().unwrap())
        .collect();
    let bob = format!("sales-bob-smith-{}-companion", tag("Bob_Smith"));
    assert_eq!(names, ["sales-alice-companion".to_string(), bob]);
    for d in &devices {
        assert!(validate_device(&d.spec).is_empty(), "{:?}", d.spec);
        assert_eq!(d.labels()[COMPANION_OF_LABEL], "sales");
        let owner = &d.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str()),
            ("Site", "sales")
        );
        assert_eq!(owner.controller, Some(true));
        let user = d.spec.assignment.as_ref().unwrap().user.as_ref().unwrap();
        assert_eq!(user.site, "sales");
        assert!(user.receive_calls);
        assert!(d.spec.credentials.is_none(), "generated like any device's");
        assert!(d.spec.mac_address.starts_with("02:"));
    }
    assert_ne!(devices[0].spec.mac_address, devices[1].spec.mac_address);
    // The same inputs give the same devices.
    let again: Vec<_> = applied(&plan(&index)).into_iter().cloned().collect();
    assert_eq!(
        serde_json::to_value(&again).unwrap(),
        serde_json::to_value(devices).unwrap()
    );
}

#[test]
fn in_step_nothing_is_written_and_changes_are_followed() {
    let mut index = index_with(sales());
    for d in applied(&plan(&index)) {
        index.apply(Change::device(Op::Apply(d.clone())));
    }
    assert!(plan(&index).is_empty(), "{:?}", plan(&index));
    let keys = |w: &[CompanionWrite]| {
        w.iter()
            .map(|w| (kind(w), w.device().name.to_string()))
            .collect::<Vec<_>>()
    };

    // Alice opts out and Carol joins: Alice's goes, Carol's comes.
    let mut s = with_user(sales(), "carol", None);
    s.spec.users[0].companion_device = Some(false);
    index.apply(Change::Site(Op::Apply(s)));
    let writes = plan(&index);
    assert_eq!(
        keys(&writes),
        [
            ("apply", "sales-carol-companion".to_string()),
            ("delete", "sales-alice-companion".to_string())
        ]
    );
    for d in applied(&writes) {
        index.apply(Change::device(Op::Apply(d.clone())));
    }
    index.apply(Change::device(Op::Delete(device(
        NS,
        "sales-alice-companion",
        "02:00:00:00:00:01",
        "alice",
        0,
    ))));
    assert!(plan(&index).is_empty(), "{:?}", plan(&index));

    // Someone edits a companion's spec: it is put back.
    let carol = index.devices[&ObjectKey::new(NS, "sales-carol-companion")].clone();
    let mut edited = applied(&plan(&index_with(with_user(sales(), "carol", None))))[2].clone();
    assert_eq!(
        edited.metadata.name.as_deref(),
        Some("sales-carol-companion")
    );
    edited.spec.sip_user = "mine".into();
    index.apply(Change::device(Op::Apply(edited)));
    let writes = plan(&index);
    assert_eq!(
        keys(&writes),
        [("apply", "sales-carol-companion".to_string())]
    );
    assert_eq!(
        DeviceSpec::from(applied(&writes)[0].spec.clone()),
        carol.spec,
        "the Site's version comes back"
    );

    // The site stops keeping companions: every one goes.
    index.apply(Change::Site(Op::Apply(site(
        NS,
        "sales",
        "sales.acme.test",
        "3000-3999",
    ))));
    let writes = plan(&index);
    assert!(!writes.is_empty());
    assert!(writes
        .iter()
        .all(|w| matches!(w, CompanionWrite::Delete { .. })));
}

#[test]
fn a_device_of_that_name_that_is_not_the_sites_is_left_alone() {
    let mut index = index_with(sales());
    let theirs = device(NS, "sales-alice-companion", "00:1a:2b:3c:4d:99", "alice", 1);
    index.apply(Change::device(Op::Apply(theirs)));
    let writes = plan(&index);
    assert!(writes.iter().any(
        |w| matches!(w, CompanionWrite::Conflict { device, user, .. }
        if device.name.as_ref() == "sales-alice-companion" && user == "alice")
    ));
    // Never deleted either: it carries no label.
    assert!(!writes
        .iter()
        .any(|w| matches!(w, CompanionWrite::Delete { .. })));
}

#[test]
fn long_user_names_fit_the_sip_user() {
    let long = "a".repeat(64);
    let s = sip_user(&long);
    assert_eq!(s.len(), 32);
    assert!(s.starts_with(&"a".repeat(27)));
    assert_eq!(sip_user("alice"), "alice");
}
