//! The registrar restarts with the in-memory store: every binding is gone. A device whose phone
//! does not come back must not keep showing `Registered` (its calls would fail with 480 while
//! `kubectl get` says otherwise): the restarted registrar writes `Unregistered`, with the
//! `Registered` condition `False`, within seconds of being ready — not after the 30 s it gives
//! phones to come back before resynchronising everything. A phone that does register again
//! shows `Registered`.

use std::time::{Duration, Instant};
use switchboard_testkit::baresip::{Account, Baresip};
use switchboard_testkit::controlplane::ControlPlane;
use switchboard_testkit::wait_until_within;
use switchboard_tests::installation::{ensure_namespace, Installation};
use switchboard_tests::resources::{
    accepted_device, condition, device_manifest, get, site_manifest, wait_registration_state,
};

/// Well under the registrar's 30 s settle pause (`server::STATUS_SETTLE`).
const CORRECTED_WITHIN: Duration = Duration::from_secs(10);

#[test]
fn a_restarted_registrar_corrects_the_statuses_of_the_bindings_it_lost() {
    let Some(cp) = ControlPlane::shared() else {
        return;
    };
    // An installation of its own: this test restarts the registrar.
    let mut inst = Installation::start(cp);
    let ns = "registrar-restart";
    let domain = "hq.registrar-restart.test";
    ensure_namespace(cp, ns);
    let manifests = [
        site_manifest(ns, domain),
        device_manifest(ns, "lost", "00:1a:2b:00:03:01", "1000"),
        device_manifest(ns, "back", "00:1a:2b:00:03:02", "1001"),
    ]
    .join("---\n");
    cp.kubectl_ok(&["apply", "-f", "-"], Some(&manifests));
    let account = |name: &str| {
        let d = accepted_device(cp, ns, name);
        inst.wait_in_force(cp, &d.user, domain, &d.password);
        Account::udp(&d.user, domain, &d.password, inst.sip_addr())
    };
    let (lost, back) = (account("lost"), account("back"));
    // The lost phone stays up but will not register again for an hour (its expiry).
    let _lost_phone = Baresip::start(&lost);
    let back_phone = Baresip::start(&back);
    for name in ["lost", "back"] {
        inst.explain(|| wait_registration_state(cp, ns, name, "Registered"));
    }
    drop(back_phone);

    inst.restart_registrar(cp);
    let ready = Instant::now();
    let _back_again = Baresip::start(&back);

    let device = inst.explain(|| {
        wait_until_within(
            "the restarted registrar to correct the lost phone's status",
            CORRECTED_WITHIN,
            || {
                let d = get(cp, ns, "sipdevice", "lost")?;
                (d["status"]["registration"]["state"] == "Unregistered").then_some(d)
            },
        )
    });
    let took = ready.elapsed();
    assert_eq!(
        condition(&device, "Registered"),
        Some("False"),
        "the condition follows the state: {device}"
    );
    assert!(
        device["status"]["registration"]["contacts"]
            .as_array()
            .is_none_or(|c| c.is_empty()),
        "no contact is claimed: {device}"
    );
    inst.explain(|| wait_registration_state(cp, ns, "back", "Registered"));
    println!("lost binding corrected {took:?} after the registrar was ready");
}
