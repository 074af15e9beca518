//! NOTIFY (RFC 6665) that reaches the registrar's listening address.
//!
//! An outbound registration's Contact is this registrar (`uac`), so an upstream's NOTIFY to it
//! (an unsolicited one, or a notifier that answers to the REGISTER's Contact) lands here: it is
//! acknowledged, its state is not used. A presence subscription's own NOTIFYs come back on its
//! flow and are read by `uac/client.rs`.

use crate::message::Response;

/// 200.
pub(super) fn answer<'r>(reply: impl Fn(u16, &'static str) -> Response<'r>) -> Response<'r> {
    reply(200, "OK")
}
