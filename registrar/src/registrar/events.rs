//! Registration change events, for the status reporter (a later issue) to write
//! `SipDevice.status.registration` from. A refresh that changes nothing emits nothing, so steady
//! refreshes cause zero status writes.

use super::same_uri;
use crate::location::Binding;
use serde::Serialize;
use std::time::SystemTime;

/// What changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ChangeKind {
    /// The device had no binding and now has one or more.
    Registered,
    /// A contact was added to a registered device.
    ContactAdded,
    /// A contact was removed from a device that keeps others.
    ContactRemoved,
    /// A contact was refreshed from another source address or transport (NAT rebinding,
    /// transport switch).
    ContactMoved,
    /// The device removed its last binding (`Expires: 0`, `Contact: *`).
    Unregistered,
    /// Bindings lapsed; `bindings` holds what is left (empty: no longer registered).
    Expired,
    /// The device's credentials changed (rotated, or its SIP user or domain changed): its
    /// bindings were dropped at once, so a phone holding the old password is no longer rung.
    CredentialsChanged,
}

/// One change of a device's bindings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistrationEvent {
    /// `namespace/name` of the SipDevice.
    pub device_id: String,
    /// What changed.
    pub kind: ChangeKind,
    /// The device's live bindings after the change.
    pub bindings: Vec<Binding>,
    /// When.
    #[serde(skip)]
    pub at: SystemTime,
}

/// The changes between two binding sets of one device, in a stable order.
pub fn changes(before: &[Binding], after: &[Binding]) -> Vec<ChangeKind> {
    match (before.is_empty(), after.is_empty()) {
        (true, true) => return vec![],
        (true, false) => return vec![ChangeKind::Registered],
        (false, true) => return vec![ChangeKind::Unregistered],
        (false, false) => {}
    }
    let mut out = Vec::new();
    if after
        .iter()
        .any(|a| !before.iter().any(|b| same_uri(&a.contact, &b.contact)))
    {
        out.push(ChangeKind::ContactAdded);
    }
    if before
        .iter()
        .any(|b| !after.iter().any(|a| same_uri(&a.contact, &b.contact)))
    {
        out.push(ChangeKind::ContactRemoved);
    }
    if after.iter().any(|a| {
        before.iter().any(|b| {
            same_uri(&a.contact, &b.contact) && (a.source != b.source || a.transport != b.transport)
        })
    }) {
        out.push(ChangeKind::ContactMoved);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use switchboard_crds::common::Transport;

    fn b(contact: &str, source: &str) -> Binding {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        Binding {
            contact: contact.into(),
            q: None,
            expires_at: now + Duration::from_secs(60),
            registered_at: now,
            updated_at: now,
            call_id: "c".into(),
            cseq: 1,
            source: source.parse().unwrap(),
            transport: Transport::Udp,
            user_agent: None,
            replica: "r".into(),
        }
    }

    #[test]
    fn kinds() {
        let a = b("sip:a@1", "192.0.2.1:5060");
        let a_moved = b("sip:a@1", "192.0.2.1:6000");
        let c = b("sip:c@1", "192.0.2.1:5060");
        let (just_a, just_c) = (vec![a.clone()], vec![c.clone()]);
        let a_and_c = vec![a.clone(), c.clone()];
        assert_eq!(changes(&[], &just_a), vec![ChangeKind::Registered]);
        assert_eq!(changes(&just_a, &[]), vec![ChangeKind::Unregistered]);
        assert!(
            changes(&just_a, &just_a).is_empty(),
            "a refresh is no change"
        );
        assert_eq!(changes(&just_a, &a_and_c), vec![ChangeKind::ContactAdded]);
        assert_eq!(
            changes(&just_a, &just_c),
            vec![ChangeKind::ContactAdded, ChangeKind::ContactRemoved]
        );
        assert_eq!(changes(&just_a, &[a_moved]), vec![ChangeKind::ContactMoved]);
        assert!(changes(&[], &[]).is_empty());
    }
}
