//! Outbound registrations (UAC): the registrar registers to upstream PBXs and carriers on
//! behalf of `SipRegistration`s, so calls to those addresses arrive here.
//!
//! - [`machine`]: the pure state machine of one registration (challenge answers, refresh at
//!   half the granted expiry, 423 → Min-Expires, capped exponential backoff with jitter,
//!   unregistration on removal or shutdown).
//! - [`client`]: the task that drives one registration over a [`flow`] (UDP with RFC 3261
//!   retransmissions, TCP, TLS), plus, with `subscribe`, a SUBSCRIBE leg per event package
//!   whose NOTIFYs it answers.
//! - [`presence`]: pure: the `presence` and `dialog` packages, `Subscription-State`, PIDF and
//!   dialog-info bodies → busy/idle/ringing per watched entity.
//! - [`manager`]: the supervisor that diffs config reloads and bridges the tasks to the
//!   [`index`], the status reporter and the phase-change callbacks (`crate::callback`).
//! - [`index`]: the live state of each registration (`/debug/registrations`, target lookup
//!   for incoming calls, the status written): phase, subscriptions, entities, callback.
//! - Digest answers come from `crate::auth::client`, the client half of the registrar's digest
//!   code (same algorithms and parser as the server side).
//! - [`sip`]: request text and the response fields a UAC reads.
//!
//! Contact: `sip:<username>@<advertised address for the transport>`, so upstream calls reach
//! the registrar's listening socket; the address comes from [`client::ContactAddrs`].

pub mod client;
pub mod flow;
pub mod index;
pub mod machine;
pub mod manager;
pub mod presence;
pub mod sip;

pub use client::{ClientSettings, ContactAddrs, NotifyReport, Report, Update};
pub use machine::Timing;
pub use manager::{follow_config, run, Manager, RegistrationView, UacIndex};
