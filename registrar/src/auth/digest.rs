//! HTTP digest as SIP uses it (RFC 2617, RFC 7616, RFC 8760): the `Authorization` header
//! parser, the response computation from a stored HA1, and the `WWW-Authenticate` challenge.

use crate::message::scan::Scan;
use md5::Md5;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::fmt;
use switchboard_crds::common::DigestAlgorithm;

/// A digest algorithm this registrar offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// RFC 2617's MD5.
    Md5,
    /// RFC 8760's SHA-256.
    Sha256,
}

impl Algorithm {
    /// The `algorithm=` token.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// Reads an `algorithm=` token (case-insensitive); `-sess` variants are not offered.
    pub fn from_name(s: &str) -> Option<Algorithm> {
        let s = s.sip_trim();
        if s.eq_ignore_ascii_case("MD5") {
            Some(Algorithm::Md5)
        } else if s.eq_ignore_ascii_case("SHA-256") {
            Some(Algorithm::Sha256)
        } else {
            None
        }
    }

    /// Hex digest of `data`.
    pub fn hex(self, data: &[u8]) -> String {
        match self {
            Algorithm::Md5 => hex::encode(Md5::digest(data)),
            Algorithm::Sha256 => hex::encode(Sha256::digest(data)),
        }
    }
}

/// The one conversion from the config's algorithm (a site's `digestAlgorithms`).
impl From<DigestAlgorithm> for Algorithm {
    fn from(a: DigestAlgorithm) -> Algorithm {
        match a {
            DigestAlgorithm::Md5 => Algorithm::Md5,
            DigestAlgorithm::Sha256 => Algorithm::Sha256,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The parameters of an `Authorization: Digest …` header, borrowed from it (but for a quoted
/// value with escapes).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Credentials<'a> {
    /// `username`.
    pub username: Cow<'a, str>,
    /// `realm`.
    pub realm: Cow<'a, str>,
    /// `nonce`.
    pub nonce: Cow<'a, str>,
    /// `uri`.
    pub uri: Cow<'a, str>,
    /// `response`.
    pub response: Cow<'a, str>,
    /// `algorithm` (absent means MD5).
    pub algorithm: Option<Cow<'a, str>>,
    /// `cnonce`.
    pub cnonce: Option<Cow<'a, str>>,
    /// `qop`.
    pub qop: Option<Cow<'a, str>>,
    /// `nc`, as written (8 hex digits).
    pub nc: Option<Cow<'a, str>>,
    /// `opaque`.
    pub opaque: Option<Cow<'a, str>>,
}

impl<'a> Credentials<'a> {
    /// Parses the value of an Authorization header; `None` unless it is Digest with at least
    /// username, realm, nonce, uri and response.
    pub fn parse(value: &'a str) -> Option<Credentials<'a>> {
        let value = value.sip_trim();
        let (scheme, rest) = value.split_once(|c: char| c.is_ascii_whitespace())?;
        if !scheme.eq_ignore_ascii_case("Digest") {
            return None;
        }
        let mut c = Credentials::default();
        let (mut has_user, mut has_realm, mut has_nonce, mut has_uri, mut has_resp) =
            (false, false, false, false, false);
        for (name, val) in auth_params_ref(rest)? {
            match Lowered::new(name).as_bytes() {
                b"username" => {
                    c.username = val;
                    has_user = true
                }
                b"realm" => {
                    c.realm = val;
                    has_realm = true
                }
                b"nonce" => {
                    c.nonce = val;
                    has_nonce = true
                }
                b"uri" => {
                    c.uri = val;
                    has_uri = true
                }
                b"response" => {
                    c.response = val;
                    has_resp = true
                }
                b"algorithm" => c.algorithm = Some(val),
                b"cnonce" => c.cnonce = Some(val),
                b"qop" => c.qop = Some(val),
                b"nc" => c.nc = Some(val),
                b"opaque" => c.opaque = Some(val),
                _ => {}
            }
        }
        (has_user && has_realm && has_nonce && has_uri && has_resp).then_some(c)
    }

    /// A copy that owns its values, to keep past the header it was read from.
    pub fn into_owned(self) -> Credentials<'static> {
        let own = |v: Cow<'_, str>| Cow::Owned(v.into_owned());
        Credentials {
            username: own(self.username),
            realm: own(self.realm),
            nonce: own(self.nonce),
            uri: own(self.uri),
            response: own(self.response),
            algorithm: self.algorithm.map(own),
            cnonce: self.cnonce.map(own),
            qop: self.qop.map(own),
            nc: self.nc.map(own),
            opaque: self.opaque.map(own),
        }
    }

    /// The algorithm asked for (`MD5` when absent); `None` if it is not one this build knows.
    pub fn algorithm(&self) -> Option<Algorithm> {
        match &self.algorithm {
            None => Some(Algorithm::Md5),
            Some(a) => Algorithm::from_name(a),
        }
    }
}

/// A parameter name lower-cased on the stack (names this parser knows are short).
struct Lowered {
    buf: [u8; 16],
    len: usize,
}

impl Lowered {
    fn new(name: &str) -> Lowered {
        let mut buf = [0u8; 16];
        // A longer name is no name we know: leave it empty.
        let len = if name.len() <= buf.len() {
            name.len()
        } else {
            0
        };
        for (d, s) in buf.iter_mut().zip(&name.as_bytes()[..len]) {
            *d = s.to_ascii_lowercase();
        }
        Lowered { buf, len }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Splits `a=b, c="d, e"` into pairs, unquoting (and unescaping) quoted values. `None` when a
/// quoted string is unterminated or a parameter has no `=`.
pub(crate) fn auth_params(s: &str) -> Option<Vec<(String, String)>> {
    Some(
        auth_params_ref(s)?
            .into_iter()
            .map(|(n, v)| (n.to_string(), v.into_owned()))
            .collect(),
    )
}

/// [`auth_params`] without copying: names and values borrow from `s`, except a quoted value
/// with backslash escapes.
fn auth_params_ref(s: &str) -> Option<Vec<(&str, Cow<'_, str>)>> {
    let mut out = Vec::with_capacity(12);
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() && out.len() < 32 {
        while i < bytes.len() && (bytes[i] == b',' || bytes[i].is_ascii_whitespace()) {
            i += 1;
        }
        if i >= bytes.len() {
            break;
        }
        let name_start = i;
        i += memchr::memchr2(b'=', b',', &bytes[i..]).unwrap_or(bytes.len() - i);
        if i >= bytes.len() || bytes[i] != b'=' {
            return None;
        }
        let name = s[name_start..i].sip_trim();
        i += 1;
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let val = if i < bytes.len() && bytes[i] == b'"' {
            i += 1;
            let start = i;
            // `"` and `\` are ASCII, so they never sit inside a multi-byte character.
            i += memchr::memchr2(b'"', b'\\', &bytes[i..]).unwrap_or(bytes.len() - i);
            if i < bytes.len() && bytes[i] == b'"' {
                i += 1;
                Cow::Borrowed(&s[start..i - 1])
            } else {
                // An escape (or no closing quote): unescape into a copy.
                let mut val = s[start..i].to_string();
                let mut closed = false;
                while i < bytes.len() {
                    match bytes[i] {
                        b'\\' if i + 1 < bytes.len() => {
                            val.push(bytes[i + 1] as char);
                            i += 2;
                        }
                        b'"' => {
                            closed = true;
                            i += 1;
                            break;
                        }
                        _ => {
                            // Push whole UTF-8 characters.
                            let ch_len = utf8_len(bytes[i]);
                            let end = (i + ch_len).min(bytes.len());
                            val.push_str(std::str::from_utf8(&bytes[i..end]).ok()?);
                            i = end;
                        }
                    }
                }
                if !closed {
                    return None;
                }
                Cow::Owned(val)
            }
        } else {
            let start = i;
            i += s[i..].find_byte(b',').unwrap_or(bytes.len() - i);
            Cow::Borrowed(s[start..i].sip_trim())
        };
        out.push((name, val));
    }
    Some(out)
}

fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

/// The expected `response` for credentials, from the stored HA1 (RFC 2617 §3.2.2.1, with
/// `qop=auth`; RFC 7616 §3.4.1 for SHA-256).
#[allow(clippy::too_many_arguments)]
pub fn expected_response(
    algorithm: Algorithm,
    ha1_hex: &str,
    method: &str,
    uri: &str,
    nonce: &str,
    nc: Option<&str>,
    cnonce: Option<&str>,
    qop: Option<&str>,
) -> String {
    expected_hex(algorithm, ha1_hex, method, uri, nonce, nc, cnonce, qop)
        .as_str()
        .to_string()
}

/// A hex digest held on the stack (64 digits at most: SHA-256).
#[derive(Clone, Copy)]
pub struct HexDigest {
    buf: [u8; 64],
    len: usize,
}

impl HexDigest {
    /// The lower-case hex digits.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).expect("hex digits are ASCII")
    }
}

fn hash_parts(algorithm: Algorithm, parts: &[&[u8]]) -> HexDigest {
    fn run<D: Digest>(parts: &[&[u8]], out: &mut [u8]) {
        let mut d = D::new();
        for p in parts {
            d.update(p);
        }
        hex::encode_to_slice(d.finalize(), out).expect("buffer fits the digest");
    }
    let mut h = HexDigest {
        buf: [0; 64],
        len: 0,
    };
    match algorithm {
        Algorithm::Md5 => {
            h.len = 32;
            run::<Md5>(parts, &mut h.buf[..32]);
        }
        Algorithm::Sha256 => {
            h.len = 64;
            run::<Sha256>(parts, &mut h.buf[..64]);
        }
    }
    h
}

/// [`expected_response`] without allocating.
#[allow(clippy::too_many_arguments)]
pub fn expected_hex(
    algorithm: Algorithm,
    ha1_hex: &str,
    method: &str,
    uri: &str,
    nonce: &str,
    nc: Option<&str>,
    cnonce: Option<&str>,
    qop: Option<&str>,
) -> HexDigest {
    let ha2 = hash_parts(algorithm, &[method.as_bytes(), b":", uri.as_bytes()]);
    let (ha1, nonce, ha2) = (
        ha1_hex.as_bytes(),
        nonce.as_bytes(),
        ha2.as_str().as_bytes(),
    );
    match (qop, nc, cnonce) {
        (Some(qop), Some(nc), Some(cnonce)) => hash_parts(
            algorithm,
            &[
                ha1,
                b":",
                nonce,
                b":",
                nc.as_bytes(),
                b":",
                cnonce.as_bytes(),
                b":",
                qop.as_bytes(),
                b":",
                ha2,
            ],
        ),
        _ => hash_parts(algorithm, &[ha1, b":", nonce, b":", ha2]),
    }
}

/// A `WWW-Authenticate` value.
pub fn challenge(realm: &str, nonce: &str, algorithm: Algorithm, stale: bool) -> String {
    // Concatenated, not `format!`: one is written for every REGISTER without credentials.
    [
        "Digest realm=\"",
        realm,
        "\", nonce=\"",
        nonce,
        "\", algorithm=",
        algorithm.name(),
        ", qop=\"auth\"",
        if stale { ", stale=true" } else { "" },
    ]
    .concat()
}

/// [`constant_time_eq`] with ASCII letters compared case-insensitively (hex digests may come
/// in upper case).
pub fn constant_time_eq_ignore_ascii_case(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| {
        acc | (x.to_ascii_lowercase() ^ y.to_ascii_lowercase())
    }) == 0
}

/// Compares two strings in time independent of where they differ.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_crds::config::ha1;

    /// RFC 2617 §3.5.
    #[test]
    fn rfc2617_mufasa() {
        let (ha1_md5, _) = ha1("Mufasa", "testrealm@host.com", "Circle Of Life");
        let r = expected_response(
            Algorithm::Md5,
            &ha1_md5,
            "GET",
            "/dir/index.html",
            "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            Some("00000001"),
            Some("0a4f113b"),
            Some("auth"),
        );
        assert_eq!(r, "6629fae49393a05397450978507c4ef1");
    }

    /// RFC 7616 §3.9.1 (SHA-256 of the same exchange).
    #[test]
    fn rfc7616_sha256() {
        let (_, ha1_sha) = ha1("Mufasa", "http-auth@example.org", "Circle of Life");
        let r = expected_response(
            Algorithm::Sha256,
            &ha1_sha,
            "GET",
            "/dir/index.html",
            "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
            Some("00000001"),
            Some("f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"),
            Some("auth"),
        );
        assert_eq!(
            r,
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
    }

    #[test]
    fn parses_authorization() {
        let c = Credentials::parse(
            "Digest username=\"Mufasa\", realm=\"testrealm@host.com\", nonce=\"dcd98b\", \
             uri=\"/dir/index.html\", qop=auth, nc=00000001, cnonce=\"0a4f113b\", \
             response=\"6629fae49393a05397450978507c4ef1\", opaque=\"5ccc, 069c\", algorithm=SHA-256",
        )
        .unwrap();
        assert_eq!(c.username, "Mufasa");
        assert_eq!(c.nc.as_deref(), Some("00000001"));
        assert_eq!(c.opaque.as_deref(), Some("5ccc, 069c"));
        assert_eq!(c.algorithm(), Some(Algorithm::Sha256));
        let c = Credentials::parse(
            "digest USERNAME=\"a\\\"b\\\\\", Realm=r, nonce=\"n\", uri=\"u\", response=\"x\", \
             X-Unknown-Longer-Than-Sixteen=1",
        )
        .unwrap();
        assert_eq!((c.username.as_ref(), c.realm.as_ref()), ("a\"b\\", "r"));
        assert!(Credentials::parse("Digest username=\"a\\\"b, realm=r").is_none());
        assert!(Credentials::parse("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==").is_none());
        assert!(Credentials::parse("Digest username=\"a").is_none());
        assert!(Credentials::parse("Digest username=a, realm=b").is_none());
        assert!(Credentials::parse("Digest garbage").is_none());
        assert!(Credentials::parse("Digest").is_none());
    }

    #[test]
    fn challenge_text() {
        assert_eq!(
            challenge("a.test", "N", Algorithm::Sha256, true),
            "Digest realm=\"a.test\", nonce=\"N\", algorithm=SHA-256, qop=\"auth\", stale=true"
        );
        for a in [DigestAlgorithm::Sha256, DigestAlgorithm::Md5] {
            assert_eq!(Algorithm::from(a).name(), a.token());
        }
    }
}
