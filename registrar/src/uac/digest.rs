//! Client-side HTTP digest for SIP (RFC 3261 §22, RFC 7616, RFC 8760): parse a
//! `WWW-Authenticate`/`Proxy-Authenticate` challenge and compute the `Authorization`/
//! `Proxy-Authorization` answer. MD5 and SHA-256 (and their `-sess` variants), `qop=auth`
//! with `cnonce`/`nc`, or the RFC 2069 form when the server offers no qop.
//!
//! This is the UAC half of digest. The server half lives in `crate::auth`; when both settle,
//! the hashing helpers can be shared (see the note in `uac/mod.rs`).

use md5::Md5;
use sha2::{Digest, Sha256};
use std::fmt::Write as _;

/// A digest hash algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// MD5 (RFC 2617), the default when a challenge names none.
    Md5,
    /// MD5-sess.
    Md5Sess,
    /// SHA-256 (RFC 7616, RFC 8760).
    Sha256,
    /// SHA-256-sess.
    Sha256Sess,
}

impl Algorithm {
    /// Parses an `algorithm=` value, case-insensitively.
    pub fn parse(s: &str) -> Option<Algorithm> {
        match s.to_ascii_uppercase().as_str() {
            "MD5" => Some(Algorithm::Md5),
            "MD5-SESS" => Some(Algorithm::Md5Sess),
            "SHA-256" => Some(Algorithm::Sha256),
            "SHA-256-SESS" => Some(Algorithm::Sha256Sess),
            _ => None,
        }
    }

    /// The token written in the answer.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
        }
    }

    fn is_sess(self) -> bool {
        matches!(self, Algorithm::Md5Sess | Algorithm::Sha256Sess)
    }

    /// Preference when a server offers several challenges: SHA-256 before MD5.
    fn strength(self) -> u8 {
        match self {
            Algorithm::Sha256 | Algorithm::Sha256Sess => 2,
            Algorithm::Md5 | Algorithm::Md5Sess => 1,
        }
    }

    /// Hex digest of `data`.
    pub fn hash(self, data: &str) -> String {
        match self {
            Algorithm::Md5 | Algorithm::Md5Sess => hex::encode(Md5::digest(data.as_bytes())),
            Algorithm::Sha256 | Algorithm::Sha256Sess => {
                hex::encode(Sha256::digest(data.as_bytes()))
            }
        }
    }
}

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
    /// A required parameter is missing.
    #[error("challenge has no {0}")]
    Missing(&'static str),
    /// An algorithm this client does not implement.
    #[error("unsupported digest algorithm {0:?}")]
    Algorithm(String),
    /// The server offers only qop values other than `auth` (e.g. `auth-int`).
    #[error("unsupported qop {0:?}")]
    Qop(String),
}

/// Splits `k=v, k="v, w", …` into pairs, honouring quoted strings and backslash escapes.
pub fn parse_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let bytes: Vec<char> = s.chars().collect();
    let mut i = 0;
    let n = bytes.len();
    while i < n {
        while i < n && (bytes[i] == ',' || bytes[i].is_whitespace()) {
            i += 1;
        }
        let start = i;
        while i < n && bytes[i] != '=' && bytes[i] != ',' {
            i += 1;
        }
        let key: String = bytes[start..i]
            .iter()
            .collect::<String>()
            .trim()
            .to_string();
        let mut value = String::new();
        if i < n && bytes[i] == '=' {
            i += 1;
            while i < n && bytes[i].is_whitespace() {
                i += 1;
            }
            if i < n && bytes[i] == '"' {
                i += 1;
                while i < n && bytes[i] != '"' {
                    if bytes[i] == '\\' && i + 1 < n {
                        i += 1;
                    }
                    value.push(bytes[i]);
                    i += 1;
                }
                i += 1; // closing quote
            } else {
                let vs = i;
                while i < n && bytes[i] != ',' {
                    i += 1;
                }
                value = bytes[vs..i].iter().collect::<String>().trim().to_string();
            }
        }
        if !key.is_empty() {
            out.push((key.to_ascii_lowercase(), value));
        }
    }
    out
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
        let mut qop: Option<String> = None;
        let mut stale = false;
        for (k, v) in parse_params(rest) {
            match k.as_str() {
                "realm" => realm = Some(v),
                "nonce" => nonce = Some(v),
                "opaque" => opaque = Some(v),
                "algorithm" => {
                    algorithm = Algorithm::parse(&v).ok_or(ChallengeError::Algorithm(v))?;
                }
                "qop" => qop = Some(v),
                "stale" => stale = v.eq_ignore_ascii_case("true"),
                _ => {}
            }
        }
        let qop_auth = match &qop {
            None => false,
            Some(q) => {
                if q.split(',').any(|t| t.trim().eq_ignore_ascii_case("auth")) {
                    true
                } else {
                    return Err(ChallengeError::Qop(q.clone()));
                }
            }
        };
        Ok(Challenge {
            realm: realm.ok_or(ChallengeError::Missing("realm"))?,
            nonce: nonce.ok_or(ChallengeError::Missing("nonce"))?,
            opaque,
            algorithm,
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
                        .is_none_or(|b| c.algorithm.strength() > b.algorithm.strength())
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

/// What the answer is computed from, besides the challenge.
#[derive(Debug, Clone)]
pub struct Credentials<'a> {
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
    creds: &Credentials<'_>,
    method: &str,
    uri: &str,
    nc: u32,
    cnonce: &str,
) -> String {
    let alg = challenge.algorithm;
    let mut ha1 = alg.hash(&format!(
        "{}:{}:{}",
        creds.username, challenge.realm, creds.password
    ));
    if alg.is_sess() {
        ha1 = alg.hash(&format!("{ha1}:{}:{cnonce}", challenge.nonce));
    }
    let ha2 = alg.hash(&format!("{method}:{uri}"));
    let nc_hex = format!("{nc:08x}");
    let response = if challenge.qop_auth {
        alg.hash(&format!(
            "{ha1}:{}:{nc_hex}:{cnonce}:auth:{ha2}",
            challenge.nonce
        ))
    } else {
        alg.hash(&format!("{ha1}:{}:{ha2}", challenge.nonce))
    };
    let mut h = format!(
        "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{}\", algorithm={}",
        quote(creds.username),
        quote(&challenge.realm),
        quote(&challenge.nonce),
        quote(uri),
        response,
        alg.as_str()
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
            &Credentials {
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
            &Credentials {
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
            &Credentials {
                username: "u",
                password: "p",
            },
            "REGISTER",
            "sip:r",
            1,
            "c",
        );
        let ha1 = Algorithm::Md5.hash("u:r:p");
        let ha2 = Algorithm::Md5.hash("REGISTER:sip:r");
        assert!(h.contains(&Algorithm::Md5.hash(&format!("{ha1}:n:{ha2}"))));
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

    #[test]
    fn params_with_commas_and_escapes() {
        let p = parse_params(r#"realm="a, b", nonce="x\"y", stale=false"#);
        assert_eq!(p[0], ("realm".into(), "a, b".into()));
        assert_eq!(p[1], ("nonce".into(), "x\"y".into()));
        assert_eq!(p[2], ("stale".into(), "false".into()));
    }
}
