use super::*;
use std::sync::Arc;
use switchboard_crds::config::{OutboundRegistration, PatternConfig, UserConfig};
use switchboard_crds::dialrules::parse_compact;
use switchboard_crds::site::CallRestrictions;

fn device(user: &str, assignment: AssignmentKind) -> DeviceConfig {
    DeviceConfig {
        id: format!("acme/{user}"),
        sip_user: user.into(),
        assignment,
        ..Default::default()
    }
}

fn config() -> RegistrarConfig {
    let mut desk = device("1001", AssignmentKind::Site);
    desk.extension = Some("1001".into());
    desk.patterns = vec!["acme/mobile".into(), "acme/local".into()];
    desk.restrictions = CallRestrictions {
        country_code: Some("7".into()),
        blocked_prefixes: vec!["7809".into()],
        ..Default::default()
    };
    let mut lobby = device("1002", AssignmentKind::Site);
    lobby.extension = Some("1002".into());
    lobby.caller_id = Some("+74950000002".into());
    let mut alice_phone = device("alice-mobile", AssignmentKind::User);
    alice_phone.user = Some("alice".into());
    alice_phone.receive_calls = true;
    let mut alice_tablet = device("alice-tablet", AssignmentKind::User);
    alice_tablet.user = Some("alice".into());
    alice_tablet.receive_calls = true;
    let mut bob_phone = device("bob-mobile", AssignmentKind::User);
    bob_phone.user = Some("bob".into());
    let spare = device("spare", AssignmentKind::Unassigned);
    let mut c = RegistrarConfig {
        format: 1,
        domains: vec![DomainConfig {
            domain: "acme.test".into(),
            site: "acme/hq".into(),
            extensions: "1000-1999".into(),
            default_caller_id: Some("+74950000000".into()),
            trusted_peers: vec!["192.0.2.0/24".into()],
            users: vec![
                UserConfig {
                    name: "alice".into(),
                    extension: Some("1100".into()),
                },
                UserConfig {
                    name: "bob".into(),
                    extension: None,
                },
            ],
            devices: vec![desk, lobby, alice_phone, alice_tablet, bob_phone, spare],
            ..Default::default()
        }],
        patterns: vec![
            PatternConfig {
                id: "acme/mobile".into(),
                rules: parse_compact(r"[^+*#\w]= ^8=7 ^7\d{10}$"),
                route: Some(PatternRoute {
                    extension: None,
                    user: None,
                    registration: Some("carrier".into()),
                }),
            },
            PatternConfig {
                id: "acme/local".into(),
                rules: parse_compact(r"^0(\d{4})$=$1"),
                route: None,
            },
        ],
        registrations: vec![OutboundRegistration {
            id: "acme/carrier".into(),
            username: "trunk-in".into(),
            target: Some(RegistrationTarget {
                device: None,
                site: Some("hq".into()),
                extension: Some("1002".into()),
                user: None,
            }),
            ..Default::default()
        }],
        ..Default::default()
    };
    c.canonicalize();
    c
}

fn table() -> RoutingTable {
    RoutingTable::new(Arc::new(config()), 1)
}

fn from(user: &'static str) -> Caller<'static> {
    Caller::Device {
        domain: "acme.test",
        sip_user: user,
    }
}

#[test]
fn extension_in_the_same_site() {
    let d = table().route(from("1001"), "1002");
    assert_eq!(
        d.route,
        Route::Extension {
            extension: "1002".into(),
            devices: vec!["acme/1002".into()]
        }
    );
    assert_eq!(d.number, "1002");
    assert_eq!(d.caller_id.as_deref(), Some("+74950000000"), "site default");
    let d = table().route(from("1002"), "1001");
    assert_eq!(d.caller_id.as_deref(), Some("+74950000002"), "device's own");
}

#[test]
fn user_by_name_or_extension_rings_receiving_companion_devices() {
    let want = Route::User {
        user: "alice".into(),
        devices: vec!["acme/alice-mobile".into(), "acme/alice-tablet".into()],
    };
    assert_eq!(table().route(from("1001"), "alice").route, want);
    assert_eq!(table().route(from("1001"), "1100").route, want);
    assert!(matches!(
        table().route(from("1001"), "bob").route,
        Route::Refused { status: 480, .. }
    ));
}

#[test]
fn pattern_transforms_and_routes_to_the_trunk() {
    for dialled in [
        "8 (926) 123-45-67",
        "8%20(926)%20123-45-67",
        "8(926)123-45-67",
    ] {
        let d = table().route(from("1001"), dialled);
        assert_eq!(
            d.route,
            Route::Trunk {
                registration: "acme/carrier".into(),
                number: "79261234567".into()
            },
            "{dialled}"
        );
        assert_eq!(d.number, "79261234567");
        assert_eq!(d.pattern.as_deref(), Some("acme/mobile"));
    }
}

#[test]
fn pattern_without_route_resolves_in_the_site() {
    let d = table().route(from("1001"), "01002");
    assert_eq!(d.number, "1002");
    assert!(matches!(d.route, Route::Extension { .. }), "{d:?}");
}

#[test]
fn restrictions_refuse_with_the_reason() {
    let d = table().route(from("1001"), "8 809 123 45 67");
    match d.route {
        Route::Refused { status, reason } => {
            assert_eq!(status, 403);
            assert!(
                reason.contains("7809") && reason.contains("blocked"),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn unassigned_caller_and_callee() {
    let d = table().route(from("spare"), "1002");
    assert_eq!(
        d.route,
        Route::Refused {
            status: 403,
            reason: "Device is unassigned".into()
        }
    );
    let d = table().route(from("1001"), "spare");
    assert_eq!(
        d.route,
        Route::Refused {
            status: 480,
            reason: "Device is unassigned".into()
        }
    );
}

#[test]
fn unknown_numbers_are_not_found() {
    assert_eq!(table().route(from("1001"), "4242").route, Route::NotFound);
    // 1002 has no patterns: an outside number is unknown to it.
    assert_eq!(
        table().route(from("1002"), "89261234567").route,
        Route::NotFound
    );
}

#[test]
fn trusted_peers_and_upstream_calls() {
    let t = table();
    assert!(t.trusted_domain("192.0.2.9".parse().unwrap(), "acme.test"));
    assert!(!t.trusted_domain("198.51.100.1".parse().unwrap(), "acme.test"));
    assert_eq!(
        t.any_trusting_domain("::ffff:192.0.2.7".parse().unwrap()),
        Some("acme.test")
    );
    let d = t.route(
        Caller::Peer {
            domain: "acme.test",
        },
        "1001",
    );
    assert!(matches!(d.route, Route::Extension { .. }));
    assert_eq!(t.registration_for_user("trunk-in"), Some("acme/carrier"));
    let d = t.route(
        Caller::Upstream {
            registration: "acme/carrier",
        },
        "trunk-in",
    );
    assert_eq!(
        d.route,
        Route::Extension {
            extension: "1002".into(),
            devices: vec!["acme/1002".into()]
        }
    );
}

#[test]
fn unescape_keeps_bad_escapes() {
    assert_eq!(unescape("8%20(926)"), "8 (926)");
    assert_eq!(unescape("100%"), "100%");
    assert_eq!(unescape("%zz1"), "%zz1");
}
