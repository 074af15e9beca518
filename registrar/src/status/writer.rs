//! The I/O edge of the status reporter: one server-side-apply PATCH of the status
//! subresource per write, under field manager `switchboard-registrar`, touching only the
//! registrar's fields; and an Event when the state flips.

use super::desired::{summary, Desired, Key, Kind};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource};
use serde_json::json;
use std::future::Future;
use switchboard_crds::registration::RegistrationPhase;
use switchboard_crds::{SipDevice, SipRegistration};

/// The field manager of every registrar write.
pub const FIELD_MANAGER: &str = "switchboard-registrar";

/// Why a write failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The resource is gone (404): forget it.
    #[error("{0} not found")]
    Gone(String),
    /// Anything else: retry later.
    #[error("writing {0}: {1}")]
    Transient(String, String),
}

/// Something that writes one desired status.
pub trait StatusSink: Send + Sync + 'static {
    /// Writes `desired` for `key` (`previous` is what was last written, for Events).
    /// Returns how many API calls it made.
    fn write(
        &self,
        key: &Key,
        desired: &Desired,
        previous: Option<&Desired>,
    ) -> impl Future<Output = Result<u32, WriteError>> + Send;
}

/// Writes through the Kubernetes API.
#[derive(Clone)]
pub struct KubeSink {
    client: Client,
    recorder: Recorder,
}

impl KubeSink {
    /// A sink for `client`; Events name `replica` as the reporting instance.
    pub fn new(client: Client, replica: Option<String>) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: FIELD_MANAGER.into(),
                instance: replica,
            },
        );
        KubeSink { client, recorder }
    }
}

/// The apply body for `desired`: apiVersion, kind and only the registrar's status fields.
/// For a device that is `registration` and the one `Registered` condition: `conditions` is a
/// list-map keyed by `type`, so applying a list of that entry alone claims it and leaves the
/// operator's `Accepted` and `Ready` as they are.
pub fn apply_body(desired: &Desired) -> serde_json::Value {
    let api_version = format!("{}/{}", switchboard_crds::GROUP, switchboard_crds::VERSION);
    match desired {
        Desired::Device(dev) => {
            let mut status = json!({ "registration": dev.registration });
            if let Some(c) = &dev.registered {
                status["conditions"] = json!([c]);
            }
            json!({
                "apiVersion": api_version,
                "kind": "SipDevice",
                "status": status,
            })
        }
        Desired::Registration(st) => json!({
            "apiVersion": api_version,
            "kind": "SipRegistration",
            "status": st,
        }),
    }
}

fn event_for(desired: &Desired, reason: &'static str) -> Event {
    let (type_, note) = match desired {
        // The condition's message: the summary, or why the bindings were dropped.
        Desired::Device(dev) => (
            EventType::Normal,
            dev.registered
                .as_ref()
                .map_or_else(|| summary(&dev.registration), |c| c.message.clone()),
        ),
        Desired::Registration(st) => {
            let t = if st.phase == Some(RegistrationPhase::Failed) {
                EventType::Warning
            } else {
                EventType::Normal
            };
            (t, st.last_reason.clone().unwrap_or_default())
        }
    };
    Event {
        type_,
        reason: reason.to_string(),
        note: Some(note),
        action: "Register".into(),
        secondary: None,
    }
}

fn classify(key: &Key, e: kube::Error) -> WriteError {
    match &e {
        kube::Error::Api(s) if s.code == 404 => WriteError::Gone(key.to_string()),
        _ => WriteError::Transient(key.to_string(), e.to_string()),
    }
}

impl StatusSink for KubeSink {
    async fn write(
        &self,
        key: &Key,
        desired: &Desired,
        previous: Option<&Desired>,
    ) -> Result<u32, WriteError> {
        let pp = PatchParams::apply(FIELD_MANAGER).force();
        let body = Patch::Apply(apply_body(desired));
        let reference = match key.kind {
            Kind::Device => {
                let api: Api<SipDevice> = Api::namespaced(self.client.clone(), &key.namespace);
                api.patch_status(&key.name, &pp, &body)
                    .await
                    .map_err(|e| classify(key, e))?
                    .object_ref(&())
            }
            Kind::Registration => {
                let api: Api<SipRegistration> =
                    Api::namespaced(self.client.clone(), &key.namespace);
                api.patch_status(&key.name, &pp, &body)
                    .await
                    .map_err(|e| classify(key, e))?
                    .object_ref(&())
            }
        };
        let mut calls = 1;
        if let Some(note) = desired.callback_given_up(previous) {
            calls += 1;
            let event = Event {
                type_: EventType::Warning,
                reason: "CallbackFailed".into(),
                note: Some(note),
                action: "Callback".into(),
                secondary: None,
            };
            if let Err(e) = self.recorder.publish(&event, &reference).await {
                tracing::warn!(resource = %key, error = %e, "could not publish the CallbackFailed event");
            }
        }
        if let Some(reason) = desired.flip_from(previous) {
            calls += 1;
            if let Err(e) = self
                .recorder
                .publish(&event_for(desired, reason), &reference)
                .await
            {
                tracing::warn!(resource = %key, error = %e, "could not publish the {reason} event");
            }
        }
        Ok(calls)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::desired::device_status;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;
    use switchboard_crds::common::Transport;
    use switchboard_crds::device::ContactStatus;
    use switchboard_crds::registration::SipRegistrationStatus;

    fn t(secs: i64) -> Time {
        Time(Timestamp::from_second(1_700_000_000 + secs).unwrap())
    }

    #[test]
    fn device_body_holds_the_registration_and_the_registered_condition_only() {
        let c = ContactStatus {
            uri: "sip:a@192.0.2.1".into(),
            transport: Transport::Tcp,
            source_address: "192.0.2.1:40000".into(),
            user_agent: None,
            expires: t(60),
            replica: Some("r0".into()),
        };
        let body = apply_body(&Desired::Device(device_status(vec![c], t(0))));
        assert_eq!(body["apiVersion"], "sip.switchboard.dev/v1alpha1");
        assert_eq!(body["kind"], "SipDevice");
        let status = body["status"].as_object().unwrap();
        assert_eq!(
            status.keys().collect::<Vec<_>>(),
            ["conditions", "registration"]
        );
        assert_eq!(body["status"]["registration"]["state"], "Registered");
        assert_eq!(
            body["status"]["conditions"],
            json!([{
                "type": "Registered",
                "status": "True",
                "reason": "Registered",
                "message": "1 contact(s); sip:a@192.0.2.1 over TCP from 192.0.2.1:40000",
                "lastTransitionTime": "2023-11-14T22:13:20Z",
            }])
        );

        let gone = apply_body(&Desired::Device(device_status(vec![], t(5))));
        let cond = &gone["status"]["conditions"][0];
        assert_eq!(
            (&cond["status"], &cond["reason"], &cond["message"]),
            (
                &json!("False"),
                &json!("Unregistered"),
                &json!("no live binding")
            )
        );
    }

    #[test]
    fn registration_body_has_no_conditions() {
        let body = apply_body(&Desired::Registration(SipRegistrationStatus {
            phase: Some(RegistrationPhase::Successful),
            ..Default::default()
        }));
        assert_eq!(body["kind"], "SipRegistration");
        assert_eq!(body["status"]["phase"], "Successful");
        assert!(body["status"].get("conditions").is_none());
    }
}
