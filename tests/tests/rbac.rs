//! The chart's RBAC against the code: every Kubernetes API call the operator's and registrar's
//! source makes (found by `switchboard_tests::apicalls`, not listed by hand) is allowed by the
//! rendered ClusterRole/Role of its component, and every rule the chart grants is used by some
//! call (least privilege), at the narrowest scope the calls need.

use serde_json::{json, Value};
use std::collections::BTreeSet;
use switchboard_tests::apicalls::{scan_crate, Call, Scope};
use switchboard_tests::chart::{chart_dir, repo_root, Chart, Rendered};

/// (API group, resource[/subresource], verb).
type Perm = (String, String, String);

fn resource<K: kube::Resource<DynamicType = ()>>() -> Vec<(String, String)> {
    vec![(K::group(&()).into_owned(), K::plural(&()).into_owned())]
}

/// The API resource(s) behind a kind the scanner reports. The mapping itself comes from the
/// types (`kube::Resource`), only the type names are listed.
fn resources_of(kind: &str) -> Vec<(String, String)> {
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::api::core::v1::Secret;
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use switchboard_crds::{CallPattern, SipDevice, SipRegistration, Site};
    match kind {
        "Secret" => resource::<Secret>(),
        "Lease" => resource::<Lease>(),
        "EndpointSlice" => resource::<EndpointSlice>(),
        "Site" => resource::<Site>(),
        "SipDevice" => resource::<SipDevice>(),
        "CallPattern" => resource::<CallPattern>(),
        "SipRegistration" => resource::<SipRegistration>(),
        "events.k8s.io/Event" => resource::<k8s_openapi::api::events::v1::Event>(),
        "DynamicObject:GROUP" => [
            resource::<Site>(),
            resource::<SipDevice>(),
            resource::<CallPattern>(),
            resource::<SipRegistration>(),
        ]
        .concat(),
        other => panic!(
            "the code calls the API for kind {other}, unknown to tests/tests/rbac.rs: add its type to resources_of"
        ),
    }
}

/// What the calls need: (permission, needs a ClusterRole, where).
fn needed(calls: &[Call]) -> Vec<(Perm, bool, String)> {
    let mut out = Vec::new();
    for c in calls {
        for (group, plural) in resources_of(&c.kind) {
            let res = match &c.subresource {
                Some(s) => format!("{plural}/{s}"),
                None => plural.clone(),
            };
            out.push((
                (group, res, c.verb.clone()),
                c.scope != Scope::OwnNamespace,
                c.at.clone(),
            ));
        }
    }
    out
}

fn granted(rendered: &Rendered, kind: &str, name_suffix: &str) -> BTreeSet<Perm> {
    let role = rendered.find(kind, name_suffix).expect("role rendered");
    let mut out = BTreeSet::new();
    for rule in role.value["rules"].as_array().expect("rules") {
        let list = |k: &str| -> Vec<String> {
            rule[k]
                .as_array()
                .unwrap_or(&Vec::new())
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect()
        };
        assert!(
            rule.get("resourceNames").is_none() && rule.get("nonResourceURLs").is_none(),
            "rbac.rs does not model resourceNames / nonResourceURLs"
        );
        for g in list("apiGroups") {
            for r in list("resources") {
                for v in list("verbs") {
                    assert!(
                        g != "*" && r != "*" && v != "*",
                        "{kind}{name_suffix}: wildcard in {rule}"
                    );
                    out.insert((g.clone(), r.clone(), v));
                }
            }
        }
    }
    out
}

fn check(component: &str, calls: &[Call], rendered: &Rendered) {
    let suffix = format!("-{component}");
    let cluster = granted(rendered, "ClusterRole", &suffix);
    let own = granted(rendered, "Role", &suffix);
    let needs = needed(calls);
    assert!(!needs.is_empty(), "{component}: no API calls found at all");
    let mut problems = Vec::new();
    for (perm, cluster_wide, at) in &needs {
        let ok = cluster.contains(perm) || (!cluster_wide && own.contains(perm));
        if !ok {
            problems.push(format!(
                "missing: {perm:?} ({}) for the call at {at}",
                if *cluster_wide {
                    "ClusterRole"
                } else {
                    "Role or ClusterRole"
                }
            ));
        }
    }
    for perm in &cluster {
        if !needs.iter().any(|(p, _, _)| p == perm) {
            problems.push(format!("unused ClusterRole rule: {perm:?}"));
        } else if !needs.iter().any(|(p, cw, _)| p == perm && *cw) {
            problems.push(format!(
                "{perm:?} is only needed in the release namespace: grant it in the Role"
            ));
        }
    }
    for perm in &own {
        if !needs.iter().any(|(p, _, _)| p == perm) {
            problems.push(format!("unused Role rule: {perm:?}"));
        } else if cluster.contains(perm) {
            problems.push(format!("Role rule {perm:?} repeats a ClusterRole rule"));
        }
    }
    assert!(
        problems.is_empty(),
        "{component} RBAC vs the code:\n  {}\n\ncalls found:\n  {}",
        problems.join("\n  "),
        calls
            .iter()
            .map(|c| format!("{c:?}"))
            .collect::<Vec<_>>()
            .join("\n  ")
    );
}

fn render(overrides: Value) -> Rendered {
    Chart::load(&chart_dir())
        .unwrap()
        .render(&overrides, "sb", "switchboard")
        .unwrap()
}

#[test]
fn operator_rbac_matches_its_api_calls() {
    let calls = scan_crate(&repo_root().join("operator/src")).expect("operator source scans");
    check("operator", &calls, &render(json!({})));
}

#[test]
fn registrar_rbac_matches_its_api_calls() {
    let calls = scan_crate(&repo_root().join("registrar/src")).expect("registrar source scans");
    check("registrar", &calls, &render(json!({})));
}

#[test]
fn roles_are_bound_to_the_service_accounts_the_pods_run_as() {
    for overrides in [
        json!({}),
        json!({"operator": {"serviceAccount": {"name": "op"}}, "registrar": {"serviceAccount": {"create": false, "name": "reg"}}}),
    ] {
        let r = render(overrides);
        for component in ["operator", "registrar"] {
            let suffix = format!("-{component}");
            let deploy = r.find("Deployment", &suffix).unwrap();
            let sa = &deploy.value["spec"]["template"]["spec"]["serviceAccountName"];
            for kind in ["ClusterRoleBinding", "RoleBinding"] {
                let b = r.find(kind, &suffix).unwrap();
                assert_eq!(&b.value["subjects"][0]["name"], sa, "{kind}{suffix}");
                assert_eq!(b.value["subjects"][0]["namespace"], "switchboard");
                let role_kind = kind.trim_end_matches("Binding");
                assert_eq!(b.value["roleRef"]["kind"], role_kind);
                let role = r.find(role_kind, &suffix).unwrap();
                assert_eq!(b.value["roleRef"]["name"], role.name());
            }
        }
    }
}

#[test]
fn the_scan_sees_the_calls_known_to_exist() {
    // A floor, so that a scanner that silently stops seeing calls fails here.
    let op = needed(&scan_crate(&repo_root().join("operator/src")).unwrap());
    let reg = needed(&scan_crate(&repo_root().join("registrar/src")).unwrap());
    for c in &op {
        println!("operator  {:?} cluster-wide={} at {}", c.0, c.1, c.2);
    }
    for c in &reg {
        println!("registrar {:?} cluster-wide={} at {}", c.0, c.1, c.2);
    }
    let has = |needs: &[(Perm, bool, String)], g: &str, r: &str, v: &str, cw: bool| {
        needs
            .iter()
            .any(|(p, c, _)| p.0 == g && p.1 == r && p.2 == v && *c == cw)
    };
    assert!(has(&op, "coordination.k8s.io", "leases", "update", false));
    assert!(has(&op, "", "secrets", "watch", true));
    assert!(has(&op, "", "secrets", "delete", false));
    assert!(has(
        &op,
        "sip.switchboard.dev",
        "sipdevices/status",
        "patch",
        true
    ));
    assert!(has(&op, "events.k8s.io", "events", "create", true));
    assert!(has(&reg, "", "secrets", "watch", false));
    assert!(has(&reg, "sip.switchboard.dev", "sipdevices", "list", true));
    assert!(has(
        &reg,
        "sip.switchboard.dev",
        "sipregistrations/status",
        "patch",
        true
    ));
}
