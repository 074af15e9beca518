//! What compiling says about each object, for its status.

use crate::key::ObjectKey;
use std::collections::BTreeMap;
use switchboard_crds::config::RegistrarConfig;

/// Why an object is not in the published config (the `reason` of `Ready=False`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotReady {
    /// CamelCase reason.
    pub reason: &'static str,
    /// Explanation.
    pub message: String,
}

impl NotReady {
    /// A reason and message.
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        NotReady {
            reason,
            message: message.into(),
        }
    }
}

/// In the config, or why not.
pub type Ready = Result<(), NotReady>;

/// A device's compiled outcome. Its effective settings are not kept here (100 000 copies of
/// restrictions add up): [`crate::effective::of_device`] recomputes them for the status.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceOutcome {
    /// `sip:<user>@<domain>`, when the user and domain are known.
    pub sip_uri: Option<String>,
    /// Whether it is in the config.
    pub ready: Ready,
}

/// A site's compiled outcome.
#[derive(Clone, Debug, PartialEq)]
pub struct SiteOutcome {
    /// Devices naming the site.
    pub devices: u32,
    /// Of those, devices the registrar reports registered.
    pub registered: u32,
    /// Whether its domain is in the config.
    pub ready: Ready,
}

/// A pattern's compiled outcome.
#[derive(Clone, Debug, PartialEq)]
pub struct PatternOutcome {
    /// Published devices that use it.
    pub used_by: u32,
    /// Whether a version of it is available to devices.
    pub ready: Ready,
}

/// The compiler's output.
#[derive(Clone, Debug, Default)]
pub struct Compiled {
    /// The sealed config.
    pub config: RegistrarConfig,
    /// Per device.
    pub devices: BTreeMap<ObjectKey, DeviceOutcome>,
    /// Per site.
    pub sites: BTreeMap<ObjectKey, SiteOutcome>,
    /// Per pattern.
    pub patterns: BTreeMap<ObjectKey, PatternOutcome>,
    /// Per registration.
    pub registrations: BTreeMap<ObjectKey, Ready>,
}
