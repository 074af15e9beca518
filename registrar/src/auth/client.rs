//! The client side of digest (RFC 3261 §22, RFC 7616, RFC 8760), for the registrar's own
//! outbound registrations (`crate::uac`): parse a `WWW-Authenticate`/`Proxy-Authenticate`
//! challenge and compute the `Authorization`/`Proxy-Authorization` answer. It shares the
//! server side's [`Algorithm`], parameter parser and [`expected_response`]; on top it handles
//! the `-sess` variants, `qop=auth` with `cnonce`/`nc`, and the RFC 2069 form without qop.

use super::digest::{auth_params, expected_response, Algorithm};
use std::fmt::Write as _;

/// A parsed digest challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `realm`.
    pub realm: String,
    /// `nonce`.
    pub nonce: String,
    /// `opaque`, echoed back.
    pub opaque: Option<String>,
    /// `algorithm` (MD5 when absent).
    pub algorithm: Algorithm,
    /// A `-sess` algorithm (`MD5-sess`, `SHA-256-sess`).
    pub sess: bool,
    /// Whether the server offers `qop=auth` (the only qop this client answers with).
    pub qop_auth: bool,
    /// `stale=true`: the nonce expired but the credentials were right.
    pub stale: bool,
}

/// Why a challenge cannot be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChallengeError {
    /// Not a `Digest` challenge.
    #[error("not a Digest challenge")]
    NotDigest,
    /// A required parameter is missing, or the parameters do not parse.
    #[error("challenge has no {0}")]
    Missing(&'static str),
    /// An algorithm this client does not implement.
    #[error("unsupported digest algorithm {0:?}")]
    Algorithm(String),
    /// The server offers only qop values other than `auth` (e.g. `auth-int`).
    #[error("unsupported qop {0:?}")]
    Qop(String),
}

fn strength(a: Algorithm) -> u8 {
    match a {
        Algorithm::Sha256 => 2,
        Algorithm::Md5 => 1,
    }
}

impl Challenge {
    /// Parses the value of a `WWW-Authenticate` or `Proxy-Authenticate` header.
    pub fn parse(header: &str) -> Result<Challenge, ChallengeError> {
        let header = header.trim();
        let (scheme, rest) = header
            .split_once(char::is_whitespace)
            .unwrap_or((header, ""));
        if !scheme.eq_ignore_ascii_case("digest") {
            return Err(ChallengeError::NotDigest);
        }
        let mut realm = None;
        let mut nonce = None;
        let mut opaque = None;
        let mut algorithm = Algorithm::Md5;
        let mut sess = false;
        let mut qop: Option<String> = None;
        let mut stale = false;
        for (k, v) in auth_params(rest).ok_or(ChallengeError::Missing("well-formed parameters"))? {
            match k.to_ascii_lowercase().as_str() {
                "realm" => realm = Some(v),
                "nonce" => nonce = Some(v),
                "opaque" => opaque = Some(v),
                "algorithm" => {
                    let (base, is_sess) = match v.len().checked_sub(5) {
                        Some(i)
                            if v.is_char_boundary(i) && v[i..].eq_ignore_ascii_case("-sess") =>
                        {
                            (&v[..i], true)
                        }
                        _ => (v.as_str(), false),
                    };
                    algorithm = Algorithm::from_name(base)
                        .ok_or_else(|| ChallengeError::Algorithm(v.clone()))?;
                    sess = is_sess;
                }
                "qop" => qop = Some(v),
                "stale" => stale = v.eq_ignore_ascii_case("true"),
                _ => {}
            }
        }
        let qop_auth = match &qop {
            None => false,
            Some(q) if q.split(',').any(|t| t.trim().eq_ignore_ascii_case("auth")) => true,
            Some(q) => return Err(ChallengeError::Qop(q.clone())),
        };
        Ok(Challenge {
            realm: realm.ok_or(ChallengeError::Missing("realm"))?,
            nonce: nonce.ok_or(ChallengeError::Missing("nonce"))?,
            opaque,
            algorithm,
            sess,
            qop_auth,
            stale,
        })
    }

    /// The strongest challenge this client can answer among several header values.
    pub fn pick<'a>(
        headers: impl IntoIterator<Item = &'a str>,
    ) -> Result<Challenge, ChallengeError> {
        let mut best: Option<Challenge> = None;
        let mut last_err = ChallengeError::NotDigest;
        for h in headers {
            match Challenge::parse(h) {
                Ok(c) => {
                    if best
                        .as_ref()
                        .is_none_or(|b| strength(c.algorithm) > strength(b.algorithm))
                    {
                        best = Some(c);
                    }
                }
                Err(e) => last_err = e,
            }
        }
        best.ok_or(last_err)
    }
}

/// Who answers.
#[derive(Debug, Clone)]
pub struct ClientCredentials<'a> {
    /// Digest user name.
    pub username: &'a str,
    /// Password.
    pub password: &'a str,
}

/// Computes the value of an `Authorization` (or `Proxy-Authorization`) header answering
/// `challenge` for `method` on `uri`. `nc` counts the requests answered with this nonce
/// (1 for the first); `cnonce` is a fresh client nonce.
pub fn authorization(
    challenge: &Challenge,
    creds: &ClientCredentials<'_>,
    method: &str,
    uri: &str,
    nc: u32,
    cnonce: &str,
) -> String {
    let alg = challenge.algorithm;
    let mut ha1 =
        alg.hex(format!("{}:{}:{}", creds.username, challenge.realm, creds.password).as_bytes());
    if challenge.sess {
        ha1 = alg.hex(format!("{ha1}:{}:{cnonce}", challenge.nonce).as_bytes());
    }
    let nc_hex = format!("{nc:08x}");
    let response = if challenge.qop_auth {
        expected_response(
            alg,
            &ha1,
            method,
            uri,
            &challenge.nonce,
            Some(&nc_hex),
            Some(cnonce),
            Some("auth"),
        )
    } else {
        expected_response(alg, &ha1, method, uri, &challenge.nonce, None, None, None)
    };
    let alg_name = if challenge.sess {
        format!("{}-sess", alg.name())
    } else {
        alg.name().to_string()
    };
    let mut h = format!(
        "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{}\", algorithm={}",
        quote(creds.username),
        quote(&challenge.realm),
        quote(&challenge.nonce),
        quote(uri),
        response,
        alg_name
    );
    if challenge.qop_auth {
        let _ = write!(h, ", qop=auth, nc={nc_hex}, cnonce=\"{}\"", quote(cnonce));
    }
    if let Some(o) = &challenge.opaque {
        let _ = write!(h, ", opaque=\"{}\"", quote(o));
    }
    h
}

fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc2617_example_response() {
        // RFC 2617 §3.5 (HTTP, but the computation is the same).
        let c = Challenge::parse(
            r#"Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41""#,
        )
        .unwrap();
        assert!(c.qop_auth);
        let h = authorization(
            &c,
            &ClientCredentials {
                username: "Mufasa",
                password: "Circle Of Life",
            },
            "GET",
            "/dir/index.html",
            1,
            "0a4f113b",
        );
        assert!(
            h.contains(r#"response="6629fae49393a05397450978507c4ef1""#),
            "{h}"
        );
        assert!(h.contains("nc=00000001"));
        assert!(h.contains(r#"opaque="5ccc069c403ebaf9f0171e9517f40e41""#));
    }

    #[test]
    fn rfc7616_sha256_example_response() {
        // RFC 7616 §3.9.1, SHA-256.
        let c = Challenge::parse(
            r#"Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=SHA-256, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS""#,
        )
        .unwrap();
        assert_eq!(c.algorithm, Algorithm::Sha256);
        let h = authorization(
            &c,
            &ClientCredentials {
                username: "Mufasa",
                password: "Circle of Life",
            },
            "GET",
            "/dir/index.html",
            1,
            "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
        );
        assert!(
            h.contains(
                r#"response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1""#
            ),
            "{h}"
        );
    }

    #[test]
    fn no_qop_uses_rfc2069_form() {
        let c = Challenge::parse(r#"Digest realm="r", nonce="n""#).unwrap();
        assert!(!c.qop_auth);
        let h = authorization(
            &c,
            &ClientCredentials {
                username: "u",
                password: "p",
            },
            "REGISTER",
            "sip:r",
            1,
            "c",
        );
        let ha1 = Algorithm::Md5.hex(b"u:r:p");
        let ha2 = Algorithm::Md5.hex(b"REGISTER:sip:r");
        assert!(h.contains(&Algorithm::Md5.hex(format!("{ha1}:n:{ha2}").as_bytes())));
        assert!(!h.contains("qop"));
    }

    #[test]
    fn picks_sha256_over_md5_and_reads_stale() {
        let c = Challenge::pick([
            r#"Digest realm="r", nonce="a", algorithm=MD5, qop="auth""#,
            r#"Digest realm="r", nonce="b", algorithm=SHA-256, qop="auth", stale=TRUE"#,
        ])
        .unwrap();
        assert_eq!(c.algorithm, Algorithm::Sha256);
        assert_eq!(c.nonce, "b");
        assert!(c.stale);
    }

    #[test]
    fn refuses_what_it_cannot_answer() {
        assert_eq!(
            Challenge::parse("Basic realm=\"x\""),
            Err(ChallengeError::NotDigest)
        );
        let sess =
            Challenge::parse(r#"Digest realm="r", nonce="n", algorithm=SHA-256-sess"#).unwrap();
        assert!(sess.sess && sess.algorithm == Algorithm::Sha256);
        assert_eq!(
            Challenge::parse(r#"Digest realm="r", nonce="n", algorithm=SHA-512-256"#),
            Err(ChallengeError::Algorithm("SHA-512-256".into()))
        );
        assert_eq!(
            Challenge::parse(r#"Digest realm="r", nonce="n", qop="auth-int""#),
            Err(ChallengeError::Qop("auth-int".into()))
        );
        assert_eq!(
            Challenge::parse(r#"Digest realm="r""#),
            Err(ChallengeError::Missing("nonce"))
        );
    }
}
