//! The operator in production, on a real control plane: an idle leader runs no passes; of two
//! operators exactly one leads; a leader stopped (SIGSTOP) past its renew deadline is replaced
//! and, once it runs again, writes nothing; a leader that gets SIGTERM releases the Lease so the
//! other leads within seconds; a namespace that refuses the operator's writes holds up nobody
//! else.

use std::time::{Duration, Instant};
use switchboard_testkit::baresip::{Account, Baresip};
use switchboard_testkit::controlplane::ControlPlane;
use switchboard_testkit::{http_get, metric_sum, wait_until_within};
use switchboard_tests::installation::{self, ensure_namespace, Installation};
use switchboard_tests::resources::{
    accepted_device, condition, device_manifest, get, site_manifest, wait_registration_state, LIMIT,
};

fn metric(port: u16, name: &str) -> f64 {
    http_get(port, "/metrics").map_or(f64::NAN, |(_, body)| metric_sum(&body, name))
}

fn leads(port: u16) -> bool {
    metric(port, "switchboard_operator_leader") == 1.0
}

/// What an operator has written: status writes and configs published.
fn writes(port: u16) -> (f64, f64) {
    (
        metric(port, "switchboard_operator_status_writes_total"),
        metric(port, "switchboard_operator_config_generation"),
    )
}

/// The phases share one operator, so they run in order in one test: the idle minute must not
/// see another phase's passes.
#[test]
fn the_operator_in_production() {
    let Some((cp, inst)) = installation::shared() else {
        return;
    };
    idle_operator_runs_no_passes(cp, inst);
    a_namespace_that_refuses_secret_writes_blocks_only_itself(cp, inst);
    one_leader_fenced_takeover_and_handover_on_sigterm(cp, inst);
}

fn idle_operator_runs_no_passes(cp: &ControlPlane, inst: &Installation) {
    let ns = "leader";
    ensure_namespace(cp, ns);
    cp.kubectl_ok(
        &["apply", "-f", "-"],
        Some(&site_manifest(ns, "hq.leader.test")),
    );
    wait_until_within("the site accepted", LIMIT, || {
        let s = get(cp, ns, "site", "hq")?;
        (condition(&s, "Accepted") == Some("True")).then_some(())
    });

    // The operator's own writes come back as watch events and cause a pass or two; settled
    // once a few seconds go by without one.
    let passes = wait_until_within("the operator to settle", LIMIT, || {
        let before = inst.operator_passes();
        std::thread::sleep(Duration::from_secs(3));
        (inst.operator_passes() == before).then_some(before)
    });
    // Idle: renewals every 2 s, no passes for a minute.
    std::thread::sleep(Duration::from_secs(60));
    assert_eq!(
        inst.operator_passes(),
        passes,
        "an idle operator ran passes"
    );
}

fn one_leader_fenced_takeover_and_handover_on_sigterm(cp: &ControlPlane, inst: &Installation) {
    let ns = "leader";
    let (mut second, second_http) = inst.another_operator(cp, "operator-1");
    wait_until_within("operator-1 to be ready", LIMIT, || {
        http_get(second_http, "/readyz").filter(|(s, _)| *s == 200)
    });
    assert!(leads(inst.operator_http) && !leads(second_http));

    // A change the leader has seen but not yet acted on, then the leader freezes.
    cp.kubectl_ok(
        &["apply", "-f", "-"],
        Some(&device_manifest(ns, "desk", "00:1a:2b:00:03:01", "1000")),
    );
    // Read before the freeze: a stopped process accepts the connection but never answers.
    let frozen = writes(inst.operator_http);
    inst.operator.signal("STOP");
    let stopped = Instant::now();
    wait_until_within("operator-1 to take over", Duration::from_secs(40), || {
        leads(second_http).then_some(())
    });
    let took = stopped.elapsed();
    assert!(
        took >= Duration::from_secs(10),
        "took over after {took:?}, before the old leader's renew deadline"
    );
    wait_until_within("operator-1 to accept the device", LIMIT, || {
        let d = get(cp, ns, "sipdevice", "desk")?;
        (condition(&d, "Accepted") == Some("True")).then_some(())
    });

    inst.operator.signal("CONT");
    wait_until_within("operator-0 to see it no longer leads", LIMIT, || {
        (!leads(inst.operator_http)).then_some(())
    });
    assert_eq!(
        writes(inst.operator_http),
        frozen,
        "the old leader wrote after its renew deadline (fenced writes: {})",
        metric(
            inst.operator_http,
            "switchboard_operator_fenced_writes_total"
        )
    );
    assert!(leads(second_http));

    // SIGTERM: operator-1 releases the Lease; operator-0 leads within a retry period or two.
    let stopping = Instant::now();
    second.stop_within(Duration::from_secs(10));
    wait_until_within("operator-0 to lead again", Duration::from_secs(10), || {
        leads(inst.operator_http).then_some(())
    });
    let handover = stopping.elapsed();
    assert!(
        handover < Duration::from_secs(5),
        "handover took {handover:?}"
    );
    eprintln!("takeover after SIGSTOP: {took:?}; handover after SIGTERM: {handover:?}");
}

/// A ValidatingAdmissionPolicy refuses the operator's Secret writes in one namespace: its
/// device says why (`Ready=False`, `CredentialsNotWritten`, and a Warning Event) while a device
/// in another namespace, applied after it, is published and registers.
fn a_namespace_that_refuses_secret_writes_blocks_only_itself(
    cp: &ControlPlane,
    inst: &Installation,
) {
    let operator = format!(
        "system:serviceaccount:{}:{}-operator",
        installation::NAMESPACE,
        installation::RELEASE
    );
    let policy = format!(
        "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingAdmissionPolicy\n\
         metadata:\n  name: no-operator-secrets\nspec:\n  failurePolicy: Fail\n  \
         matchConstraints:\n    resourceRules:\n    - apiGroups: [\"\"]\n      apiVersions: [\"v1\"]\n      \
         operations: [\"CREATE\", \"UPDATE\"]\n      resources: [\"secrets\"]\n  validations:\n  \
         - expression: \"request.userInfo.username != '{operator}'\"\n    \
         message: \"this namespace keeps its Secrets to itself\"\n---\n\
         apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingAdmissionPolicyBinding\n\
         metadata:\n  name: no-operator-secrets\nspec:\n  policyName: no-operator-secrets\n  \
         validationActions: [Deny]\n  matchResources:\n    namespaceSelector:\n      \
         matchLabels:\n        kubernetes.io/metadata.name: locked\n"
    );
    cp.kubectl_ok(&["apply", "-f", "-"], Some(&policy));
    ensure_namespace(cp, "locked");
    ensure_namespace(cp, "open");
    // The policy is enforced once the API server has loaded it: probe as the operator.
    wait_until_within("the policy to be enforced", LIMIT, || {
        let probe = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: probe\n  namespace: locked\n";
        let out = cp.kubectl_as(
            &inst.operator_kubeconfig,
            &["create", "--dry-run=server", "-f", "-"],
            Some(probe),
        );
        String::from_utf8_lossy(&out.stderr)
            .contains("keeps its Secrets")
            .then_some(())
    });
    let locked = [
        site_manifest("locked", "hq.locked.test"),
        device_manifest("locked", "desk", "00:1a:2b:00:04:01", "1000"),
    ]
    .join("---\n");
    cp.kubectl_ok(&["apply", "-f", "-"], Some(&locked));
    let blocked = inst.explain(|| {
        wait_until_within(
            "the locked device to say why it is not ready",
            LIMIT,
            || {
                let d = get(cp, "locked", "sipdevice", "desk")?;
                let ready = d["status"]["conditions"]
                    .as_array()?
                    .iter()
                    .find(|c| c["type"] == "Ready")?
                    .clone();
                (ready["reason"] == "CredentialsNotWritten").then_some((d, ready))
            },
        )
    });
    assert_eq!(
        condition(&blocked.0, "Accepted"),
        Some("True"),
        "{}",
        blocked.0
    );
    assert!(
        blocked.1["message"]
            .as_str()
            .unwrap()
            .contains("keeps its Secrets"),
        "{}",
        blocked.1
    );
    let described = cp.kubectl_ok(&["describe", "-n", "locked", "sipdevice", "desk"], None);
    assert!(described.contains("CredentialsNotWritten"), "{described}");

    let open = [
        site_manifest("open", "hq.open.test"),
        device_manifest("open", "desk", "00:1a:2b:00:04:02", "1000"),
    ]
    .join("---\n");
    cp.kubectl_ok(&["apply", "-f", "-"], Some(&open));
    let d = accepted_device(cp, "open", "desk");
    inst.wait_in_force(cp, &d.user, "hq.open.test", &d.password);
    let _phone = Baresip::start(&Account::udp(
        &d.user,
        "hq.open.test",
        &d.password,
        inst.sip_addr(),
    ));
    inst.explain(|| wait_registration_state(cp, "open", "desk", "Registered"));
    let failures = metric(
        inst.operator_http,
        "switchboard_operator_write_failures_total{namespace=\"locked\"}",
    );
    assert!(failures >= 1.0, "failures in locked: {failures}");
    cp.kubectl_ok(
        &[
            "delete",
            "validatingadmissionpolicybinding",
            "no-operator-secrets",
        ],
        None,
    );
    cp.kubectl_ok(
        &["delete", "validatingadmissionpolicy", "no-operator-secrets"],
        None,
    );
}
