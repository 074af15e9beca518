//! Switchboard's provisioning service: a desk phone pointed at it (DHCP option 66, or its
//! vendor's redirect service) fetches its vendor's file by MAC address over HTTPS, with its
//! Site's provisioning credentials, and registers with what it finds.
//!
//! | module | what it is |
//! | --- | --- |
//! | [`mac`] | MAC addresses as phones spell them in file names |
//! | [`digitmap`] | the digit map a device's site and patterns imply (pure) |
//! | [`profile`] | device + site + credentials + registrar address → what every file says (pure) |
//! | [`vendor`] | paths and file formats: Yealink, Polycom, Grandstream, Linphone, JSON (pure) |
//! | [`access`] | HTTP basic credentials against the site's provisioning logins (pure) |
//! | [`fetch`] | one fetch: path, credentials and failure limits, the file |
//! | [`inventory`] | devices, sites and Secrets from the Kubernetes API or a manifest file |
//! | [`site_check`] | whether a Site's provisioning login Secret is usable (pure) |
//! | [`site_status`] | the Sites' `ProvisioningReady` condition and its Events |
//! | [`record`] | a served file recorded in the device's status and an Event |
//! | [`tls`] | the certificate: PEM files, or a self-signed one for a demo |
//! | [`metrics`] | Prometheus metrics, `/metrics`, `/healthz`, `/readyz` over plain HTTP |
//! | [`server`] | the HTTPS listener and its routes |
//! | [`cli`] | command-line options |

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod access;
pub mod cli;
pub mod digitmap;
pub mod fetch;
pub mod inventory;
pub mod mac;
pub mod metrics;
pub mod profile;
pub mod record;
pub mod server;
pub mod site_check;
pub mod site_status;
pub mod tls;
pub mod vendor;
