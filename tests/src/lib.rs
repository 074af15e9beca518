//! Cross-crate tests of Switchboard: the Helm chart and what it grants, the end-to-end script.
//!
//! - [`gotmpl`]: a renderer for the subset of Helm templates the chart uses (no `helm` needed).
//! - [`chart`]: load, render and parse `charts/switchboard`.
//! - [`apicalls`]: the Kubernetes API calls the operator's and registrar's code make, read from
//!   their source, for the RBAC check in `tests/rbac.rs`.
//! - [`installation`]: the chart's CRDs and RBAC on a real control plane, with the operator and a
//!   registrar running as local processes under the chart's ServiceAccounts.
//! - [`resources`]: resources read back through `kubectl` (conditions, Secrets, managed fields).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod apicalls;
pub mod chart;
pub mod gotmpl;
pub mod installation;
pub mod resources;
