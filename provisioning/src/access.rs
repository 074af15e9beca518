//! Who may fetch a file: HTTP basic credentials (over HTTPS only) checked against the
//! provisioning logins of the device's site. Pure.

use crate::inventory::SiteLogin;
use base64::Engine;
use sha2::{Digest, Sha256};

/// User name and password of an `Authorization: Basic …` header; `None` for any other.
pub fn basic(header: &str) -> Option<(String, String)> {
    let (scheme, value) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// Whether `user`/`password` is one of `logins`. Compared as SHA-256 digests, so the time
/// taken does not tell how much of a guess was right.
pub fn admits(logins: &[SiteLogin], user: &str, password: &str) -> bool {
    let given = digest(user, password);
    logins.iter().fold(false, |ok, l| {
        ok | (digest(&l.username, &l.password) == given)
    })
}

fn digest(user: &str, password: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(user.as_bytes());
    h.update([0]);
    h.update(password.as_bytes());
    h.finalize().into()
}

/// The `WWW-Authenticate` challenge.
pub const CHALLENGE: &str = "Basic realm=\"switchboard-provisioning\", charset=\"UTF-8\"";

#[cfg(test)]
mod tests {
    use super::*;

    fn login(site: &str, u: &str, p: &str) -> SiteLogin {
        SiteLogin {
            site: site.into(),
            username: u.into(),
            password: p.into(),
        }
    }

    #[test]
    fn basic_header_reads_user_and_password() {
        // "hq:s3cret:x" — a password may hold colons.
        assert_eq!(
            basic("Basic aHE6czNjcmV0Ong="),
            Some(("hq".into(), "s3cret:x".into()))
        );
        assert_eq!(
            basic("basic aHE6czNjcmV0Ong="),
            Some(("hq".into(), "s3cret:x".into()))
        );
        for bad in ["Digest x", "Basic !!", "Basic aHE=", ""] {
            assert_eq!(basic(bad), None, "{bad}");
        }
    }

    #[test]
    fn only_a_listed_login_is_admitted() {
        let logins = [login("hq", "hq", "one"), login("hq", "ops", "two")];
        assert!(admits(&logins, "ops", "two"));
        assert!(!admits(&logins, "hq", "two"));
        assert!(!admits(&logins, "branch", "one"));
        assert!(!admits(&[], "hq", "one"));
        // The separator cannot be moved between user and password.
        assert!(!admits(&[login("s", "a", "bc")], "ab", "c"));
    }
}
