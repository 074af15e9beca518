//! `kubectl switchboard bindings DEVICE`: the device's live contacts across the registrar's
//! replicas, as the registrar wrote them into `status.registration`.

use crate::table;
use k8s_openapi::jiff::Timestamp;
use kube::{Api, Client, ResourceExt};
use switchboard_crds::SipDevice;

/// The bindings of `device` at `now`: a table, or a line saying there are none.
pub fn table(device: &SipDevice, now: Timestamp) -> String {
    let name = format!(
        "{}/{}",
        device.namespace().unwrap_or_default(),
        device.name_any()
    );
    let contacts = device
        .status
        .as_ref()
        .and_then(|s| s.registration.as_ref())
        .map(|r| r.contacts.as_slice())
        .unwrap_or_default();
    if contacts.is_empty() {
        return format!("{name}: Unregistered, no live bindings\n");
    }
    let rows: Vec<Vec<String>> = contacts
        .iter()
        .map(|c| {
            let left = c.expires.0.as_second() - now.as_second();
            vec![
                c.uri.clone(),
                c.transport.to_string(),
                c.source_address.clone(),
                c.replica.clone().unwrap_or_else(|| "-".into()),
                if left > 0 {
                    format!("{left}s")
                } else {
                    "expired".into()
                },
                c.user_agent.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    table::render(
        &[
            "CONTACT",
            "TRANSPORT",
            "SOURCE",
            "REPLICA",
            "EXPIRES IN",
            "USER AGENT",
        ],
        &rows,
    )
}

/// Reads device `name` of `namespace` and tabulates its bindings.
pub async fn run(client: Client, namespace: &str, name: &str) -> anyhow::Result<String> {
    let api: Api<SipDevice> = Api::namespaced(client, namespace);
    let device = api.get(name).await?;
    Ok(table(&device, Timestamp::now()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(contacts: serde_json::Value) -> SipDevice {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "sip.switchboard.dev/v1alpha1", "kind": "SipDevice",
            "metadata": {"name": "desk", "namespace": "acme"},
            "spec": {"macAddress": "00:1a:2b:3c:4d:5e", "sipUser": "desk"},
            "status": {"registration": {"state": "Registered", "contacts": contacts}}
        }))
        .unwrap()
    }

    #[test]
    fn one_row_per_contact_with_its_replica_and_time_left() {
        let d = device(serde_json::json!([
            {"uri": "sip:k3-desk@192.0.2.7:5060", "transport": "UDP",
             "sourceAddress": "192.0.2.7:5060", "userAgent": "Yealink T46U",
             "expires": "2026-12-01T00:10:00Z", "replica": "registrar-1"},
            {"uri": "sip:k3-desk@192.0.2.8:5061;transport=tls", "transport": "TLS",
             "sourceAddress": "198.51.100.4:50312", "expires": "2026-12-01T00:00:30Z"}
        ]));
        let now: Timestamp = "2026-12-01T00:01:00Z".parse().unwrap();
        let out = table(&d, now);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert!(lines[0].starts_with("CONTACT"), "{out}");
        assert!(
            lines[1].contains("registrar-1") && lines[1].contains("540s"),
            "{out}"
        );
        assert!(lines[1].ends_with("Yealink T46U"), "{out}");
        assert!(
            lines[2].contains("expired") && lines[2].ends_with('-'),
            "{out}"
        );
    }

    #[test]
    fn an_unregistered_device_says_so() {
        let d = device(serde_json::json!([]));
        assert_eq!(
            table(&d, Timestamp::now()),
            "acme/desk: Unregistered, no live bindings\n"
        );
    }
}
