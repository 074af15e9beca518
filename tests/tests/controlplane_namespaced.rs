//! The namespaced install mode on a real control plane: the operator may read and write Secrets
//! only in the tenant namespaces the chart lists (Roles there, no ClusterRole for Secrets), and
//! Switchboard works there all the same; a referenced Secret without the credentials label is
//! reported, not read.

use switchboard_testkit::baresip::{Account, Baresip};
use switchboard_testkit::controlplane::ControlPlane;
use switchboard_testkit::wait_until_within;
use switchboard_tests::installation::{ensure_namespace, Installation};
use switchboard_tests::resources::{
    accepted_device, condition, device_manifest, get, site_manifest, wait_registration_state, LIMIT,
};

#[test]
fn the_operator_reads_secrets_only_in_its_tenant_namespaces() {
    let Some(cp) = ControlPlane::shared() else {
        return;
    };
    let inst = Installation::start_namespaced(cp, &["tenant-a"]);
    ensure_namespace(cp, "tenant-b");
    let op = &inst.operator_kubeconfig;
    let can = |verb: &str, ns: &str| {
        let out = cp.kubectl_as(op, &["auth", "can-i", verb, "secrets", "-n", ns], None);
        String::from_utf8_lossy(&out.stdout).trim() == "yes"
    };
    assert!(can("list", "tenant-a") && can("create", "tenant-a"));
    assert!(!can("list", "tenant-b") && !can("create", "tenant-b") && !can("get", "tenant-b"));
    let refused = cp.kubectl_as(op, &["get", "secrets", "-n", "tenant-b"], None);
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("forbidden"),
        "{refused:?}"
    );

    // Switchboard works in the tenant namespace: generated credentials, a phone registers.
    let manifests = [
        site_manifest("tenant-a", "hq.tenant-a.test"),
        device_manifest("tenant-a", "desk", "00:1a:2b:00:05:01", "1000"),
    ]
    .join("---\n");
    cp.kubectl_ok(&["apply", "-f", "-"], Some(&manifests));
    let d = inst.explain(|| accepted_device(cp, "tenant-a", "desk"));
    inst.wait_in_force(cp, &d.user, "hq.tenant-a.test", &d.password);
    let _phone = Baresip::start(&Account::udp(
        &d.user,
        "hq.tenant-a.test",
        &d.password,
        inst.sip_addr(),
    ));
    inst.explain(|| wait_registration_state(cp, "tenant-a", "desk", "Registered"));

    // A referenced Secret without the label is not read: the condition says to add it; once
    // labelled, the device is accepted.
    let unlabelled = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: own-password\n  \
                      namespace: tenant-a\nstringData:\n  password: a-long-password-of-my-own\n";
    cp.kubectl_ok(&["apply", "-f", "-"], Some(unlabelled));
    let referencing = device_manifest("tenant-a", "own", "00:1a:2b:00:05:02", "1001")
        + "  credentials:\n    secretRef:\n      name: own-password\n";
    cp.kubectl_ok(&["apply", "-f", "-"], Some(&referencing));
    let message = inst.explain(|| {
        wait_until_within("the unlabelled Secret to be reported", LIMIT, || {
            let o = get(cp, "tenant-a", "sipdevice", "own")?;
            (condition(&o, "Accepted") == Some("False")).then(|| o["status"].to_string())
        })
    });
    assert!(
        message.contains("sip.switchboard.dev/credentials=true"),
        "{message}"
    );
    cp.kubectl_ok(
        &[
            "label",
            "secret",
            "own-password",
            "-n",
            "tenant-a",
            "sip.switchboard.dev/credentials=true",
        ],
        None,
    );
    inst.explain(|| {
        wait_until_within("the device to be accepted once labelled", LIMIT, || {
            let o = get(cp, "tenant-a", "sipdevice", "own")?;
            (condition(&o, "Accepted") == Some("True")).then_some(())
        })
    });
}
