//! Each served file is recorded: in a cluster in the device's `status.provisioning` (server-side
//! apply under field manager `switchboard-provisioning`, that field alone) with a
//! `Provisioned` Event; standalone in the log only.

use crate::fetch::Fetch;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder as EventRecorder, Reporter};
use kube::{Client, Resource};
use serde_json::json;
use switchboard_crds::device::ProvisioningStatus;
use switchboard_crds::SipDevice;

/// The field manager of every write.
pub const FIELD_MANAGER: &str = "switchboard-provisioning";

/// Where fetches are recorded.
#[derive(Clone)]
pub enum Recorder {
    /// The log only (standalone).
    Log,
    /// The device's status and an Event.
    Kube {
        /// The client.
        client: Client,
        /// Kube's Event recorder.
        events: Box<EventRecorder>,
    },
}

impl Recorder {
    /// Records in the API through `client`; Events name `instance` (the pod) as reporter.
    pub fn kube(client: Client, instance: Option<String>) -> Recorder {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance,
        };
        Recorder::Kube {
            events: Box::new(EventRecorder::new(client.clone(), reporter)),
            client,
        }
    }

    /// Records one fetch; a failure is logged, never returned: the phone has its file.
    pub async fn record(&self, f: &Fetch) {
        tracing::info!(
            device = %format!("{}/{}", f.namespace, f.name),
            vendor = f.vendor.name(),
            source = %f.source,
            user_agent = f.user_agent.as_deref().unwrap_or(""),
            assigned = f.assigned,
            "provisioning file served"
        );
        if let Recorder::Kube { client, events } = self {
            if let Err(e) = write(client, events, f).await {
                tracing::warn!(device = %format!("{}/{}", f.namespace, f.name), error = %e, "could not record the fetch");
            }
        }
    }
}

/// The apply body: apiVersion, kind and `status.provisioning` alone.
pub fn apply_body(f: &Fetch) -> serde_json::Value {
    let at = Timestamp::try_from(f.at).unwrap_or(Timestamp::UNIX_EPOCH);
    let status = ProvisioningStatus {
        last_fetch_time: Time(at),
        source: f.source.to_string(),
        user_agent: f.user_agent.clone(),
        vendor: f.vendor.name().into(),
    };
    json!({
        "apiVersion": format!("{}/{}", switchboard_crds::GROUP, switchboard_crds::VERSION),
        "kind": "SipDevice",
        "status": { "provisioning": status },
    })
}

/// What the Event says: the address without its port, so that a phone's periodic fetches
/// make one Event series rather than one Event each.
pub fn note(f: &Fetch) -> String {
    let what = if f.assigned {
        "file"
    } else {
        "file (unassigned notice)"
    };
    format!(
        "{} {what} fetched from {} by {}",
        f.vendor.name(),
        f.source.ip(),
        f.user_agent.as_deref().unwrap_or("an unnamed client")
    )
}

async fn write(client: &Client, events: &EventRecorder, f: &Fetch) -> anyhow::Result<()> {
    let device_ns = f.namespace.as_str();
    let api: Api<SipDevice> = Api::namespaced(client.clone(), device_ns);
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let device = api
        .patch_status(&f.name, &pp, &Patch::Apply(apply_body(f)))
        .await?;
    let event = Event {
        type_: EventType::Normal,
        reason: "Provisioned".into(),
        note: Some(note(f)),
        action: "Provision".into(),
        secondary: None,
    };
    events.publish(&event, &device.object_ref(&())).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vendor::Vendor;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn the_body_holds_the_provisioning_status_alone() {
        let f = Fetch {
            namespace: "acme".into(),
            name: "lobby".into(),
            vendor: Vendor::Yealink,
            source: "192.0.2.7:40000".parse().unwrap(),
            user_agent: Some("Yealink SIP-T46S 66.86.0.15".into()),
            at: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            assigned: true,
        };
        let body = apply_body(&f);
        assert_eq!(body["kind"], "SipDevice");
        assert_eq!(body["status"].as_object().unwrap().len(), 1);
        let p = &body["status"]["provisioning"];
        assert_eq!(p["lastFetchTime"], "2023-11-14T22:13:20Z");
        assert_eq!(p["source"], "192.0.2.7:40000");
        assert_eq!(p["userAgent"], "Yealink SIP-T46S 66.86.0.15");
        assert_eq!(p["vendor"], "yealink");
        assert_eq!(
            note(&f),
            "yealink file fetched from 192.0.2.7 by Yealink SIP-T46S 66.86.0.15"
        );
    }
}
