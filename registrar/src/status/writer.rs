//! The I/O edge of the status reporter: one server-side-apply PATCH of the status
//! subresource per write, under field manager `switchboard-registrar`, touching only the
//! registrar's fields; and an Event when the state flips.

use super::desired::{Desired, Key, Kind};
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
pub fn apply_body(desired: &Desired) -> serde_json::Value {
    let api_version = format!("{}/{}", switchboard_crds::GROUP, switchboard_crds::VERSION);
    match desired {
        Desired::Device(reg) => json!({
            "apiVersion": api_version,
            "kind": "SipDevice",
            "status": { "registration": reg },
        }),
        Desired::Registration(st) => json!({
            "apiVersion": api_version,
            "kind": "SipRegistration",
            "status": st,
        }),
    }
}

fn event_for(desired: &Desired, reason: &'static str) -> Event {
    let (type_, note) = match desired {
        Desired::Device(reg) => {
            let note = match reg.contacts.first() {
                Some(c) => format!(
                    "{} contact(s); {} over {} from {}{}",
                    reg.contacts.len(),
                    c.uri,
                    c.transport,
                    c.source_address,
                    c.user_agent
                        .as_deref()
                        .map(|u| format!(" ({u})"))
                        .unwrap_or_default()
                ),
                None => "no live binding".to_string(),
            };
            (EventType::Normal, note)
        }
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
