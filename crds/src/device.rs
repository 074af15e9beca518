//! `SipDevice`: a hardware phone or softphone.

use crate::common::{Credentials, Transport};
use crate::site::CallRestrictions;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Label on the companion devices the operator keeps for a Site's users
/// (`spec.companionDevices`): the Site's name. Devices without it are never touched.
pub const COMPANION_OF_LABEL: &str = "sip.switchboard.dev/companion-of";

/// A hardware phone or softphone that registers with the registrar.
// Every printcolumn repeats `type_`; clippy reads that as a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "sip.switchboard.dev",
    version = "v1alpha1",
    kind = "SipDevice",
    namespaced,
    status = "SipDeviceStatus",
    shortname = "sipdev",
    category = "switchboard",
    doc = "A hardware phone or softphone that registers with the Switchboard registrar.",
    printcolumn(
        name = "Assignment",
        type_ = "string",
        json_path = ".status.effective.assignment"
    ),
    printcolumn(name = "Site", type_ = "string", json_path = ".status.effective.site"),
    printcolumn(
        name = "Extension",
        type_ = "string",
        json_path = ".status.effective.extension"
    ),
    printcolumn(
        name = "State",
        type_ = "string",
        json_path = ".status.registration.state"
    ),
    printcolumn(
        name = "Contact",
        type_ = "string",
        json_path = ".status.registration.contacts[0].sourceAddress"
    ),
    printcolumn(
        name = "Accepted",
        type_ = "string",
        priority = 1,
        json_path = ".status.conditions[?(@.type==\"Accepted\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct SipDeviceSpec {
    /// MAC address, `aa:bb:cc:dd:ee:ff` (`-` or no separator accepted); unique in the namespace.
    #[schemars(regex(pattern = r"^([0-9A-Fa-f]{2}[:-]?){5}[0-9A-Fa-f]{2}$"))]
    pub mac_address: String,
    /// The administrator's part of the SIP user; the operator puts a generated prefix before it.
    #[schemars(regex(pattern = r"^[a-zA-Z0-9._-]{1,32}$"))]
    pub sip_user: String,
    /// Where the password is; absent, the operator generates a Secret `<name>-sip-credentials`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Credentials>,
    /// What the device is for; absent or empty, it is `Unassigned`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment: Option<Assignment>,
    /// Bindings (contacts) this device may hold at once, the oldest replaced beyond it; the
    /// site's `registration.maxContacts` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 32))]
    pub max_contacts: Option<u32>,
}

/// At most one of `site` (a common-area phone) or `user` (a companion-mode phone).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.site) && has(self.user))").message("assignment takes exactly one of site or user, not both"))]
pub struct Assignment {
    /// A common-area phone with its own extension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<SiteAssignment>,
    /// A user's companion-mode phone, which rings when the user is called.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<UserAssignment>,
}

/// The kind of assignment a device has.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum AssignmentKind {
    /// May register; every call it places or would receive fails.
    #[default]
    Unassigned,
    /// A common-area phone of a site.
    Site,
    /// A user's companion-mode phone.
    User,
}

impl Assignment {
    /// Which kind of assignment this is.
    pub fn kind(&self) -> AssignmentKind {
        match (&self.site, &self.user) {
            (Some(_), _) => AssignmentKind::Site,
            (None, Some(_)) => AssignmentKind::User,
            (None, None) => AssignmentKind::Unassigned,
        }
    }
}

impl SipDeviceSpec {
    /// The device's assignment kind (`Unassigned` when none is set).
    pub fn assignment_kind(&self) -> AssignmentKind {
        self.assignment
            .as_ref()
            .map(Assignment::kind)
            .unwrap_or_default()
    }

    /// The site the device belongs to, if assigned.
    pub fn site_name(&self) -> Option<&str> {
        let a = self.assignment.as_ref()?;
        a.site
            .as_ref()
            .map(|s| s.site.as_str())
            .or_else(|| a.user.as_ref().map(|u| u.site.as_str()))
    }
}

/// A common-area phone's settings; unset fields inherit the site's.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SiteAssignment {
    /// Name of the `Site` in this namespace.
    #[schemars(length(min = 1, max = 253))]
    pub site: String,
    /// Extension inside the site's range, unique in the site.
    #[schemars(regex(pattern = r"^[0-9]{1,8}$"))]
    pub extension: String,
    /// E.164 caller ID for outside calls; the site's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^\+[1-9][0-9]{1,14}$"))]
    pub outbound_caller_id: Option<String>,
    /// Replaces the site's call restrictions for this device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_restrictions: Option<CallRestrictions>,
    /// CallPatterns to add to or remove from the site's defaults.
    #[serde(default)]
    pub call_patterns: PatternOverrides,
}

/// Changes to the site's default CallPatterns for one device.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PatternOverrides {
    /// CallPattern names enabled in addition to the site's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<String>,
    /// Site default CallPattern names disabled for this device.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

/// A user's companion-mode phone.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct UserAssignment {
    /// Name of the `Site` in this namespace.
    #[schemars(length(min = 1, max = 253))]
    pub site: String,
    /// A user listed in the site's `users`.
    #[schemars(length(min = 1, max = 64))]
    pub user: String,
    /// Ring this device when the user is called.
    #[serde(default = "default_true")]
    pub receive_calls: bool,
}

fn default_true() -> bool {
    true
}

/// Observed state of a device. The operator writes everything but `registration`, which the
/// registrar writes under its own field manager.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SipDeviceStatus {
    /// `Accepted`, `Ready` (operator) and `Registered` (registrar).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The generation the operator last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The device's address of record, `sip:<user>@<domain>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sip_uri: Option<String>,
    /// The Secret holding the SIP user name and password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,
    /// Settings after inheritance from the site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective: Option<EffectiveSettings>,
    /// Live registration state, written by the registrar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration: Option<RegistrationStatus>,
}

/// A device's settings once the site's defaults and the device's overrides are merged.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EffectiveSettings {
    /// `Site`, `User` or `Unassigned`.
    pub assignment: AssignmentKind,
    /// The site the device belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// The device's extension (a common-area phone) or its user's (companion mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extension: Option<String>,
    /// The user of a companion-mode device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Caller ID used for outside calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound_caller_id: Option<String>,
    /// CallPatterns applied to dialled numbers, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub call_patterns: Vec<String>,
    /// Restrictions applied after the patterns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_restrictions: Option<CallRestrictions>,
}

/// Whether a device has live bindings.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RegistrationState {
    /// At least one binding is live.
    Registered,
    /// No binding is live.
    #[default]
    Unregistered,
}

/// Live registration state of a device, written by the registrar.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RegistrationStatus {
    /// `Registered` or `Unregistered`.
    pub state: RegistrationState,
    /// The live bindings.
    #[serde(default)]
    pub contacts: Vec<ContactStatus>,
    /// When the set of bindings last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_change_time: Option<Time>,
}

/// One live binding.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ContactStatus {
    /// The Contact URI the phone registered.
    pub uri: String,
    /// Transport the phone registered over.
    pub transport: Transport,
    /// Address the REGISTER came from (`ip:port`), where the registrar reaches the phone.
    pub source_address: String,
    /// The phone's User-Agent header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// When the binding expires unless refreshed.
    pub expires: Time,
    /// The registrar replica that holds the phone's flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<String>,
}
