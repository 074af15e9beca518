//! Reading Switchboard's resources back through `kubectl`, as a platform engineer would.

use base64::Engine as _;
use serde_json::Value;
use std::time::Duration;
use switchboard_testkit::controlplane::ControlPlane;
use switchboard_testkit::wait_until_within;

/// The `status` of condition `type_` of `object` (`"True"`, `"False"`, …), if it has one.
pub fn condition<'a>(object: &'a Value, type_: &str) -> Option<&'a str> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)?["status"]
        .as_str()
}

/// `kind/name` in `namespace` as JSON, `None` while it does not exist.
pub fn get(cp: &ControlPlane, namespace: &str, kind: &str, name: &str) -> Option<Value> {
    cp.get_json(&["get", kind, name, "-n", namespace])
}

/// One value of Secret `namespace/name`, decoded.
pub fn secret_value(cp: &ControlPlane, namespace: &str, name: &str, key: &str) -> Option<String> {
    let secret = get(cp, namespace, "secret", name)?;
    let encoded = secret["data"][key].as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .expect("Secret data is base64");
    Some(String::from_utf8(bytes).expect("a UTF-8 Secret value"))
}

/// The field managers of `object` that own something under `f:spec` (outside `status`).
pub fn spec_managers(object: &Value) -> Vec<String> {
    object["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["subresource"].as_str().unwrap_or("") != "status")
        .filter(|m| m["fieldsV1"].get("f:spec").is_some())
        .filter_map(|m| m["manager"].as_str().map(String::from))
        .collect()
}

/// Waits up to this long for the operator or the registrar to make something true.
pub const LIMIT: Duration = Duration::from_secs(30);

/// A Site `hq` in `namespace` with `domain`, extensions 1000-1999, every default.
pub fn site_manifest(namespace: &str, domain: &str) -> String {
    format!(
        "apiVersion: sip.switchboard.dev/v1alpha1\nkind: Site\nmetadata:\n  name: hq\n  \
         namespace: {namespace}\nspec:\n  domain: {domain}\n  extensions: \"1000-1999\"\n"
    )
}

/// A SipDevice `name` (SIP user suffix `name`) at `extension` of Site `hq`, with generated
/// credentials.
pub fn device_manifest(namespace: &str, name: &str, mac: &str, extension: &str) -> String {
    format!(
        "apiVersion: sip.switchboard.dev/v1alpha1\nkind: SipDevice\nmetadata:\n  name: {name}\n  \
         namespace: {namespace}\nspec:\n  macAddress: \"{mac}\"\n  sipUser: {name}\n  \
         assignment:\n    site:\n      site: hq\n      extension: \"{extension}\"\n"
    )
}

/// A device the operator has accepted, with its generated SIP user and password.
pub struct AcceptedDevice {
    /// The object when it was first seen accepted.
    pub object: Value,
    /// The full SIP user (generated prefix + `spec.sipUser`).
    pub user: String,
    /// The password from its credentials Secret.
    pub password: String,
}

/// Waits until the operator has accepted device `name` and generated its credentials.
pub fn accepted_device(cp: &ControlPlane, namespace: &str, name: &str) -> AcceptedDevice {
    let object = wait_until_within(
        &format!("the operator to accept {namespace}/{name}"),
        LIMIT,
        || {
            let d = get(cp, namespace, "sipdevice", name)?;
            let ok = condition(&d, "Accepted") == Some("True")
                && d["status"]["credentialsSecret"].is_string();
            ok.then_some(d)
        },
    );
    let secret = object["status"]["credentialsSecret"]
        .as_str()
        .expect("a string")
        .to_string();
    let (user, password) = wait_until_within("the generated credentials", LIMIT, || {
        Some((
            secret_value(cp, namespace, &secret, "username")?,
            secret_value(cp, namespace, &secret, "password")?,
        ))
    });
    AcceptedDevice {
        object,
        user,
        password,
    }
}

/// `status.registration.state` of device `name`, if it has one.
pub fn registration_state(cp: &ControlPlane, namespace: &str, name: &str) -> Option<String> {
    let d = get(cp, namespace, "sipdevice", name)?;
    d["status"]["registration"]["state"]
        .as_str()
        .map(String::from)
}

/// Waits until device `name` shows registration state `state`; returns the device.
pub fn wait_registration_state(
    cp: &ControlPlane,
    namespace: &str,
    name: &str,
    state: &str,
) -> Value {
    wait_registration_state_within(cp, namespace, name, state, LIMIT)
}

/// [`wait_registration_state`] with a deadline of `limit`.
pub fn wait_registration_state_within(
    cp: &ControlPlane,
    namespace: &str,
    name: &str,
    state: &str,
    limit: Duration,
) -> Value {
    wait_until_within(
        &format!("{namespace}/{name} to show {state}"),
        limit,
        || {
            let d = get(cp, namespace, "sipdevice", name)?;
            (d["status"]["registration"]["state"] == state).then_some(d)
        },
    )
}
