//! SIP messages: parsing bytes into requests, reading the headers a registrar needs, and writing
//! responses.
//!
//! - [`parse`]: bytes → [`Request`] or a [`ParseError`] that says whether the message can still
//!   be answered with a 400 (its Via, From, To, Call-ID and CSeq were readable).
//! - [`headers`]: small parsers for the header values (Via, name-addr, Contact lists, CSeq,
//!   Expires, q-values). They work on the header text [`parse`] cut out, so compact forms and odd
//!   spacing are handled in one place.
//! - [`check`]: what the header fields must satisfy before a message is acted on or
//!   forwarded (single and mandatory fields, the grammar of addresses, Via, CSeq; RFC 4475).
//! - [`response`]: a response built from a request (RFC 3261 §8.2.6).
//! - [`framing`]: where a message ends in a byte stream (TCP, TLS), for the registrar's
//!   listeners and the UAC's flows alike.
//! - [`address`]: IP and socket addresses as text, without the formatter (the source's
//!   address is written on every REGISTER).
//! - [`owned`]: the owned message ([`Msg`]: headers verbatim, body opaque) that the proxy relays
//!   and rewrites and the UAC builds and reads; [`Request`] is the zero-copy view the REGISTER
//!   hot path reads instead.

pub mod address;
pub mod check;
pub mod framing;
pub mod headers;
pub mod owned;
pub mod parse;
pub mod response;
pub mod scan;

pub use owned::{Msg, Start};
pub use parse::{parse, HeaderName, Method, ParseError, Parsed, Request};
pub use response::Response;

/// Largest message accepted on any transport.
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024;
