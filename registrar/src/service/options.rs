//! OPTIONS (RFC 3261 §11): a phone's or an upstream's keepalive (qualify), and the question of
//! what this registrar supports.

use super::ALLOW;
use crate::message::Response;

/// 200 with the methods this registrar answers and the body it accepts.
pub(super) fn answer<'r>(reply: impl Fn(u16, &'static str) -> Response<'r>) -> Response<'r> {
    reply(200, "OK")
        .with("Allow", ALLOW)
        .with("Accept", "application/sdp")
}
