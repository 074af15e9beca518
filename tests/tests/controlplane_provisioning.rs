//! Desk-phone provisioning on a real control plane: the provisioning service runs under the
//! chart's `provisioning` ServiceAccount beside the operator and the registrar, serves a phone
//! its file with the credentials the operator generated, records the fetch in the device's
//! status with an Event, refuses another site's credentials, and after a rotation serves the
//! new password.

use serde_json::Value;
use switchboard_testkit::https::{basic_auth, https_get, HttpsResponse};
use switchboard_testkit::wait_until_within;
use switchboard_tests::installation::{self, ensure_namespace, Provisioning};
use switchboard_tests::resources::{accepted_device, get, secret_value, LIMIT};

const NS: &str = "provisioning";
const DOMAIN: &str = "hq.provisioning.test";
const PATH: &str = "/provisioning/json/001a2b000a01.json";
const USER_AGENT: &str = "Yealink SIP-T46S 66.86.0.15";

/// Two sites with provisioning credentials, a phone at `hq` with generated SIP credentials.
fn manifests() -> String {
    let site = |name: &str, domain: &str, range: &str| {
        format!(
            "apiVersion: sip.switchboard.dev/v1alpha1\nkind: Site\nmetadata: {{name: {name}, namespace: {NS}}}\n\
             spec:\n  domain: {domain}\n  extensions: \"{range}\"\n  provisioning:\n    credentialsSecretRef: {{name: {name}-provisioning}}\n---\n\
             apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}-provisioning, namespace: {NS}}}\n\
             stringData: {{username: {name}, password: {name}-secret}}\n---\n"
        )
    };
    format!(
        "{}{}apiVersion: sip.switchboard.dev/v1alpha1\nkind: SipDevice\nmetadata: {{name: desk, namespace: {NS}}}\n\
         spec:\n  macAddress: \"00:1a:2b:00:0a:01\"\n  sipUser: desk\n  assignment: {{site: {{site: hq, extension: \"1000\"}}}}\n",
        site("hq", DOMAIN, "1000-1999"),
        site("branch", "branch.provisioning.test", "2000-2999"),
    )
}

fn fetch(p: &Provisioning, login: (&str, &str)) -> HttpsResponse {
    let auth = basic_auth(login.0, login.1);
    let headers = [("User-Agent", USER_AGENT), ("Authorization", auth.as_str())];
    https_get(p.port, PATH, &headers, &p.ca).expect("an HTTPS answer")
}

/// The account of a served JSON file; `None` while the service cannot answer yet (503).
fn account(r: &HttpsResponse) -> Option<Value> {
    (r.status == 200)
        .then(|| serde_json::from_str::<Value>(&r.body).expect("JSON")["account"].clone())
}

#[test]
fn a_phone_fetches_its_file_the_fetch_is_recorded_and_rotation_serves_the_new_password() {
    let Some((cp, inst)) = installation::shared() else {
        return;
    };
    let prov = inst.start_provisioning(cp);
    ensure_namespace(cp, NS);
    cp.kubectl_ok(&["apply", "-f", "-"], Some(&manifests()));
    let device = accepted_device(cp, NS, "desk");

    // The phone's file carries the operator's SIP user (generated prefix) and password.
    let first = inst.explain(|| {
        wait_until_within("the file to be served", LIMIT, || {
            account(&fetch(&prov, ("hq", "hq-secret")))
        })
    });
    assert_eq!(first["user"].as_str(), Some(device.user.as_str()));
    assert_eq!(first["password"].as_str(), Some(device.password.as_str()));
    assert_eq!(first["domain"], DOMAIN);
    assert_eq!(first["port"], inst.sip_port);

    // The fetch is in the device's status, under the provisioning service's field manager,
    // with a Provisioned Event.
    let dev = wait_until_within("status.provisioning", LIMIT, || {
        let d = get(cp, NS, "sipdevice", "desk")?;
        (d["status"]["provisioning"]["userAgent"] == USER_AGENT).then_some(d)
    });
    let p = &dev["status"]["provisioning"];
    assert_eq!(p["vendor"], "json");
    assert!(
        p["source"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{p}"
    );
    assert!(p["lastFetchTime"].is_string(), "{p}");
    let shown = [
        "get",
        "sipdevice",
        "desk",
        "-n",
        NS,
        "--show-managed-fields",
    ];
    let with_managers = cp.get_json(&shown).expect("the device");
    let managers: Vec<&str> = with_managers["metadata"]["managedFields"]
        .as_array()
        .expect("managedFields")
        .iter()
        .filter_map(|m| m["manager"].as_str())
        .collect();
    assert!(
        managers.contains(&"switchboard-provisioning"),
        "{managers:?}"
    );
    // The operator's own status is untouched.
    assert_eq!(dev["status"]["sipUri"], device.object["status"]["sipUri"]);
    wait_until_within("the Provisioned Event", LIMIT, || {
        let events = cp.get_json(&["get", "events", "-n", NS])?;
        events["items"]
            .as_array()?
            .iter()
            .find(|e| {
                e["reason"] == "Provisioned"
                    && e["involvedObject"]["name"] == "desk"
                    && e["message"]
                        .as_str()
                        .is_some_and(|m| m.contains(USER_AGENT))
            })
            .map(|_| ())
    });

    // Another site's credentials fetch nothing of this site.
    let refused = fetch(&prov, ("branch", "branch-secret"));
    assert_eq!(refused.status, 401, "{refused:?}");
    assert!(!refused.body.contains(&device.password));

    // Rotation: the operator writes a new password; the next fetch carries it.
    cp.kubectl_ok(
        &[
            "annotate",
            "-n",
            NS,
            "sipdevice",
            "desk",
            "sip.switchboard.dev/rotate-credentials=1",
        ],
        None,
    );
    let secret = device.object["status"]["credentialsSecret"]
        .as_str()
        .unwrap()
        .to_string();
    let rotated = wait_until_within("the rotated password", LIMIT, || {
        secret_value(cp, NS, &secret, "password").filter(|p| *p != device.password)
    });
    let after = account(&fetch(&prov, ("hq", "hq-secret"))).expect("served");
    assert_eq!(after["password"].as_str(), Some(rotated.as_str()));
}

/// The `ProvisioningReady` condition of Site `name`: (status, reason, message).
fn provisioning_ready(
    cp: &switchboard_testkit::controlplane::ControlPlane,
    ns: &str,
    name: &str,
) -> Option<(String, String, String)> {
    let site = get(cp, ns, "site", name)?;
    let c = site["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "ProvisioningReady")?
        .clone();
    let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
    Some((s("status"), s("reason"), s("message")))
}

/// A Site naming a login Secret that does not exist says so in a condition and a Warning
/// Event, with the command that fixes it; once the Secret exists the condition turns true.
/// The operator's own conditions stay as they are.
#[test]
fn a_site_whose_login_secret_is_missing_says_what_to_do() {
    let Some((cp, inst)) = installation::shared() else {
        return;
    };
    let _prov = inst.start_provisioning(cp);
    let ns = "provisioning-login";
    ensure_namespace(cp, ns);
    let site = format!(
        "apiVersion: sip.switchboard.dev/v1alpha1\nkind: Site\nmetadata: {{name: lab, namespace: {ns}}}\n\
         spec:\n  domain: lab.provisioning.test\n  extensions: \"1000-1999\"\n  provisioning:\n    credentialsSecretRef: {{name: lab-login}}\n"
    );
    cp.kubectl_ok(&["apply", "-f", "-"], Some(&site));
    let (status, reason, message) = inst.explain(|| {
        wait_until_within("ProvisioningReady=False", LIMIT, || {
            provisioning_ready(cp, ns, "lab").filter(|c| c.0 == "False")
        })
    });
    assert_eq!(reason, "SecretNotFound", "{status} {message}");
    assert!(
        message.contains(&format!("kubectl -n {ns} create secret generic lab-login")),
        "{message}"
    );
    wait_until_within("the Warning Event", LIMIT, || {
        let events = cp.get_json(&["get", "events", "-n", ns])?;
        events["items"]
            .as_array()?
            .iter()
            .find(|e| {
                e["type"] == "Warning"
                    && e["reason"] == "SecretNotFound"
                    && e["involvedObject"]["name"] == "lab"
            })
            .map(|_| ())
    });
    // The operator still accepts the site: its login is not part of SIP service.
    wait_until_within("the operator's Accepted", LIMIT, || {
        let s = get(cp, ns, "site", "lab")?;
        switchboard_tests::resources::condition(&s, "Accepted")
            .filter(|c| *c == "True")
            .map(|_| ())
    });

    let secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: lab-login, namespace: {ns}}}\nstringData: {{username: lab, password: lab-secret}}\n"
    );
    cp.kubectl_ok(&["apply", "-f", "-"], Some(&secret));
    // Read again within the service's period (30 s).
    let (_, reason, _) = wait_until_within(
        "ProvisioningReady=True",
        LIMIT + std::time::Duration::from_secs(30),
        || provisioning_ready(cp, ns, "lab").filter(|c| c.0 == "True"),
    );
    assert_eq!(reason, "CredentialsFound");
}
