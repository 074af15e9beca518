//! Events on the resources, published best effort: the write an Event tells of is what
//! matters, so one the API refuses is logged, never retried and never fails the write.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder};

/// Publishes a Normal (or, with `warning`, a Warning) Event `reason` with `note` on
/// `reference`; `action` is what the operator was doing.
pub async fn publish(
    recorder: &Recorder,
    reference: &ObjectReference,
    warning: bool,
    reason: &str,
    action: &str,
    note: String,
) {
    let event = Event {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: reason.into(),
        note: Some(note),
        action: action.into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, reference).await {
        tracing::warn!(error = %e, object = ?reference.name, reason, "event not published");
    }
}
