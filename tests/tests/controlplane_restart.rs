//! The API server restarts mid-run: the operator and the registrar recover by themselves (their
//! watches restart), nothing is lost (a phone that registered while the API server was down
//! shows `Registered` once it is back; a device applied afterwards is published and registers)
//! and nothing is written twice (objects whose state did not change keep their
//! resourceVersion, and the config Secret is not republished).

use switchboard_crds::shards::{secret_name, HASH_ANNOTATION};
use switchboard_testkit::baresip::{Account, Baresip};
use switchboard_testkit::{http_get, wait_until};
use switchboard_tests::installation;
use switchboard_tests::resources::{
    accepted_device, condition, device_manifest, get, site_manifest, wait_registration_state,
    wait_registration_state_within,
};

/// How long a status may take after the API server came back: the status writer's longest
/// retry pause (30 s, `StatusSettings::max_retry_delay`) and then some.
const AFTER_OUTAGE: std::time::Duration = std::time::Duration::from_secs(75);

#[test]
fn operator_and_registrar_recover_from_an_api_server_restart() {
    let Some((cp, inst)) = installation::shared() else {
        return;
    };
    let ns = "restart";
    let domain = "hq.restart.test";
    installation::ensure_namespace(cp, ns);
    let manifests = [
        site_manifest(ns, domain),
        device_manifest(ns, "before", "00:1a:2b:00:02:01", "1000"),
        device_manifest(ns, "during", "00:1a:2b:00:02:02", "1001"),
    ]
    .join("---\n");
    cp.kubectl_ok(&["apply", "-f", "-"], Some(&manifests));
    let phone = |name: &str| {
        let d = accepted_device(cp, ns, name);
        inst.wait_in_force(cp, &d.user, domain, &d.password);
        Baresip::start(&Account::udp(&d.user, domain, &d.password, inst.sip_addr()))
    };
    let _before_phone = phone("before");
    let during = accepted_device(cp, ns, "during");
    inst.wait_in_force(cp, &during.user, domain, &during.password);
    let before = inst.explain(|| wait_registration_state(cp, ns, "before", "Registered"));
    let config =
        get(cp, installation::NAMESPACE, "secret", &secret_name(0)).expect("the published config");
    let passes_before = inst.operator_passes();

    cp.stop("kube-apiserver");
    let _during_phone = Baresip::start(&Account::udp(
        &during.user,
        domain,
        &during.password,
        inst.sip_addr(),
    ));
    // The phone is bound while the API server is away; its status must wait for it.
    inst.explain(|| {
        wait_until("the registrar to bind the phone", || {
            let (_, body) = http_get(
                inst.registrar_debug_http,
                &format!("/debug/bindings?device={ns}/during"),
            )?;
            body.contains("baresip").then_some(())
        })
    });
    cp.start_again("kube-apiserver");

    // After an outage the registrar's status writer is backing off (up to its 30 s retry
    // cap, longer than `LIMIT`), and the first writes may meet 403 until the API server's
    // RBAC cache fills: statuses arrive within the backoff cap plus a little.
    inst.explain(|| wait_registration_state_within(cp, ns, "during", "Registered", AFTER_OUTAGE));
    inst.explain(|| {
        wait_until("the operator's pass over its restarted watches", || {
            (inst.operator_passes() > passes_before).then_some(())
        })
    });
    let unchanged =
        get(cp, installation::NAMESPACE, "secret", &secret_name(0)).expect("the published config");
    assert_eq!(
        unchanged["metadata"]["resourceVersion"], config["metadata"]["resourceVersion"],
        "the same config was published again after the restart"
    );
    cp.kubectl_ok(
        &["apply", "-f", "-"],
        Some(&device_manifest(ns, "after", "00:1a:2b:00:02:03", "1002")),
    );
    // The registrar's watches came back with the API server, possibly still backing off from
    // its outage (refused connections, then 403 until its RBAC cache filled): a phone that
    // registers before the registrar holds the device is refused and waits a long while
    // before it tries again. So the phone starts once the device is Ready (published) and
    // the registrar has loaded that config.
    inst.explain(|| {
        wait_until(
            "the registrar to load the config holding the new device",
            || {
                let d = get(cp, ns, "sipdevice", "after")?;
                (condition(&d, "Ready") == Some("True")).then_some(())?;
                let secret = get(cp, installation::NAMESPACE, "secret", &secret_name(0))?;
                let published = secret["metadata"]["annotations"][HASH_ANNOTATION].clone();
                let (_, body) = http_get(inst.registrar_debug_http, "/debug/bindings")?;
                let loaded: serde_json::Value = serde_json::from_str(&body).ok()?;
                (loaded["configHash"] == published).then_some(())
            },
        )
    });
    let _after_phone = phone("after");
    inst.explain(|| wait_registration_state_within(cp, ns, "after", "Registered", AFTER_OUTAGE));

    let before_now = get(cp, ns, "sipdevice", "before").unwrap();
    assert_eq!(
        before_now["metadata"]["resourceVersion"], before["metadata"]["resourceVersion"],
        "a device whose state did not change was written again:\nbefore {before}\nnow {before_now}"
    );
    let config_now =
        get(cp, installation::NAMESPACE, "secret", &secret_name(0)).expect("the published config");
    assert_ne!(
        config_now["metadata"]["annotations"], config["metadata"]["annotations"],
        "the device applied after the restart is in a newly published config"
    );
}
