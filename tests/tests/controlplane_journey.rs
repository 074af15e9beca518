//! The platform team's journey on a real control plane (kube-apiserver with RBAC, etcd,
//! kube-controller-manager): resources applied with kubectl, the operator and a registrar
//! running under the chart's ServiceAccounts, real phones (baresip) and a real upstream
//! (Kamailio). Each test works in a namespace of its own on the binary's one installation.

use serde_json::Value;
use std::time::Duration;
use switchboard_testkit::baresip::{Account, Baresip};
use switchboard_testkit::browser::BrowserPhone;
use switchboard_testkit::controlplane::ControlPlane;
use switchboard_testkit::kamailio::Kamailio;
use switchboard_testkit::{free_port, repo_root, temp_dir, wait_until_within};
use switchboard_tests::installation::{self, ensure_namespace, Installation};
use switchboard_tests::resources::{
    accepted_device, condition, device_manifest, get, site_manifest, spec_managers,
    wait_registration_state, AcceptedDevice, LIMIT,
};

/// How long the garbage collector may take for an object of a freshly installed CRD.
const GC_LIMIT: Duration = Duration::from_secs(120);

fn phone(inst: &Installation, user: &str, domain: &str, password: &str) -> Baresip {
    Baresip::start(&Account::udp(user, domain, password, inst.sip_addr()))
}

/// Generated credentials → baresip registers → `kubectl get` shows it Registered with its
/// contact → `kubectl wait` for the condition → Events in `kubectl describe` → Expires 0 →
/// Unregistered → deleting the device deletes its generated Secret (garbage collection).
#[test]
fn a_device_lives_from_apply_to_registered_to_deleted() {
    let Some((cp, inst)) = installation::shared() else {
        return;
    };
    let ns = "journey-life";
    let domain = "hq.life.test";
    ensure_namespace(cp, ns);
    let manifests = format!(
        "{}---\n{}",
        site_manifest(ns, domain),
        device_manifest(ns, "desk", "00:1a:2b:00:00:01", "1000")
    );
    cp.kubectl_ok(&["apply", "-f", "-"], Some(&manifests));
    let AcceptedDevice {
        object: dev,
        user,
        password,
    } = accepted_device(cp, ns, "desk");
    inst.wait_in_force(cp, &user, domain, &password);
    assert_eq!(
        dev["status"]["sipUri"].as_str(),
        Some(format!("sip:{user}@{domain}").as_str())
    );
    let secret = dev["status"]["credentialsSecret"]
        .as_str()
        .unwrap()
        .to_string();

    let mut baresip = phone(inst, &user, domain, &password);
    let dev = inst.explain(|| wait_registration_state(cp, ns, "desk", "Registered"));
    let contact = &dev["status"]["registration"]["contacts"][0];
    let source = contact["sourceAddress"].as_str().unwrap().to_string();
    assert!(source.starts_with("127.0.0.1:"), "{contact}");
    assert!(
        contact["userAgent"]
            .as_str()
            .unwrap()
            .starts_with("baresip"),
        "{contact}"
    );
    assert_eq!(contact["replica"], "registrar-0", "{contact}");

    assert_table_row(
        cp,
        ns,
        "desk",
        &["Site", "hq", "1000", "Registered", &source],
    );
    cp.kubectl_ok(
        &[
            "wait",
            "-n",
            ns,
            "--for=condition=Registered",
            "--timeout=20s",
            "sipdevice/desk",
        ],
        None,
    );
    let described = cp.kubectl_ok(&["describe", "-n", ns, "sipdevice", "desk"], None);
    assert_event(&described, "Registered", "switchboard-registrar");

    baresip.stop();
    inst.explain(|| wait_registration_state(cp, ns, "desk", "Unregistered"));
    cp.kubectl_ok(
        &[
            "wait",
            "-n",
            ns,
            "--for=condition=Registered=false",
            "--timeout=20s",
            "sipdevice/desk",
        ],
        None,
    );
    let described = cp.kubectl_ok(&["describe", "-n", ns, "sipdevice", "desk"], None);
    assert_event(&described, "Unregistered", "switchboard-registrar");

    cp.kubectl_ok(&["delete", "-n", ns, "sipdevice", "desk"], None);
    // The garbage collector learns new resource types by rediscovering the API every 30 s, so
    // right after the CRDs were installed a dependent can wait that long and a retry more.
    wait_until_within(
        "garbage collection of the generated Secret",
        GC_LIMIT,
        || get(cp, ns, "secret", &secret).is_none().then_some(()),
    );
}

/// A browser softphone (chromium running JsSIP) registers over WSS, as a device of a Site that
/// lists WSS among its transports: the device's status shows the WSS contact (a `*.invalid`
/// URI, the browser's user agent, the registrar holding its connection), and unregistering
/// turns it Unregistered.
#[test]
fn a_browser_phone_registers_over_wss_and_the_status_shows_it() {
    let Some((cp, inst)) = installation::shared() else {
        return;
    };
    let ns = "journey-browser";
    let domain = "hq.browser.test";
    ensure_namespace(cp, ns);
    let site = site_manifest(ns, domain) + "  registration:\n    transports: [UDP, WSS]\n";
    let device = device_manifest(ns, "web", "00:1a:2b:00:00:09", "1009");
    cp.kubectl_ok(&["apply", "-f", "-"], Some(&format!("{site}---\n{device}")));
    let AcceptedDevice { user, password, .. } = accepted_device(cp, ns, "web");

    let url = format!("wss://127.0.0.1:{}", inst.wss_port);
    let dir = temp_dir("journey-browser");
    let account = (user.as_str(), password.as_str(), domain);
    let mut phone = BrowserPhone::start(&url, account, free_port(), &dir);
    phone.wait("registered", |_| true);
    let dev = inst.explain(|| wait_registration_state(cp, ns, "web", "Registered"));
    let contact = &dev["status"]["registration"]["contacts"][0];
    assert_eq!(contact["transport"], "WSS", "{contact}");
    assert!(
        contact["uri"]
            .as_str()
            .unwrap()
            .contains(".invalid;transport=ws"),
        "{contact}"
    );
    assert!(
        contact["userAgent"].as_str().unwrap().contains("JsSIP"),
        "{contact}"
    );
    assert_eq!(contact["replica"], "registrar-0", "{contact}");

    phone.command("unregister");
    phone.wait("unregistered", |_| true);
    inst.explain(|| wait_registration_state(cp, ns, "web", "Unregistered"));
}

/// kubectl's own table (printer columns): the header, and the device's row holding `cells`
/// in order after its name.
fn assert_table_row(cp: &ControlPlane, ns: &str, name: &str, cells: &[&str]) {
    let table = cp.kubectl_ok(&["get", "sipdevices", "-n", ns], None);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "ASSIGNMENT",
            "SITE",
            "EXTENSION",
            "STATE",
            "CONTACT",
            "AGE"
        ],
        "{table}"
    );
    let row: Vec<&str> = lines
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|r| r.first() == Some(&name))
        .unwrap_or_else(|| panic!("no row for {name}:\n{table}"));
    assert_eq!(&row[1..=cells.len()], cells, "{table}");
}

/// `kubectl describe` lists an Event with `reason` from `from` in its Events table.
fn assert_event(described: &str, reason: &str, from: &str) {
    let events = described
        .split_once("\nEvents:")
        .map(|(_, e)| e)
        .unwrap_or_else(|| panic!("no Events in:\n{described}"));
    assert!(
        events
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some(reason) && l.contains(from)),
        "no {reason} Event from {from} in:\n{described}"
    );
}

/// A second field manager (a GitOps tool) re-applies the same manifests by server-side apply
/// while phones register: never a conflict, nobody but it owns a spec field, the spec never
/// changes (generation 1), and once the phones are registered a further round of re-applies
/// followed by a full operator pass writes nothing (resourceVersions unchanged).
#[test]
fn gitops_reapplies_conflict_free_while_phones_register() {
    let Some((cp, inst)) = installation::shared() else {
        return;
    };
    let ns = "journey-gitops";
    let domain = "hq.gitops.test";
    ensure_namespace(cp, ns);
    let names = ["phone-a", "phone-b", "phone-c"];
    let mut manifests = site_manifest(ns, domain);
    for (i, n) in names.iter().enumerate() {
        manifests += &format!(
            "---\n{}",
            device_manifest(ns, n, &format!("00:1a:2b:00:01:0{i}"), &format!("110{i}"))
        );
    }
    let gitops_apply = || {
        cp.kubectl_ok(
            &[
                "apply",
                "--server-side",
                "--field-manager=gitops",
                "-f",
                "-",
            ],
            Some(&manifests),
        )
    };
    gitops_apply();
    let accounts: Vec<(String, String)> = names
        .iter()
        .map(|n| {
            let d = accepted_device(cp, ns, n);
            inst.wait_in_force(cp, &d.user, domain, &d.password);
            (d.user, d.password)
        })
        .collect();
    let phones: Vec<Baresip> = accounts
        .iter()
        .map(|(u, p)| phone(inst, u, domain, p))
        .collect();
    for _ in 0..10 {
        gitops_apply();
    }
    for n in names {
        inst.explain(|| wait_registration_state(cp, ns, n, "Registered"));
    }
    let with_fields = |n: &str| {
        cp.get_json(&["get", "sipdevice", n, "-n", ns, "--show-managed-fields"])
            .expect("the device")
    };
    let before: Vec<Value> = names.iter().map(|n| with_fields(n)).collect();
    for _ in 0..5 {
        gitops_apply();
    }
    full_operator_pass(cp, inst);
    for (n, old) in names.iter().zip(&before) {
        let now = with_fields(n);
        assert_eq!(now["metadata"]["generation"], 1, "{now}");
        assert_eq!(
            spec_managers(&now),
            ["gitops"],
            "{}",
            now["metadata"]["managedFields"]
        );
        assert_eq!(
            now["metadata"]["resourceVersion"], old["metadata"]["resourceVersion"],
            "{n} was written although nothing changed:\nbefore {old}\nnow {now}"
        );
    }
    drop(phones);
}

/// Makes the operator run a pass and waits until it has finished one: a CallPattern of a
/// namespace of its own is created and waited for until the operator has written its status.
fn full_operator_pass(cp: &ControlPlane, inst: &Installation) {
    let before = inst.operator_passes();
    let ns = "journey-barrier";
    ensure_namespace(cp, ns);
    let name = format!("barrier-{}", before as u64);
    let pattern = format!(
        "apiVersion: sip.switchboard.dev/v1alpha1\nkind: CallPattern\nmetadata:\n  name: {name}\n  \
         namespace: {ns}\nspec:\n  compact: '^9=8'\n"
    );
    cp.kubectl_ok(&["apply", "-f", "-"], Some(&pattern));
    wait_until_within("the operator to pass over a new CallPattern", LIMIT, || {
        let p = get(cp, ns, "callpattern", &name)?;
        (condition(&p, "Accepted").is_some() && inst.operator_passes() > before).then_some(())
    });
}

/// A SipRegistration to a local Kamailio turns Successful (and Kamailio holds the binding); one
/// with a wrong password turns Failed with the upstream's code.
#[test]
fn sip_registrations_to_kamailio_succeed_or_fail_with_the_code() {
    let Some((cp, inst)) = installation::shared() else {
        return;
    };
    let ns = "journey-trunk";
    ensure_namespace(cp, ns);
    let config = std::fs::read_to_string(repo_root().join("registrar/tests/uac_kamailio.cfg"))
        .expect("registrar/tests/uac_kamailio.cfg");
    let kamailio = Kamailio::start(
        "controlplane",
        &config,
        &[("trunk", "right-password"), ("other", "other-password")],
        &[("@ALGORITHM@", "MD5"), ("@MIN_EXPIRES@", "60")],
    );
    let registration = |name: &str, user: &str, password: &str| {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}-password\n  namespace: {ns}\n  \
             labels:\n    sip.switchboard.dev/credentials: \"true\"\nstringData:\n  password: {password}\n---\n\
             apiVersion: sip.switchboard.dev/v1alpha1\nkind: SipRegistration\nmetadata:\n  \
             name: {name}\n  namespace: {ns}\nspec:\n  aor: sip:{user}@example.test\n  \
             username: \"{user}\"\n  credentials:\n    secretRef:\n      name: {name}-password\n  \
             proxy: \"127.0.0.1:{}\"\n  expires: 300\n",
            kamailio.port
        )
    };
    let manifests = registration("good", "trunk", "right-password")
        + "---\n"
        + &registration("bad", "other", "wrong-password");
    cp.kubectl_ok(&["apply", "-f", "-"], Some(&manifests));
    let phase = |name: &str| {
        let r = get(cp, ns, "sipregistration", name)?;
        let p = r["status"]["phase"].as_str()?.to_string();
        Some((p, r))
    };
    let good = wait_until_within("the good registration to be Successful", LIMIT, || {
        phase("good").filter(|(p, _)| p == "Successful")
    });
    assert_eq!(good.1["status"]["lastStatusCode"], 200, "{}", good.1);
    assert!(kamailio.lookup("trunk").is_some(), "{}", kamailio.log());
    let bad = wait_until_within("the bad registration to be Failed", LIMIT, || {
        phase("bad").filter(|(p, _)| p == "Failed")
    });
    let code = bad.1["status"]["lastStatusCode"].as_u64();
    assert!(
        matches!(code, Some(401 | 403)),
        "{}\n{}",
        bad.1,
        inst.logs()
    );
    let described = cp.kubectl_ok(&["describe", "-n", ns, "sipregistration", "bad"], None);
    assert!(described.contains("Warning"), "{described}");
}

/// `subscribe: true` and `spec.callback` on the real API: the registrar's status apply carries
/// `status.presence` (both packages subscribed at Kamailio, which answers SUBSCRIBE 200) and
/// `status.callback` (the Successful change delivered to a local receiver, signed with the key
/// from a labelled Secret); a callback the receiver refuses (404) is given up with a Warning
/// Event `CallbackFailed`; a callback whose Secret is not labelled is `Accepted=False` naming
/// the field.
#[test]
fn sip_registration_presence_and_callbacks_show_in_status() {
    use switchboard_registrar::callback::payload::signature;
    use switchboard_testkit::http::HttpReceiver;
    let Some((cp, inst)) = installation::shared() else {
        return;
    };
    let ns = "journey-blf";
    ensure_namespace(cp, ns);
    let config = std::fs::read_to_string(repo_root().join("registrar/tests/uac_kamailio.cfg"))
        .expect("registrar/tests/uac_kamailio.cfg");
    let kamailio = Kamailio::start(
        "controlplane-blf",
        &config,
        &[("blf", "blf-password"), ("nope", "nope-password")],
        &[("@ALGORITHM@", "MD5"), ("@MIN_EXPIRES@", "60")],
    );
    let delivered = HttpReceiver::start(|_| 200);
    let refused = HttpReceiver::start(|_| 404);
    let secret = |name: &str, key: &str, value: &str, labelled: bool| {
        let labels = if labelled {
            "  labels:\n    sip.switchboard.dev/credentials: \"true\"\n"
        } else {
            ""
        };
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {ns}\n{labels}\
             stringData:\n  {key}: {value}\n---\n"
        )
    };
    let registration = |name: &str, user: &str, url: &str, hook_secret: &str| {
        format!(
            "apiVersion: sip.switchboard.dev/v1alpha1\nkind: SipRegistration\nmetadata:\n  \
             name: {name}\n  namespace: {ns}\nspec:\n  aor: sip:{user}@example.test\n  \
             username: \"{user}\"\n  credentials:\n    secretRef:\n      name: {user}-password\n  \
             proxy: \"127.0.0.1:{}\"\n  expires: 300\n  subscribe: true\n  callback:\n    \
             url: {url}\n    secretRef:\n      name: {hook_secret}\n---\n",
            kamailio.port
        )
    };
    let manifests = secret("blf-password", "password", "blf-password", true)
        + &secret("nope-password", "password", "wrong", true)
        + &secret("hooks", "key", "hook-key", true)
        + &secret("unlabelled-hooks", "key", "x", false)
        + &registration("blf", "blf", &delivered.url("/sip"), "hooks")
        + &registration("nope", "nope", &refused.url("/sip"), "hooks")
        + &registration(
            "unlabelled",
            "blf",
            &delivered.url("/sip"),
            "unlabelled-hooks",
        );
    cp.kubectl_ok(&["apply", "-f", "-"], Some(&manifests));

    let blf = wait_until_within("presence and the callback in blf's status", LIMIT, || {
        let r = get(cp, ns, "sipregistration", "blf")?;
        let subs = r["status"]["presence"]["subscriptions"].as_array()?;
        let active = subs.len() == 2
            && subs
                .iter()
                .all(|s| s["state"] == "Active" && s["lastStatusCode"] == 200);
        (active && r["status"]["callback"]["lastDeliveredPhase"] == "Successful").then_some(r)
    });
    let events: Vec<&str> = blf["status"]["presence"]["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["event"].as_str())
        .collect();
    assert_eq!(events, ["dialog", "presence"], "{blf}");
    assert_eq!(blf["status"]["callback"]["attempts"], 1, "{blf}");
    let got = delivered.received();
    let last = got.last().expect("a callback");
    let body: Value = serde_json::from_slice(&last.body).unwrap();
    assert_eq!(
        (
            &body["registration"]["name"],
            &body["newPhase"],
            &body["oldPhase"]
        ),
        (
            &Value::from("blf"),
            &Value::from("Successful"),
            &Value::from("InProgress")
        ),
        "{body}"
    );
    let ts: u64 = last.header("x-switchboard-timestamp").parse().unwrap();
    assert_eq!(
        last.header("x-switchboard-signature"),
        signature(b"hook-key", ts, &last.body),
        "signed with the key from Secret hooks"
    );

    let nope = wait_until_within("nope's callback given up", LIMIT, || {
        let r = get(cp, ns, "sipregistration", "nope")?;
        (r["status"]["callback"]["gaveUpPhase"] == "Failed").then_some(r)
    });
    assert_eq!(
        nope["status"]["callback"]["lastError"], "HTTP 404",
        "{nope}"
    );
    let described = wait_until_within("the CallbackFailed Event", LIMIT, || {
        let d = cp.kubectl_ok(&["describe", "-n", ns, "sipregistration", "nope"], None);
        d.contains("CallbackFailed").then_some(d)
    });
    assert!(described.contains("HTTP 404"), "{described}");

    let unlabelled = wait_until_within("the unlabelled hook Secret refused", LIMIT, || {
        let r = get(cp, ns, "sipregistration", "unlabelled")?;
        (condition(&r, "Accepted")? == "False").then(|| {
            r["status"]["conditions"]
                .as_array()
                .and_then(|cs| cs.iter().find(|c| c["type"] == "Accepted").cloned())
                .unwrap_or_default()
        })
    });
    let message = unlabelled["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("spec.callback.secretRef")
            && message.contains("kubectl label secret unlabelled-hooks"),
        "{unlabelled}\n{}",
        inst.logs()
    );
}

/// The API server's own verdict on the chart's RBAC for each component's ServiceAccount: what
/// it needs is allowed, and a sample of what it must not do is refused.
#[test]
fn each_service_account_may_do_what_it_needs_and_no_more() {
    let Some((cp, inst)) = installation::shared() else {
        return;
    };
    let sys = installation::NAMESPACE;
    let can = |kubeconfig: &std::path::Path, verb: &str, resource: &str, ns: Option<&str>| {
        let (resource, sub) = resource
            .split_once('/')
            .map_or((resource, None), |(r, s)| (r, Some(s)));
        let subresource = sub.map(|s| format!("--subresource={s}"));
        let mut args = vec!["auth", "can-i", verb, resource];
        args.extend(subresource.as_deref());
        match ns {
            Some(ns) => args.extend(["-n", ns]),
            None => args.push("--all-namespaces"),
        }
        let out = cp.kubectl_as(kubeconfig, &args, None);
        String::from_utf8_lossy(&out.stdout).trim() == "yes"
    };
    let op = &inst.operator_kubeconfig;
    let reg = &inst.registrar_kubeconfig;
    let expectations: &[(&std::path::Path, &str, &str, Option<&str>, bool)] = &[
        (op, "watch", "sipdevices.sip.switchboard.dev", None, true),
        (
            op,
            "patch",
            "sipdevices.sip.switchboard.dev/status",
            Some("tenant"),
            true,
        ),
        // Companion devices a Site keeps: applied and deleted by the operator.
        (
            op,
            "patch",
            "sipdevices.sip.switchboard.dev",
            Some("tenant"),
            true,
        ),
        (
            op,
            "delete",
            "sipdevices.sip.switchboard.dev",
            Some("tenant"),
            true,
        ),
        (
            op,
            "delete",
            "sites.sip.switchboard.dev",
            Some("tenant"),
            false,
        ),
        (op, "update", "leases.coordination.k8s.io", Some(sys), true),
        (
            op,
            "update",
            "leases.coordination.k8s.io",
            Some("tenant"),
            false,
        ),
        (op, "delete", "secrets", Some(sys), true),
        (op, "delete", "secrets", Some("tenant"), false),
        (op, "create", "pods", Some(sys), false),
        // Only by name (below): not every Secret of its namespace.
        (reg, "list", "secrets", Some(sys), false),
        (reg, "list", "secrets", Some("tenant"), false),
        (reg, "create", "secrets", Some(sys), false),
        (
            reg,
            "patch",
            "sipdevices.sip.switchboard.dev/status",
            Some("tenant"),
            true,
        ),
        (
            reg,
            "patch",
            "sipdevices.sip.switchboard.dev",
            Some("tenant"),
            false,
        ),
        (
            reg,
            "list",
            "sites.sip.switchboard.dev",
            Some("tenant"),
            false,
        ),
        (
            reg,
            "update",
            "leases.coordination.k8s.io",
            Some(sys),
            false,
        ),
    ];
    let wrong: Vec<String> = expectations
        .iter()
        .filter(|(kc, verb, res, ns, allowed)| can(kc, verb, res, *ns) != *allowed)
        .map(|(kc, verb, res, ns, allowed)| {
            let who = if *kc == op.as_path() {
                "operator"
            } else {
                "registrar"
            };
            format!("{who} {verb} {res} in {ns:?}: expected allowed={allowed}")
        })
        .collect();
    assert!(wrong.is_empty(), "{wrong:#?}");
    registrar_reads_its_config_secrets_and_no_other(cp, inst);
}

/// The registrar may list and watch the config shard Secrets, each by name, and no other
/// Secret of its namespace (its TLS key lives there): by `kubectl auth can-i`, and by real
/// reads under its token.
fn registrar_reads_its_config_secrets_and_no_other(cp: &ControlPlane, inst: &Installation) {
    use switchboard_crds::shards::{secret_name, MAX_SHARDS};
    let sys = installation::NAMESPACE;
    let reg = &inst.registrar_kubeconfig;
    let can = |verb: &str, name: &str| {
        let object = format!("secrets/{name}");
        let out = cp.kubectl_as(reg, &["auth", "can-i", verb, &object, "-n", sys], None);
        String::from_utf8_lossy(&out.stdout).trim() == "yes"
    };
    let (first, last) = (secret_name(0), secret_name(MAX_SHARDS - 1));
    let tls = format!("{}-registrar-tls", installation::RELEASE);
    let expectations = [
        ("list", first.as_str(), true),
        ("watch", first.as_str(), true),
        ("list", last.as_str(), true),
        ("watch", last.as_str(), true),
        // It watches; it never reads one Secret by name.
        ("get", first.as_str(), false),
        ("get", tls.as_str(), false),
        ("list", tls.as_str(), false),
        ("watch", tls.as_str(), false),
        ("list", &secret_name(MAX_SHARDS), false),
    ];
    let wrong: Vec<String> = expectations
        .iter()
        .filter(|(verb, name, allowed)| can(verb, name) != *allowed)
        .map(|(verb, name, allowed)| {
            format!("registrar {verb} secrets/{name}: expected allowed={allowed}")
        })
        .collect();
    assert!(wrong.is_empty(), "{wrong:#?}");

    let other = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: some-other, namespace: {sys}}}\nstringData: {{k: v}}\n"
    );
    cp.kubectl_ok(&["apply", "-f", "-"], Some(&other));
    let read = |args: &[&str]| {
        let out = cp.kubectl_as(reg, args, None);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let by_name = |name: &str| format!("--field-selector=metadata.name={name}");
    for args in [
        vec!["get", "secret", "some-other", "-n", sys],
        vec!["get", "secrets", "-n", sys],
        vec!["get", "secrets", "-n", sys, &by_name("some-other")],
    ] {
        let (ok, text) = read(&args);
        assert!(
            !ok && text.contains("Forbidden"),
            "kubectl {args:?} as the registrar: {text}"
        );
    }
    // What its watchers do, a list by name, reads the published config.
    let (ok, text) = read(&["get", "secrets", "-n", sys, &by_name(&first), "-o", "name"]);
    assert!(ok && text.trim() == format!("secret/{first}"), "{text}");
}

/// A Site listing users with `spec.companionDevices` gets one companion SipDevice per user
/// (not for one who opts out), owned by the Site, with generated credentials a real phone
/// registers with; a user removed from the list loses the device; the Site's Events say so.
#[test]
fn a_site_keeps_a_companion_device_for_every_user() {
    let Some((cp, inst)) = installation::shared() else {
        return;
    };
    let ns = "journey-companions";
    let domain = "sales.companions.test";
    ensure_namespace(cp, ns);
    let site = |users: &str| {
        format!(
            "apiVersion: sip.switchboard.dev/v1alpha1\nkind: Site\nmetadata:\n  name: sales\n  \
             namespace: {ns}\nspec:\n  domain: {domain}\n  extensions: \"3000-3999\"\n  \
             companionDevices: {{receiveCalls: true}}\n  users:\n{users}"
        )
    };
    let alice = "    - {name: alice, extension: \"3100\"}\n";
    let bob = "    - {name: bob}\n";
    let carol = "    - {name: carol, companionDevice: false}\n";
    cp.kubectl_ok(
        &["apply", "-f", "-"],
        Some(&site(&format!("{alice}{bob}{carol}"))),
    );

    let AcceptedDevice {
        object,
        user,
        password,
    } = inst.explain(|| accepted_device(cp, ns, "sales-alice-companion"));
    accepted_device(cp, ns, "sales-bob-companion");
    inst.wait_in_force(cp, &user, domain, &password);
    let owner = &object["metadata"]["ownerReferences"][0];
    assert_eq!(
        (owner["kind"].as_str(), owner["name"].as_str()),
        (Some("Site"), Some("sales"))
    );
    assert_eq!(object["spec"]["assignment"]["user"]["user"], "alice");
    let listed = cp.kubectl_ok(
        &[
            "get",
            "sipdevices",
            "-n",
            ns,
            "-l",
            "sip.switchboard.dev/companion-of=sales",
            "-o",
            "name",
        ],
        None,
    );
    let mut names: Vec<&str> = listed.lines().collect();
    names.sort();
    assert_eq!(
        names,
        [
            "sipdevice.sip.switchboard.dev/sales-alice-companion",
            "sipdevice.sip.switchboard.dev/sales-bob-companion"
        ],
        "carol opted out"
    );

    let _phone = phone(inst, &user, domain, &password);
    inst.explain(|| wait_registration_state(cp, ns, "sales-alice-companion", "Registered"));

    // Bob leaves the site: his companion goes (the operator deletes it; no garbage collector).
    cp.kubectl_ok(
        &["apply", "-f", "-"],
        Some(&site(&format!("{alice}{carol}"))),
    );
    inst.explain(|| {
        wait_until_within("bob's companion to be deleted", LIMIT, || {
            get(cp, ns, "sipdevice", "sales-bob-companion")
                .is_none()
                .then_some(())
        })
    });
    assert!(get(cp, ns, "sipdevice", "sales-alice-companion").is_some());
    let described = cp.kubectl_ok(&["describe", "-n", ns, "site", "sales"], None);
    assert_event(&described, "CompanionDeviceApplied", "switchboard-operator");
    assert_event(&described, "CompanionDeviceDeleted", "switchboard-operator");
}

/// `kubectl switchboard`, found by kubectl on `PATH` as a plugin: a device's credentials card
/// (with the registrar's load-balancer address), a rotation that hands back the new password,
/// the bindings of a phone registered with it, and registered/total per site.
#[test]
fn the_kubectl_plugin_shows_credentials_bindings_and_sites() {
    let Some((cp, inst)) = installation::shared() else {
        return;
    };
    let ns = "journey-plugin";
    let domain = "hq.plugin.test";
    ensure_namespace(cp, ns);
    let manifests = format!(
        "{}---\n{}---\n{}",
        site_manifest(ns, domain),
        device_manifest(ns, "desk", "00:1a:2b:00:00:71", "1000"),
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: registrar\n  namespace: journey-plugin\n  \
         labels: {app.kubernetes.io/component: registrar}\nspec:\n  type: LoadBalancer\n  \
         ports: [{name: sip-udp, port: 5060, protocol: UDP}]\n---\n\
         apiVersion: v1\nkind: Service\nmetadata:\n  name: provisioning\n  namespace: journey-plugin\n  \
         labels: {app.kubernetes.io/component: provisioning}\nspec:\n  \
         ports: [{name: https, port: 8443}]\n"
    );
    cp.kubectl_ok(&["apply", "-f", "-"], Some(&manifests));
    cp.kubectl_ok(
        &[
            "patch",
            "service",
            "registrar",
            "-n",
            ns,
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"loadBalancer":{"ingress":[{"ip":"192.0.2.10"}]}}}"#,
        ],
        None,
    );
    let AcceptedDevice { user, password, .. } = accepted_device(cp, ns, "desk");
    let dir = installation::workspace_binary("kubectl-switchboard")
        .parent()
        .unwrap()
        .to_path_buf();
    let plugin = |args: &[&str]| {
        let mut all = vec!["switchboard"];
        all.extend(args);
        let out = cp.kubectl_plugin(&dir, &all);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (
            out.status.success(),
            text,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (ok, card, err) = plugin(&["credentials", "desk", "-n", ns, "--registrar-namespace", ns]);
    assert!(ok, "{err}");
    for line in [
        format!("SIP user:       {user}"),
        format!("Password:       {password}"),
        format!("Domain / realm: {domain}"),
        "Registrar:      UDP 192.0.2.10:5060".to_string(),
        ":8443/provisioning/ (inside the cluster only) (VENDOR/…, MAC 001a2b000071;".to_string(),
    ] {
        assert!(card.contains(&line), "{line} in\n{card}");
    }

    let (ok, card, err) = plugin(&["credentials", "desk", "-n", ns, "--rotate"]);
    assert!(ok, "{err}");
    let secret = "desk-sip-credentials";
    let rotated = switchboard_tests::resources::secret_value(cp, ns, secret, "password").unwrap();
    assert_ne!(rotated, password);
    assert!(
        card.contains(&format!("Password:       {rotated}")),
        "{card}"
    );

    inst.wait_in_force(cp, &user, domain, &rotated);
    let _phone = phone(inst, &user, domain, &rotated);
    inst.explain(|| wait_registration_state(cp, ns, "desk", "Registered"));
    let (ok, table, err) = plugin(&["bindings", "desk", "-n", ns]);
    assert!(ok, "{err}");
    let row = table.lines().nth(1).unwrap_or_default();
    assert!(
        row.contains("UDP") && row.contains("registrar-0") && row.contains("baresip"),
        "{table}"
    );
    wait_until_within("the site to count the device registered", LIMIT, || {
        let (_, sites, _) = plugin(&["sites", "-n", ns]);
        sites
            .lines()
            .any(|l| l.contains(domain) && l.contains("1/1"))
            .then_some(())
    });

    let (ok, _, err) = plugin(&["credentials", "no-such-device", "-n", ns]);
    assert!(!ok && err.contains("no-such-device"), "{err}");
}
