//! Switchboard's SIP registrar.
//!
//! The modules read like Kamailio's split, each with a narrow interface, pure logic apart from
//! I/O so that the logic is unit-tested without a network:
//!
//! | module | what it is |
//! | --- | --- |
//! | [`message`] | SIP parsing, header readers, stream framing, response building |
//! | [`transport`] | UDP, TCP and TLS listeners, `received`/`rport` (RFC 3581) |
//! | [`generations`] | the bounded two-generation map behind the transaction cache and nonce-count replay |
//! | [`transaction`] | the response cache that absorbs retransmissions |
//! | [`auth`] | digest authentication (RFC 2617/7616/8760), stateless HMAC nonces, replay and failure limits |
//! | [`location`] | the location store trait, in memory (one replica) or in Redis (several) |
//! | [`cluster`] | the sibling replicas: membership, liveness probes, ownership of outbound registrations, the way to a phone another replica holds |
//! | [`registrar`] | REGISTER processing (RFC 3261 §10.3) as a pure function, and change events |
//! | [`proxy`] | the stateful proxy (RFC 3261 §16): authenticated calls routed, forked, cancelled, relayed through its transactions |
//! | [`routing`] | call routing, pure: caller + dialled number + config → extension, user, trunk, refused, not found |
//! | [`service`] | the request dispatcher that wires the above per request |
//! | [`config`] | the hot-swappable compiled config, from a file or the operator's Secrets in Kubernetes |
//! | [`metrics`], [`http`] | Prometheus metrics, `/metrics`, `/healthz`, `/readyz`, `/debug/bindings`, `/debug/registrations` |
//! | [`server`] | the runtime: binds sockets, spawns tasks, shuts down gracefully |
//! | [`cli`] | command-line options and the `ha1` helper |
//! | [`status`] | the status reporter: coalesced, rate-limited server-side apply of `SipDevice`/`SipRegistration` status |
//! | [`uac`] | outbound registrations (and presence subscriptions) to upstream servers |
//! | [`fuzz`] | the entry points fuzzing drives: every parser that sees network bytes, and the whole pipeline |

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod auth;
pub mod callback;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod fuzz;
pub mod generations;
pub mod http;
pub mod location;
pub mod message;
pub mod metrics;
pub mod proxy;
pub mod registrar;
pub mod routing;
pub mod server;
pub mod service;
pub mod status;
pub mod transaction;
pub mod transport;
pub mod uac;
