//! Outbound registrations (UAC): the registrar registers to upstream PBXs and carriers on
//! behalf of `SipRegistration`s, so calls to those addresses arrive here.
//!
//! - [`machine`]: the pure state machine of one registration (challenge answers, refresh at
//!   half the granted expiry, 423 → Min-Expires, capped exponential backoff with jitter,
//!   unregistration on removal or shutdown).
//! - [`client`]: the task that drives one registration over a [`flow`] (UDP with RFC 3261
//!   retransmissions, TCP, TLS), plus an optional presence SUBSCRIBE leg.
//! - [`manager`]: the supervisor that diffs config reloads, the [`manager::UacIndex`] of live
//!   state (`/debug/registrations`, target lookup for incoming calls), and the bridge to the
//!   status reporter.
//! - Digest answers come from `crate::auth::client`, the client half of the registrar's digest
//!   code (same algorithms and parser as the server side).
//! - [`sip`]: request text and the response fields a UAC reads.
//!
//! Contact: `sip:<username>@<advertised address for the transport>`, so upstream calls reach
//! the registrar's listening socket; the address comes from [`client::ContactAddrs`].

pub mod client;
pub mod flow;
pub mod machine;
pub mod manager;
pub mod sip;

pub use client::{ClientSettings, ContactAddrs, Report};
pub use machine::Timing;
pub use manager::{follow_config, run, Manager, RegistrationView, UacIndex};
