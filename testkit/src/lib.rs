//! What Switchboard's tests run against, shared by the test binaries of every crate:
//!
//! - [`process`]: temporary directories, free loopback ports, waits on a condition with a
//!   deadline, the repository root.
//! - [`daemon`]: a program running in the background with its output in a log file.
//! - [`examples`]: the shipped `examples/` folders and their YAML documents.
//! - [`controlplane`]: a real Kubernetes control plane (etcd, kube-apiserver,
//!   kube-controller-manager) per test binary, started by `scripts/controlplane.sh`, and
//!   `kubectl` against it.
//! - [`http`]: GET against the binaries' HTTP endpoints, Prometheus text read back, a local
//!   HTTP receiver for what they POST (callbacks).
//! - [`https`]: GET over TLS as a phone fetching its provisioning file does it.
//! - [`sip`]: a SIP client's side: REGISTER requests, responses read back, digest answers.
//! - [`baresip`]: a real softphone registering headless.
//! - [`browser`]: a browser softphone (chromium running JsSIP) over SIP WebSocket.
//! - [`linphone`]: a real softphone configured only by remote provisioning.
//! - [`kamailio`]: Kamailio as an upstream registrar, from a config of the test's own.
//!
//! Nothing here knows Switchboard's own types: it starts and talks to other programs.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod baresip;
pub mod browser;
pub mod controlplane;
pub mod daemon;
pub mod examples;
pub mod http;
pub mod https;
pub mod kamailio;
pub mod linphone;
pub mod process;
pub mod sip;

pub use http::{http_get, metric_sum};
pub use process::{
    free_port, free_port_on, repo_root, temp_dir, wait_until, wait_until_within, DEADLINE,
};
