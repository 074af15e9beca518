//! The chart's RBAC against the code: every Kubernetes API call the operator's, registrar's and
//! provisioning service's source makes (found by `switchboard_tests::apicalls`, not listed by hand) is allowed by the
//! rendered ClusterRole/Role of its component, and every rule the chart grants is used by some
//! call (least privilege), at the narrowest scope the calls need. A list or watch that selects
//! its objects by name is held to `resourceNames`: the rule must name exactly the objects the
//! code may select, and a rule for any name is refused where every call is by name.

use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
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

/// The objects a component's by-name calls of a kind may select, from the code's own constants;
/// only the (component, kind) pairs are listed.
fn names_of(component: &str, kind: &str) -> BTreeSet<String> {
    match (component, kind) {
        // config/kube_source.rs watches each possible shard Secret.
        ("registrar", "Secret") => switchboard_crds::shards::secret_names().collect(),
        other => panic!(
            "the code lists or watches {other:?} by name, unknown to tests/tests/rbac.rs: add the names to names_of"
        ),
    }
}

/// One permission a call needs.
struct Need {
    perm: Perm,
    /// Needs a ClusterRole.
    cluster_wide: bool,
    /// Where the call is.
    at: String,
    /// The only objects it touches (a list or watch by name), else any.
    names: Option<BTreeSet<String>>,
}

/// What the calls of `component` need.
fn needed(component: &str, calls: &[Call]) -> Vec<Need> {
    let mut out = Vec::new();
    for c in calls {
        for (group, plural) in resources_of(&c.kind) {
            let res = match &c.subresource {
                Some(s) => format!("{plural}/{s}"),
                None => plural.clone(),
            };
            out.push(Need {
                perm: (group, res, c.verb.clone()),
                cluster_wide: c.scope != Scope::OwnNamespace,
                at: c.at.clone(),
                names: c.by_name.then(|| names_of(component, &c.kind)),
            });
        }
    }
    out
}

/// What a role grants for one permission: every object, and/or the objects named.
#[derive(Default, Debug)]
struct Grant {
    any: bool,
    names: BTreeSet<String>,
}

impl Grant {
    fn allows(&self, need: &Need) -> bool {
        self.any
            || need
                .names
                .as_ref()
                .is_some_and(|n| !n.is_empty() && n.is_subset(&self.names))
    }
}

/// What the role grants; nothing when there is no such role (the provisioning service has no
/// Role in the release namespace: a need it left out then shows as missing).
fn granted(rendered: &Rendered, kind: &str, name_suffix: &str) -> BTreeMap<Perm, Grant> {
    let mut out: BTreeMap<Perm, Grant> = BTreeMap::new();
    let Ok(role) = rendered.find(kind, name_suffix) else {
        return out;
    };
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
            rule.get("nonResourceURLs").is_none(),
            "rbac.rs does not model nonResourceURLs"
        );
        let names = rule.get("resourceNames").map(|_| list("resourceNames"));
        for g in list("apiGroups") {
            for r in list("resources") {
                for v in list("verbs") {
                    assert!(
                        g != "*" && r != "*" && v != "*",
                        "{kind}{name_suffix}: wildcard in {rule}"
                    );
                    let grant = out.entry((g.clone(), r.clone(), v)).or_default();
                    match &names {
                        Some(n) => grant.names.extend(n.iter().cloned()),
                        None => grant.any = true,
                    }
                }
            }
        }
    }
    out
}

/// Least privilege of one granted permission against the needs for it.
fn grant_problems(what: &str, perm: &Perm, grant: &Grant, needs: &[&Need]) -> Vec<String> {
    let mut problems = Vec::new();
    if grant.any && needs.iter().all(|n| n.names.is_some()) {
        problems.push(format!(
            "{what} {perm:?} allows every name, but every call selects by name: list resourceNames"
        ));
    }
    let used: BTreeSet<&String> = needs
        .iter()
        .flat_map(|n| n.names.iter().flatten())
        .collect();
    let unused: Vec<&String> = grant.names.iter().filter(|n| !used.contains(n)).collect();
    if !unused.is_empty() {
        problems.push(format!(
            "{what} {perm:?}: resourceNames no call selects: {unused:?}"
        ));
    }
    problems
}

/// Every way the rendered RBAC of `component` and its calls disagree.
fn problems(component: &str, calls: &[Call], rendered: &Rendered) -> Vec<String> {
    let suffix = format!("-{component}");
    let cluster = granted(rendered, "ClusterRole", &suffix);
    let own = granted(rendered, "Role", &suffix);
    let needs = needed(component, calls);
    assert!(!needs.is_empty(), "{component}: no API calls found at all");
    let mut problems = Vec::new();
    for need in &needs {
        let allows = |g: &BTreeMap<Perm, Grant>| g.get(&need.perm).is_some_and(|g| g.allows(need));
        let ok = allows(&cluster) || (!need.cluster_wide && allows(&own));
        if !ok {
            problems.push(format!(
                "missing: {:?} ({}{}) for the call at {}",
                need.perm,
                if need.cluster_wide {
                    "ClusterRole"
                } else {
                    "Role or ClusterRole"
                },
                match &need.names {
                    Some(n) => format!(", resourceNames {n:?}"),
                    None => String::new(),
                },
                need.at
            ));
        }
    }
    let needs_of =
        |perm: &Perm| -> Vec<&Need> { needs.iter().filter(|n| &n.perm == perm).collect() };
    for (perm, grant) in &cluster {
        let for_it = needs_of(perm);
        if for_it.is_empty() {
            problems.push(format!("unused ClusterRole rule: {perm:?}"));
        } else if !for_it.iter().any(|n| n.cluster_wide) {
            problems.push(format!(
                "{perm:?} is only needed in the release namespace: grant it in the Role"
            ));
        }
        problems.extend(grant_problems("ClusterRole", perm, grant, &for_it));
    }
    for (perm, grant) in &own {
        let for_it = needs_of(perm);
        if for_it.is_empty() {
            problems.push(format!("unused Role rule: {perm:?}"));
        } else if cluster.contains_key(perm) {
            problems.push(format!("Role rule {perm:?} repeats a ClusterRole rule"));
        }
        problems.extend(grant_problems("Role", perm, grant, &for_it));
    }
    problems
}

fn check(component: &str, calls: &[Call], rendered: &Rendered) {
    let problems = problems(component, calls, rendered);
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
fn provisioning_rbac_matches_its_api_calls() {
    let calls =
        scan_crate(&repo_root().join("provisioning/src")).expect("provisioning source scans");
    check(
        "provisioning",
        &calls,
        &render(with_provisioning(json!({}))),
    );
}

/// `overrides` with the provisioning service enabled (it is off by default).
fn with_provisioning(mut overrides: Value) -> Value {
    overrides["provisioning"]["enabled"] = json!(true);
    overrides["provisioning"]["sipServer"] = json!("sip.example.com");
    overrides
}

/// The check is not satisfied by any `resourceNames`: a Role for every Secret, one missing a
/// shard, or one naming another Secret is each refused.
#[test]
fn the_registrar_secret_names_are_held_exactly() {
    let calls = scan_crate(&repo_root().join("registrar/src")).expect("registrar source scans");
    let good = render(json!({}));
    let role = &good.files["registrar-rbac.yaml"];
    let last = format!("      - {}\n", switchboard_crds::shards::secret_name(63));
    assert!(role.contains(&last), "{role}");
    let every_secret = role
        .lines()
        .filter(|l| !l.contains("resourceNames") && !l.contains("switchboard-registrar-config-"))
        .collect::<Vec<_>>()
        .join("\n");
    let short = role.replace(&last, "");
    let foreign = role.replace(&last, &format!("{last}      - switchboard-registrar-tls\n"));
    for (what, text, expect) in [
        ("any name", every_secret, "list resourceNames"),
        ("a shard missing", short, "missing"),
        (
            "the TLS Secret named",
            foreign,
            "resourceNames no call selects",
        ),
    ] {
        let mut bad = render(json!({}));
        bad.files.insert("registrar-rbac.yaml".into(), text);
        let found = problems("registrar", &calls, &bad);
        assert!(
            found.iter().any(|p| p.contains(expect)),
            "{what}: {found:#?}"
        );
    }
}

#[test]
fn roles_are_bound_to_the_service_accounts_the_pods_run_as() {
    for overrides in [
        json!({}),
        json!({"operator": {"serviceAccount": {"name": "op"}}, "registrar": {"serviceAccount": {"create": false, "name": "reg"}}, "provisioning": {"serviceAccount": {"name": "prov"}}}),
    ] {
        let r = render(with_provisioning(overrides));
        for component in ["operator", "registrar", "provisioning"] {
            let suffix = format!("-{component}");
            let deploy = r.find("Deployment", &suffix).unwrap();
            let sa = &deploy.value["spec"]["template"]["spec"]["serviceAccountName"];
            for kind in ["ClusterRoleBinding", "RoleBinding"] {
                // The provisioning service needs no Role in the release namespace.
                let Ok(b) = r.find(kind, &suffix) else {
                    assert_eq!((component, kind), ("provisioning", "RoleBinding"));
                    continue;
                };
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
    let op = needed(
        "operator",
        &scan_crate(&repo_root().join("operator/src")).unwrap(),
    );
    let reg = needed(
        "registrar",
        &scan_crate(&repo_root().join("registrar/src")).unwrap(),
    );
    for (who, needs) in [("operator ", &op), ("registrar", &reg)] {
        for n in needs {
            println!(
                "{who} {:?} cluster-wide={} by-name={} at {}",
                n.perm,
                n.cluster_wide,
                n.names.is_some(),
                n.at
            );
        }
    }
    let has = |needs: &[Need], g: &str, r: &str, v: &str, cw: bool| {
        needs
            .iter()
            .any(|n| n.perm.0 == g && n.perm.1 == r && n.perm.2 == v && n.cluster_wide == cw)
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
    // The registrar reads its config Secrets by name, and no Secret otherwise.
    let shard_names: BTreeSet<String> = switchboard_crds::shards::secret_names().collect();
    for n in reg.iter().filter(|n| n.perm.1 == "secrets") {
        assert_eq!(
            n.names.as_ref(),
            Some(&shard_names),
            "{:?} at {}",
            n.perm,
            n.at
        );
    }
    assert!(has(&reg, "sip.switchboard.dev", "sipdevices", "list", true));
    assert!(has(
        &reg,
        "sip.switchboard.dev",
        "sipregistrations/status",
        "patch",
        true
    ));
}
