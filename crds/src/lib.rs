//! The Switchboard API.
//!
//! - [`site`], [`device`], [`pattern`], [`registration`]: the four custom resources of group
//!   `sip.switchboard.dev/v1alpha1`.
//! - [`dialrules`] and [`restrictions`]: the pure dial-plan engine the registrar runs on every call.
//! - [`validation`]: checks the API server cannot do (regexes, cross-field rules), shared by the
//!   operator and `crdgen --check`.
//! - [`config`]: the compiled registrar config, the one contract between operator and registrar.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod common;
pub mod config;
pub mod device;
pub mod dialrules;
pub mod documents;
pub mod manifests;
pub mod pattern;
pub mod registration;
pub mod restrictions;
pub mod shards;
pub mod site;
pub mod validation;

pub use device::{SipDevice, SipDeviceSpec, SipDeviceStatus};
pub use pattern::{CallPattern, CallPatternSpec, CallPatternStatus};
pub use registration::{SipRegistration, SipRegistrationSpec, SipRegistrationStatus};
pub use site::{Site, SiteSpec, SiteStatus};

/// API group of every Switchboard resource.
pub const GROUP: &str = "sip.switchboard.dev";
/// API version of every Switchboard resource.
pub const VERSION: &str = "v1alpha1";
