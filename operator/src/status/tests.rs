use super::*;
use crate::compile::{compile, LastGood};
use crate::index::{Change, Op};
use crate::samples::*;
use crate::validate::validate;

fn world() -> Index {
    let mut index = Index::synced("switchboard");
    index.apply(Change::Site(Op::Apply(site(
        "acme",
        "hq",
        "hq.acme.test",
        "1000-1999",
    ))));
    let d = at_site(
        device("acme", "lobby", "00:1a:2b:3c:4d:5e", "lobby", 1),
        "hq",
        "1000",
    );
    index.apply(Change::secret(Op::Apply(generated_secret(&d, "pw"))));
    index.apply(Change::device(Op::Apply(d)));
    index
}

fn updates(index: &Index, now: Timestamp) -> Vec<Update> {
    let v = validate(index);
    let c = compile(index, &v, &LastGood::new(), None);
    plan(index, &v, &c, now).collect()
}

fn apply_back(index: &mut Index, ups: &[Update]) {
    for u in ups {
        merge_into(index, u);
    }
}

#[test]
fn steady_state_writes_nothing_and_transitions_keep_their_time() {
    let mut index = world();
    let t0 = Timestamp::from_second(1_800_000_000).unwrap();
    let first = updates(&index, t0);
    assert_eq!(first.len(), 2);
    let dev = first.iter().find(|u| u.plural == "sipdevices").unwrap();
    assert_eq!(dev.body["status"]["conditions"][0]["status"], "True");
    assert_eq!(dev.body["status"]["effective"]["extension"], "1000");
    assert!(dev.body["status"]["sipUri"]
        .as_str()
        .unwrap()
        .ends_with("-lobby@hq.acme.test"));
    assert_eq!(
        dev.body["status"]["credentialsSecret"],
        "lobby-sip-credentials"
    );
    assert_eq!(dev.events[0].reason, "Accepted");
    apply_back(&mut index, &first);
    // Nothing changed: nothing to write, no events, whatever the time.
    let t1 = Timestamp::from_second(1_800_000_100).unwrap();
    assert!(updates(&index, t1).is_empty());
    // The device becomes invalid: one write, one Warning, and the transition time moves.
    let mut d = (*index.devices[&ObjectKey::new("acme", "lobby")]).clone();
    d.spec.site.as_mut().unwrap().extension = "5000".into();
    d.generation = Some(2);
    index.apply(Change::Device(Op::Apply(d)));
    let ups = updates(&index, t1);
    let dev = ups.iter().find(|u| u.plural == "sipdevices").unwrap();
    let accepted = &dev.body["status"]["conditions"][0];
    assert_eq!(accepted["status"], "False");
    assert_eq!(accepted["reason"], "Invalid");
    assert_eq!(accepted["observedGeneration"], 2);
    assert!(accepted["lastTransitionTime"]
        .as_str()
        .unwrap()
        .starts_with("2027"));
    assert_eq!(dev.events.len(), 1);
    assert!(dev.events[0].warning && dev.events[0].reason == "Invalid");
    apply_back(&mut index, &ups);
    assert!(updates(&index, t1).is_empty());
}

#[test]
fn site_counts_registered_devices_from_the_registrar() {
    let mut index = world();
    let mut d = at_site(
        device("acme", "lobby", "00:1a:2b:3c:4d:5e", "lobby", 1),
        "hq",
        "1000",
    );
    d.status = Some(switchboard_crds::SipDeviceStatus {
        registration: Some(switchboard_crds::device::RegistrationStatus {
            state: switchboard_crds::device::RegistrationState::Registered,
            ..Default::default()
        }),
        ..Default::default()
    });
    index.apply(Change::device(Op::Apply(d)));
    let ups = updates(&index, Timestamp::from_second(1_800_000_000).unwrap());
    let site = ups.iter().find(|u| u.plural == "sites").unwrap();
    assert_eq!(site.body["status"]["devices"], 1);
    assert_eq!(site.body["status"]["registered"], 1);
}
