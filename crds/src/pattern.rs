//! `CallPattern`: an ordered list of dial rules and what a matching number does.

use crate::dialrules::{self, DialRule};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// An ordered list of dial rules applied left to right to a dialled number, and where a number
/// that passes them goes.
// Every printcolumn repeats `type_`; clippy reads that as a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "sip.switchboard.dev",
    version = "v1alpha1",
    kind = "CallPattern",
    namespaced,
    status = "CallPatternStatus",
    shortname = "callpat",
    category = "switchboard",
    doc = "An ordered list of dial rules applied to dialled numbers, and where matching numbers go.",
    validation = Rule::new("(has(self.spec.rules) && size(self.spec.rules) > 0) != has(self.spec.compact)").message("give either spec.rules or spec.compact, exactly one"),
    printcolumn(name = "Compact", type_ = "string", json_path = ".spec.compact"),
    printcolumn(name = "Used By", type_ = "integer", json_path = ".status.usedBy"),
    printcolumn(name = "Accepted", type_ = "string", json_path = ".status.conditions[?(@.type==\"Accepted\")].status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct CallPatternSpec {
    /// Rules in structured form: `{match, with}` replaces, `{match}` alone filters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub rules: Vec<DialRule>,
    /// Rules in compact form, space-separated: `"[^+*#\w]= ^8=7 ^79\d{9}$"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub compact: Option<String>,
    /// Where a number that passes the rules goes; absent, it is dialled as an extension or user
    /// of the caller's site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<PatternRoute>,
}

impl CallPatternSpec {
    /// The rules in structured form, whichever form the spec used.
    pub fn dial_rules(&self) -> Vec<DialRule> {
        match &self.compact {
            Some(compact) => dialrules::parse_compact(compact),
            None => self.rules.clone(),
        }
    }
}

/// Where a matching number goes: exactly one of extension, user or registration.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.extension) ? 1 : 0) + (has(self.user) ? 1 : 0) + (has(self.registration) ? 1 : 0) == 1").message("route takes exactly one of extension, user or registration"))]
pub struct PatternRoute {
    /// Ring this extension of the caller's site, whatever was dialled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]{1,8}$"))]
    pub extension: Option<String>,
    /// Ring this user of the caller's site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Send the transformed number out through this `SipRegistration` (a trunk).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration: Option<String>,
}

/// Observed state of a CallPattern, written by the operator.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CallPatternStatus {
    /// `Accepted` (an invalid regex is reported here with the rule's index) and `Ready`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// How many devices have this pattern in effect.
    #[serde(default)]
    pub used_by: u32,
    /// The generation the operator last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
