use super::*;
use crate::credentials;
use crate::index::{Change, Op};
use crate::samples::*;
use crate::validate::{validate, Reason};
use switchboard_crds::common::{Credentials, SecretRef};
use switchboard_crds::device::EffectiveSettings;

const NS: &str = "acme";
const DOMAIN: &str = "hq.acme.test";

fn key(name: &str) -> ObjectKey {
    ObjectKey::new(NS, name)
}

fn lobby() -> switchboard_crds::SipDevice {
    let mut d = at_site(
        device(NS, "lobby", "00:1a:2b:3c:4d:5e", "lobby", 1),
        "hq",
        "1000",
    );
    let sa = d.spec.assignment.as_mut().unwrap().site.as_mut().unwrap();
    sa.outbound_caller_id = Some("+74951234500".into());
    sa.call_patterns.add = vec!["mobile".into()];
    sa.call_patterns.remove = vec!["zero".into()];
    d
}

/// A site with two default patterns and a user, three devices of the three kinds, and their
/// generated Secrets.
fn world() -> Index {
    let mut index = Index::synced("switchboard");
    let mut hq = with_user(site(NS, "hq", DOMAIN, "1000-1999"), "alice", Some("1100"));
    hq.spec.default_outbound_caller_id = Some("+74951234567".into());
    hq.spec.call_patterns = vec!["normalize".into(), "zero".into()];
    index.apply(Change::Site(Op::Apply(hq)));
    for p in [
        pattern(NS, "normalize", r"[^+*#\w]= ^8=7"),
        pattern(NS, "zero", "^0$"),
        pattern(NS, "mobile", r"^79\d{9}$"),
    ] {
        index.apply(Change::Pattern(Op::Apply(p)));
    }
    for d in [
        lobby(),
        for_user(
            device(NS, "alice-desk", "00-1A-2B-3C-4D-60", "alice.desk", 2),
            "hq",
            "alice",
        ),
        device(NS, "spare", "001a2b3c4d70", "spare", 3),
    ] {
        add_device(&mut index, d);
    }
    index
}

fn add_device(index: &mut Index, d: switchboard_crds::SipDevice) {
    let pw = format!("pw-{}", d.metadata.name.as_deref().unwrap());
    index.apply(Change::secret(Op::Apply(generated_secret(&d, &pw))));
    index.apply(Change::device(Op::Apply(d)));
}

fn run(index: &Index) -> (crate::validate::Verdicts, Compiled) {
    let v = validate(index);
    let c = compile(index, &v, &LastGood::new(), None);
    (v, c)
}

fn first_problem(v: &crate::validate::Verdicts, name: &str) -> (Reason, String) {
    let p = &v.devices.get(&key(name)).expect("device has problems")[0];
    (p.reason, p.message.clone())
}

#[test]
fn world_is_valid() {
    let (v, c) = run(&world());
    assert!(
        v.devices.is_empty() && v.sites.is_empty() && v.patterns.is_empty(),
        "{v:?}"
    );
    assert_eq!(c.config.domains.len(), 1);
    assert_eq!(c.config.domains[0].devices.len(), 3);
    assert!(c.devices.values().all(|d| d.ready.is_ok()));
    assert_eq!(c.sites[&key("hq")].devices, 2);
}

#[test]
fn a_site_allowing_browser_phones_passes_ws_and_wss_to_the_registrar() {
    use switchboard_crds::common::Transport;
    let mut index = world();
    let mut hq = site(NS, "hq", DOMAIN, "1000-1999");
    hq.spec.registration.transports = vec![Transport::Udp, Transport::Wss, Transport::Ws];
    index.apply(Change::Site(Op::Apply(hq)));
    let (v, c) = run(&index);
    assert!(v.sites.is_empty(), "{v:?}");
    assert_eq!(
        c.config.domains[0].registration.transports,
        [Transport::Udp, Transport::Wss, Transport::Ws]
    );
}

#[test]
fn inheritance_site_defaults_device_overrides_pattern_add_remove() {
    let index = world();
    let (_, c) = run(&index);
    let eff = |name: &str| crate::effective::of_device(&index, &index.devices[&key(name)]);
    let lobby = &eff("lobby");
    assert_eq!(lobby.call_patterns, vec!["normalize", "mobile"]);
    assert_eq!(lobby.outbound_caller_id.as_deref(), Some("+74951234500"));
    assert_eq!(lobby.extension.as_deref(), Some("1000"));
    let alice = &eff("alice-desk");
    assert_eq!(alice.call_patterns, vec!["normalize", "zero"]);
    assert_eq!(alice.outbound_caller_id.as_deref(), Some("+74951234567"));
    assert_eq!(alice.extension.as_deref(), Some("1100"));
    assert_eq!(alice.user.as_deref(), Some("alice"));
    assert_eq!(eff("spare"), EffectiveSettings::default());
    // The config says the same as the status.
    let (_, dev) = c.config.domains[0]
        .devices
        .iter()
        .find(|d| d.id == "acme/lobby")
        .map(|d| ((), d))
        .unwrap();
    assert_eq!(dev.patterns, vec!["acme/normalize", "acme/mobile"]);
    assert_eq!(dev.caller_id.as_deref(), Some("+74951234500"));
    let ids: Vec<_> = c.config.patterns.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, vec!["acme/mobile", "acme/normalize", "acme/zero"]);
    assert_eq!(c.patterns[&key("zero")].used_by, 1);
    assert_eq!(c.patterns[&key("normalize")].used_by, 2);
}

#[test]
fn devices_get_ha1_never_the_password() {
    let index = world();
    let (v, c) = run(&index);
    let creds = &v.device_credentials[&key("lobby")];
    assert!(creds.username.ends_with("-lobby"));
    let (md5, sha) = switchboard_crds::config::ha1(&creds.username, DOMAIN, "pw-lobby");
    let (_, dev) = c.config.device(DOMAIN, &creds.username).unwrap();
    assert_eq!(
        (dev.ha1_md5.as_str(), dev.ha1_sha256.as_str()),
        (md5.as_str(), sha.as_str())
    );
    // And for phones that send the auth name as `user@domain`.
    let (md5, sha) = switchboard_crds::config::ha1b(&creds.username, DOMAIN, "pw-lobby");
    assert_eq!(
        (dev.ha1b_md5.as_deref(), dev.ha1b_sha256.as_deref()),
        (Some(md5.as_str()), Some(sha.as_str()))
    );
    let json = serde_json::to_string(&c.config).unwrap();
    assert!(!json.contains("pw-lobby"));
    assert_eq!(
        c.devices[&key("lobby")].sip_uri.as_deref(),
        Some(format!("sip:{}@{DOMAIN}", creds.username).as_str())
    );
}

#[test]
fn a_devices_own_limit_of_contacts_reaches_the_config() {
    let mut index = world();
    let mut d = lobby();
    d.spec.max_contacts = Some(2);
    index.apply(Change::device(Op::Apply(d)));
    let (v, c) = run(&index);
    let lobby = &v.device_credentials[&key("lobby")].username;
    assert_eq!(
        c.config.device(DOMAIN, lobby).unwrap().1.max_contacts,
        Some(2)
    );
    let others = &c.config.domains[0].devices;
    assert_eq!(
        others.iter().filter(|d| d.max_contacts.is_none()).count(),
        2
    );
}

#[test]
fn same_input_same_hash_whatever_the_order() {
    let a = world();
    let mut b = Index::synced("switchboard");
    let mut changes = Vec::new();
    changes.extend(
        a.devices
            .values()
            .rev()
            .map(|d| Change::Device(Op::Apply((**d).clone()))),
    );
    for d in a.devices.values() {
        let pw = format!("pw-{}", d.key.name);
        changes.push(Change::secret(Op::Apply(generated_secret_of(d, &pw))));
    }
    changes.extend(
        a.patterns
            .values()
            .rev()
            .map(|p| Change::Pattern(Op::Apply((**p).clone()))),
    );
    changes.extend(
        a.sites
            .values()
            .map(|s| Change::Site(Op::Apply((**s).clone()))),
    );
    for ch in changes {
        b.apply(ch);
    }
    let (ha, hb) = (run(&a).1.config.hash, run(&b).1.config.hash);
    assert_eq!(ha, hb);
    assert_eq!(run(&a).1.config, run(&a).1.config);
    // A new password is a new config.
    let lobby = a.devices[&key("lobby")].clone();
    b.apply(Change::secret(Op::Apply(generated_secret_of(
        &lobby, "rotated",
    ))));
    assert_ne!(run(&b).1.config.hash, ha);
}

/// The invariant behind every conflict test: adding a broken object leaves the config exactly
/// as it was.
fn assert_config_unchanged(before: &Index, after: &Index) {
    assert_eq!(run(before).1.config.hash, run(after).1.config.hash);
}

#[test]
fn duplicate_mac_later_device_loses() {
    let before = world();
    let mut after = before.clone();
    let dup = at_site(
        device(NS, "copy", "00:1A:2B:3C:4D:5E", "copy", 10),
        "hq",
        "1001",
    );
    add_device(&mut after, dup);
    let (v, c) = run(&after);
    let (reason, msg) = first_problem(&v, "copy");
    assert_eq!(reason, Reason::Conflict);
    assert!(
        msg.contains("00:1a:2b:3c:4d:5e") && msg.contains("acme/lobby"),
        "{msg}"
    );
    assert!(v.device_ok(&key("lobby")));
    assert_eq!(
        c.devices[&key("copy")].ready.as_ref().unwrap_err().reason,
        "NotAccepted"
    );
    assert_config_unchanged(&before, &after);
}

#[test]
fn mac_is_unique_per_namespace_only() {
    let mut index = world();
    index.apply(Change::Site(Op::Apply(site(
        "other",
        "hq",
        "hq.other.test",
        "1000-1999",
    ))));
    add_device(
        &mut index,
        at_site(
            device("other", "lobby", "00:1a:2b:3c:4d:5e", "lobby", 10),
            "hq",
            "1000",
        ),
    );
    let (v, _) = run(&index);
    assert!(v.devices.is_empty(), "{v:?}");
}

#[test]
fn duplicate_extension_later_device_loses_and_users_win() {
    let before = world();
    let mut after = before.clone();
    add_device(
        &mut after,
        at_site(
            device(NS, "second", "00:00:00:00:00:02", "second", 10),
            "hq",
            "1000",
        ),
    );
    add_device(
        &mut after,
        at_site(
            device(NS, "alices", "00:00:00:00:00:03", "alices", 0),
            "hq",
            "1100",
        ),
    );
    let (v, _) = run(&after);
    let (reason, msg) = first_problem(&v, "second");
    assert_eq!(reason, Reason::Conflict);
    assert!(
        msg.contains("extension 1000") && msg.contains("acme/lobby"),
        "{msg}"
    );
    let (_, msg) = first_problem(&v, "alices");
    assert!(msg.contains("user \"alice\""), "{msg}");
    assert!(v.device_ok(&key("lobby")));
    assert_config_unchanged(&before, &after);
}

#[test]
fn extension_outside_range_user_not_in_site_and_missing_references() {
    let before = world();
    let mut after = before.clone();
    add_device(
        &mut after,
        at_site(
            device(NS, "far", "00:00:00:00:00:04", "far", 10),
            "hq",
            "2000",
        ),
    );
    add_device(
        &mut after,
        for_user(
            device(NS, "carol", "00:00:00:00:00:05", "carol", 10),
            "hq",
            "carol",
        ),
    );
    add_device(
        &mut after,
        at_site(
            device(NS, "lost", "00:00:00:00:00:06", "lost", 10),
            "nowhere",
            "1",
        ),
    );
    let mut nopat = at_site(
        device(NS, "nopat", "00:00:00:00:00:07", "nopat", 10),
        "hq",
        "1500",
    );
    nopat
        .spec
        .assignment
        .as_mut()
        .unwrap()
        .site
        .as_mut()
        .unwrap()
        .call_patterns
        .add = vec!["ghost".into()];
    add_device(&mut after, nopat);
    let mut nosecret = device(NS, "nosecret", "00:00:00:00:00:08", "nosecret", 10);
    nosecret.spec.credentials = Some(Credentials {
        secret_ref: SecretRef {
            name: "missing".into(),
            password_key: None,
        },
    });
    after.apply(Change::device(Op::Apply(nosecret)));
    let (v, _) = run(&after);
    let (r, m) = first_problem(&v, "far");
    assert_eq!(r, Reason::Invalid);
    assert!(m.contains("outside") && m.contains("1000-1999"), "{m}");
    let (r, m) = first_problem(&v, "carol");
    assert_eq!(r, Reason::UnknownReference);
    assert!(m.contains("not a user of Site"), "{m}");
    assert!(first_problem(&v, "lost")
        .1
        .contains("Site \"nowhere\" not found"));
    assert!(first_problem(&v, "nopat")
        .1
        .contains("CallPattern \"ghost\" not found"));
    assert!(first_problem(&v, "nosecret")
        .1
        .contains("\"missing\" not found"));
    assert_config_unchanged(&before, &after);
}

#[test]
fn single_object_errors_come_from_the_crds_crate() {
    let before = world();
    let mut after = before.clone();
    add_device(
        &mut after,
        device(NS, "badmac", "00:1a:2b:3c:4d:zz", "badmac", 10),
    );
    let (v, _) = run(&after);
    let (r, m) = first_problem(&v, "badmac");
    assert_eq!(r, Reason::Invalid);
    assert!(m.starts_with("spec.macAddress:"), "{m}");
    assert_config_unchanged(&before, &after);
}

#[test]
fn duplicate_sip_user_per_domain() {
    let mut index = world();
    index.apply(Change::secret(Op::Apply(secret(
        NS,
        "shared",
        &[("username", "abc123-desk"), ("password", "pw")],
    ))));
    for (name, seq, mac) in [
        ("desk-a", 10, "00:00:00:00:00:0a"),
        ("desk-b", 11, "00:00:00:00:00:0b"),
    ] {
        let mut d = at_site(
            device(NS, name, mac, "desk", seq),
            "hq",
            &format!("12{seq}"),
        );
        d.spec.credentials = Some(Credentials {
            secret_ref: SecretRef {
                name: "shared".into(),
                password_key: None,
            },
        });
        index.apply(Change::device(Op::Apply(d)));
    }
    let (v, c) = run(&index);
    assert!(v.device_ok(&key("desk-a")));
    let (r, m) = first_problem(&v, "desk-b");
    assert_eq!(r, Reason::Conflict);
    assert!(
        m.contains("abc123-desk@hq.acme.test") && m.contains("acme/desk-a"),
        "{m}"
    );
    assert!(c.config.device(DOMAIN, "abc123-desk").is_some());
}

#[test]
fn duplicate_domain_later_site_loses_and_its_devices_wait() {
    let before = world();
    let mut after = before.clone();
    let mut copy = site(NS, "copy", DOMAIN, "2000-2999");
    copy.metadata = crate::samples::meta(NS, "copy", 100);
    after.apply(Change::Site(Op::Apply(copy)));
    add_device(
        &mut after,
        at_site(
            device(NS, "d2", "00:00:00:00:00:22", "d2", 10),
            "copy",
            "2000",
        ),
    );
    let (v, c) = run(&after);
    let p = &v.sites[&key("copy")][0];
    assert_eq!(p.reason, Reason::Conflict);
    assert!(p.message.contains("acme/hq"), "{}", p.message);
    assert!(v.device_ok(&key("d2")));
    assert_eq!(
        c.devices[&key("d2")].ready.as_ref().unwrap_err().reason,
        "SiteNotAccepted"
    );
    assert_config_unchanged(&before, &after);
}

#[test]
fn broken_pattern_keeps_its_last_accepted_version() {
    let index = world();
    let (v, good) = run(&index);
    let last_good: LastGood = good
        .config
        .patterns
        .iter()
        .map(|p| (p.id.clone(), p.clone()))
        .collect();
    let mut broken = index.clone();
    broken.apply(Change::Pattern(Op::Apply(pattern(
        NS,
        "mobile",
        "^79(unclosed",
    ))));
    let v2 = validate(&broken);
    assert!(!v2.pattern_ok(&key("mobile")));
    assert!(v2.patterns[&key("mobile")][0]
        .message
        .contains("spec.compact[0]"));
    let kept = compile(&broken, &v2, &last_good, None);
    assert_eq!(kept.config.hash, good.config.hash);
    assert!(kept.devices[&key("lobby")].ready.is_ok());
    // Without a last accepted version the devices using it wait, the others are untouched.
    let fresh = compile(&broken, &v2, &LastGood::new(), None);
    assert_eq!(
        fresh.devices[&key("lobby")]
            .ready
            .as_ref()
            .unwrap_err()
            .reason,
        "PatternNotAccepted"
    );
    assert!(fresh.devices[&key("alice-desk")].ready.is_ok());
    assert!(v.patterns.is_empty());
}

#[test]
fn unassigned_devices_register_in_every_domain_of_their_namespace() {
    let mut index = world();
    index.apply(Change::Site(Op::Apply(site(
        NS,
        "branch",
        "branch.acme.test",
        "2000-2999",
    ))));
    let (v, c) = run(&index);
    let user = &v.device_credentials[&key("spare")].username;
    assert!(c.config.device(DOMAIN, user).is_some());
    assert!(c.config.device("branch.acme.test", user).is_some());
    let lobby = &v.device_credentials[&key("lobby")].username;
    assert!(c.config.device("branch.acme.test", lobby).is_none());
}

#[test]
fn registrations_carry_the_password_and_resolved_upstream() {
    let mut index = world();
    index.apply(Change::secret(Op::Apply(secret(
        NS,
        "trunk",
        &[("password", "s3cret")],
    ))));
    let mut reg = registration(NS, "carrier", "sip:100@pbx.example.com", "trunk");
    reg.spec.proxy = Some("sip.example.com:5070;transport=tcp".into());
    index.apply(Change::Registration(Op::Apply(reg)));
    index.apply(Change::Registration(Op::Apply(registration(
        NS,
        "nopw",
        "sip:1@x.example.com",
        "absent",
    ))));
    let (v, c) = run(&index);
    assert_eq!(c.config.registrations.len(), 1);
    let r = &c.config.registrations[0];
    assert_eq!(
        (r.password.as_str(), r.host.as_str(), r.port),
        ("s3cret", "sip.example.com", 5070)
    );
    assert_eq!(r.transport, switchboard_crds::common::Transport::Tcp);
    assert_eq!(
        v.registrations[&key("nopw")][0].reason,
        Reason::UnknownReference
    );
}

#[test]
fn a_callback_carries_its_url_and_the_key_from_its_secret() {
    use switchboard_crds::registration::{CallbackSecretRef, RegistrationCallback};
    let mut index = world();
    index.apply(Change::secret(Op::Apply(secret(
        NS,
        "trunk",
        &[("password", "s3cret")],
    ))));
    index.apply(Change::secret(Op::Apply(secret(
        NS,
        "hook",
        &[("signing", "k3y\n")],
    ))));
    let with_callback = |name: &str, secret: &str| {
        let mut reg = registration(NS, name, "sip:100@pbx.example.com", "trunk");
        reg.spec.callback = Some(RegistrationCallback {
            url: "https://hooks.example.com/sip".into(),
            secret_ref: Some(CallbackSecretRef {
                name: secret.into(),
                key: Some("signing".into()),
            }),
        });
        reg
    };
    index.apply(Change::Registration(Op::Apply(with_callback(
        "signed", "hook",
    ))));
    index.apply(Change::Registration(Op::Apply(with_callback(
        "nokey", "absent",
    ))));
    let (v, c) = run(&index);
    assert_eq!(c.config.registrations.len(), 1);
    let cb = c.config.registrations[0].callback.as_ref().unwrap();
    assert_eq!(
        (cb.url.as_str(), cb.key.as_deref()),
        ("https://hooks.example.com/sip", Some("k3y"))
    );
    assert!(!format!("{cb:?}").contains("k3y"), "the key is not logged");
    let problem = &v.registrations[&key("nokey")][0];
    assert_eq!(problem.reason, Reason::UnknownReference);
    assert!(
        problem.message.starts_with("spec.callback.secretRef: ")
            && problem.message.contains("kubectl label secret absent"),
        "{}",
        problem.message
    );
}

#[test]
fn stored_prefix_wins_over_derived() {
    let mut index = world();
    let lobby = index.devices[&key("lobby")].clone();
    let mut s = generated_secret_of(&lobby, "pw");
    s.data.as_mut().unwrap().insert(
        "username".into(),
        k8s_openapi::ByteString(b"zz9zz9-old".to_vec()),
    );
    index.apply(Change::secret(Op::Apply(s)));
    let (v, _) = run(&index);
    assert_eq!(v.device_credentials[&key("lobby")].username, "zz9zz9-lobby");
    assert_eq!(
        credentials::device_sip_user(&lobby, None),
        format!(
            "{}lobby",
            credentials::derived_prefix(lobby.uid.as_deref().unwrap())
        )
    );
}
