//! Who may fetch a file: HTTP Digest (RFC 7616, what Linphone's provisioning client speaks) or
//! Basic (RFC 7617) credentials, over HTTPS only, checked against the provisioning logins of
//! the device's site. Digest is verified with the registrar's own digest and stateless-nonce
//! code. Pure (time and the nonce key are given).

use crate::inventory::SiteLogin;
use base64::Engine;
use sha2::{Digest, Sha256};
use switchboard_registrar::auth::digest::{self, Algorithm, Credentials};
use switchboard_registrar::auth::nonce::{NonceKey, NonceStatus};

/// The realm of every challenge.
pub const REALM: &str = "switchboard-provisioning";
/// How long a nonce is good for.
pub const NONCE_TTL_SECS: u64 = 300;

/// Credentials a request carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Given {
    /// `Authorization: Basic …`.
    Basic {
        /// User name.
        user: String,
        /// Password.
        password: String,
    },
    /// `Authorization: Digest …`.
    Digest(Credentials<'static>),
}

impl Given {
    /// The credentials of an `Authorization` header; `None` for another scheme or garbage.
    pub fn parse(header: &str) -> Option<Given> {
        if let Some(c) = Credentials::parse(header) {
            return Some(Given::Digest(c.into_owned()));
        }
        let (scheme, value) = header.trim().split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(value.trim())
            .ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let (user, password) = text.split_once(':')?;
        Some(Given::Basic {
            user: user.to_string(),
            password: password.to_string(),
        })
    }

    /// The user name given.
    pub fn user(&self) -> &str {
        match self {
            Given::Basic { user, .. } => user,
            Given::Digest(c) => &c.username,
        }
    }
}

/// What the credentials turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// One of the logins.
    Admitted,
    /// A digest over a nonce that has expired (answered with a fresh one, `stale=true`, and
    /// not counted as a failure).
    Stale,
    /// None of the logins.
    Refused,
}

/// Whether `given`, sent with a request for `path`, is one of `logins`, at `now_secs`.
pub fn check(
    logins: &[SiteLogin],
    given: &Given,
    path: &str,
    key: &NonceKey,
    now_secs: u64,
) -> Verdict {
    match given {
        Given::Basic { user, password } => {
            let given = basic_digest(user, password);
            let hit = logins.iter().fold(false, |ok, l| {
                ok | (basic_digest(&l.username, &l.password) == given)
            });
            if hit {
                Verdict::Admitted
            } else {
                Verdict::Refused
            }
        }
        Given::Digest(c) => check_digest(logins, c, path, key, now_secs),
    }
}

fn check_digest(
    logins: &[SiteLogin],
    c: &Credentials<'_>,
    path: &str,
    key: &NonceKey,
    now_secs: u64,
) -> Verdict {
    // The digest must cover this request: its path (or an absolute URI ending in it).
    let uri_ok = c.uri == path || c.uri.ends_with(path) && c.uri.contains("://");
    let Some(algorithm) = c.algorithm().filter(|_| uri_ok && c.realm == REALM) else {
        return Verdict::Refused;
    };
    match key.check(&c.nonce, REALM, now_secs, NONCE_TTL_SECS) {
        NonceStatus::Fresh => {}
        NonceStatus::Stale => return Verdict::Stale,
        NonceStatus::Invalid => return Verdict::Refused,
    }
    let hit = logins.iter().filter(|l| l.username == c.username).any(|l| {
        let ha1 = algorithm.hex(format!("{}:{REALM}:{}", l.username, l.password).as_bytes());
        let expected = digest::expected_hex(
            algorithm,
            &ha1,
            "GET",
            &c.uri,
            &c.nonce,
            c.nc.as_deref(),
            c.cnonce.as_deref(),
            c.qop.as_deref(),
        );
        digest::constant_time_eq_ignore_ascii_case(expected.as_str(), &c.response)
    });
    if hit {
        Verdict::Admitted
    } else {
        Verdict::Refused
    }
}

/// Basic credentials compared as SHA-256 digests, so the time taken does not tell how much of
/// a guess was right.
fn basic_digest(user: &str, password: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(user.as_bytes());
    h.update([0]);
    h.update(password.as_bytes());
    h.finalize().into()
}

/// The `WWW-Authenticate` values: Digest (MD5, what phones answer) first, then Basic.
pub fn challenges(key: &NonceKey, now_secs: u64, salt: [u8; 8], stale: bool) -> Vec<String> {
    let nonce = key.issue(REALM, now_secs, salt);
    vec![
        digest::challenge(REALM, &nonce, Algorithm::Md5, stale),
        format!("Basic realm=\"{REALM}\", charset=\"UTF-8\""),
    ]
}

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

    fn basic(u: &str, p: &str) -> Given {
        Given::Basic {
            user: u.into(),
            password: p.into(),
        }
    }

    #[test]
    fn basic_header_reads_user_and_password() {
        // "hq:s3cret:x": a password may hold colons.
        assert_eq!(
            Given::parse("Basic aHE6czNjcmV0Ong="),
            Some(basic("hq", "s3cret:x"))
        );
        assert_eq!(
            Given::parse("basic aHE6czNjcmV0Ong="),
            Some(basic("hq", "s3cret:x"))
        );
        for bad in ["Digest x", "Basic !!", "Basic aHE=", "", "Bearer abc"] {
            assert_eq!(Given::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn only_a_listed_basic_login_is_admitted() {
        let key = NonceKey::new(b"k");
        let logins = [login("hq", "hq", "one"), login("hq", "ops", "two")];
        let check = |g: &Given| check(&logins, g, "/p", &key, 0);
        assert_eq!(check(&basic("ops", "two")), Verdict::Admitted);
        assert_eq!(check(&basic("hq", "two")), Verdict::Refused);
        assert_eq!(check(&basic("branch", "one")), Verdict::Refused);
        // The separator cannot be moved between user and password.
        let ab = [login("s", "a", "bc")];
        assert_eq!(
            super::check(&ab, &basic("ab", "c"), "/p", &key, 0),
            Verdict::Refused
        );
    }

    /// What a client answers to our challenge (RFC 7616 §3.4.1, qop=auth).
    fn answer(challenge: &str, user: &str, password: &str, uri: &str) -> Given {
        let nonce = challenge
            .split("nonce=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let ha1 = Algorithm::Md5.hex(format!("{user}:{REALM}:{password}").as_bytes());
        let response = digest::expected_response(
            Algorithm::Md5,
            &ha1,
            "GET",
            uri,
            nonce,
            Some("00000001"),
            Some("c0ffee"),
            Some("auth"),
        );
        let header = format!(
            "Digest username=\"{user}\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"c0ffee\""
        );
        Given::parse(&header).unwrap()
    }

    #[test]
    fn a_digest_answer_to_our_challenge_is_admitted_for_its_path_only() {
        let key = NonceKey::new(b"k");
        let logins = [login("hq", "hq", "one")];
        let c = challenges(&key, 1000, [1; 8], false);
        assert!(
            c[0].starts_with("Digest realm=\"switchboard-provisioning\""),
            "{c:?}"
        );
        assert!(c[1].starts_with("Basic "), "{c:?}");
        let path = "/provisioning/linphone/001565001002.xml";
        let good = answer(&c[0], "hq", "one", path);
        assert_eq!(good.user(), "hq");
        assert_eq!(check(&logins, &good, path, &key, 1001), Verdict::Admitted);
        assert_eq!(
            check(&logins, &good, "/provisioning/json/x.json", &key, 1001),
            Verdict::Refused
        );
        assert_eq!(
            check(&logins, &good, path, &key, 1000 + NONCE_TTL_SECS + 1),
            Verdict::Stale
        );
        assert_eq!(
            check(&logins, &good, path, &NonceKey::new(b"other"), 1001),
            Verdict::Refused
        );
        let wrong = answer(&c[0], "hq", "two", path);
        assert_eq!(check(&logins, &wrong, path, &key, 1001), Verdict::Refused);
        let absolute = answer(&c[0], "hq", "one", &format!("https://localhost:8443{path}"));
        assert_eq!(
            check(&logins, &absolute, path, &key, 1001),
            Verdict::Admitted
        );
    }
}
