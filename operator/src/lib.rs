//! The Switchboard operator.
//!
//! One global reconcile, because the registrar config is one global artifact:
//!
//! ```text
//! watch events ─► index ─► credentials ─► validate ─► compile ─► publish ─► status + Events
//!   (runtime)     (pure)    (plan: pure,    (pure)     (pure)     (plan pure,  (desired: pure,
//!                            write: I/O)                          write: I/O)   write: I/O)
//! ```
//!
//! - [`index`]: the four kinds and Secrets, from watch events, no I/O.
//! - [`companions`]: the companion devices a Site keeps for its users (plan: pure, write: I/O).
//! - [`credentials`]: the SIP user scheme, password resolution, generation and rotation.
//! - [`validate`]: cross-object checks, a verdict per object.
//! - [`effective`]: inheritance (site defaults, device overrides, pattern add/remove).
//! - [`compile`]: index + verdicts → [`switchboard_crds::config::RegistrarConfig`].
//! - [`publish`]: the config as shard Secrets; nothing written when the hash is unchanged.
//! - [`status`]: the status each object should have, and the Events its change deserves.
//! - [`runtime`]: watchers, debounce, the reconcile pass, leader election, metrics and HTTP.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod companions;
pub mod compile;
pub mod credentials;
pub mod effective;
pub mod events;
pub mod index;
pub mod key;
pub mod problem;
pub mod publish;
pub mod runtime;
pub mod samples;
pub mod status;
pub mod validate;

/// Field manager for everything the operator writes by server-side apply.
pub const MANAGER: &str = "switchboard-operator";
