//! Bindings and store decisions for the location-store tests.

use std::time::{Duration, SystemTime};
use switchboard_crds::common::Transport;
use switchboard_registrar::location::Binding;

/// A binding of `contact` made at `now`, expiring `secs` later.
pub fn binding(contact: &str, now: SystemTime, secs: u64) -> Binding {
    Binding {
        contact: contact.into(),
        q: Some(1000),
        expires_at: now + Duration::from_secs(secs),
        registered_at: now,
        updated_at: now,
        call_id: format!("{contact}-call"),
        cseq: 7,
        source: "192.0.2.10:5060".parse().unwrap(),
        transport: Transport::Udp,
        user_agent: Some("test".into()),
        replica: "r0".into(),
    }
}

/// The contacts of `b`, in order.
pub fn contacts(b: &[Binding]) -> Vec<&str> {
    b.iter().map(|b| b.contact.as_str()).collect()
}

/// A decision adding (or refreshing) one contact, for an hour.
pub fn add(contact: &str, now: SystemTime) -> impl FnMut(&[Binding]) -> Option<Vec<Binding>> {
    let mine = binding(contact, now, 3600);
    move |cur: &[Binding]| {
        let mut next: Vec<Binding> = cur
            .iter()
            .filter(|b| b.contact != mine.contact)
            .cloned()
            .collect();
        next.push(mine.clone());
        Some(next)
    }
}
