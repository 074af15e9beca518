//! Logic shared by both evaluation binaries, so the only thing that differs
//! between `raw` and `stack` is the SIP transport/transaction layer:
//! user table, stateless nonces, digest (MD5, qop=auth) verification and the
//! binding store.

use md5::{Digest, Md5};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const REALM: &str = "eval.test";
pub const PASSWORD: &str = "secret";
pub const NUM_USERS: usize = 10_000;
const NONCE_KEY: &str = "rsipstack-eval-nonce-key";
const NONCE_TTL_SECS: u64 = 300;

pub fn md5_hex(parts: &[&[u8]]) -> String {
    let mut h = Md5::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h.update(b":");
        }
        h.update(p);
    }
    hex::encode(h.finalize())
}

/// HA1 per user, precomputed once (same for both binaries).
pub struct Users {
    ha1: HashMap<String, String>,
}

impl Users {
    pub fn new() -> Self {
        let ha1 = (0..NUM_USERS)
            .map(|i| {
                let u = format!("user{i:04}");
                let h = md5_hex(&[u.as_bytes(), REALM.as_bytes(), PASSWORD.as_bytes()]);
                (u, h)
            })
            .collect();
        Users { ha1 }
    }
    pub fn ha1(&self, user: &str) -> Option<&str> {
        self.ha1.get(user).map(|s| s.as_str())
    }
}

impl Default for Users {
    fn default() -> Self {
        Self::new()
    }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// Stateless nonce: hex timestamp + truncated MD5(key:ts).
pub fn make_nonce() -> String {
    let ts = format!("{:08x}", now_secs());
    let mac = md5_hex(&[NONCE_KEY.as_bytes(), ts.as_bytes()]);
    format!("{ts}{}", &mac[..16])
}

pub fn nonce_valid(nonce: &str) -> bool {
    if nonce.len() != 24 || !nonce.is_ascii() {
        return false;
    }
    let (ts, mac) = nonce.split_at(8);
    let Ok(t) = u64::from_str_radix(ts, 16) else {
        return false;
    };
    let expect = md5_hex(&[NONCE_KEY.as_bytes(), ts.as_bytes()]);
    &expect[..16] == mac && now_secs().saturating_sub(t) <= NONCE_TTL_SECS
}

pub fn www_authenticate_value() -> String {
    format!(
        "Digest realm=\"{REALM}\", nonce=\"{}\", qop=\"auth\", algorithm=MD5",
        make_nonce()
    )
}

/// Parameters of a `Digest ...` Authorization header value, parsed from the
/// raw text (so the digest uses the exact bytes the client hashed).
#[derive(Default, Debug)]
pub struct DigestParams<'a> {
    pub username: &'a str,
    pub realm: &'a str,
    pub nonce: &'a str,
    pub uri: &'a str,
    pub response: &'a str,
    pub qop: &'a str,
    pub nc: &'a str,
    pub cnonce: &'a str,
}

pub fn parse_digest(value: &str) -> Option<DigestParams<'_>> {
    let v = value.trim();
    let rest = v.strip_prefix("Digest").or_else(|| v.strip_prefix("digest"))?;
    let mut p = DigestParams::default();
    let mut s = rest.trim_start();
    while !s.is_empty() {
        let eq = s.find('=')?;
        let name = s[..eq].trim().trim_start_matches(',').trim();
        s = s[eq + 1..].trim_start();
        let val;
        if let Some(q) = s.strip_prefix('"') {
            let end = q.find('"')?;
            val = &q[..end];
            s = &q[end + 1..];
        } else {
            let end = s.find(',').unwrap_or(s.len());
            val = s[..end].trim();
            s = &s[end..];
        }
        s = s.trim_start().trim_start_matches(',').trim_start();
        match name.to_ascii_lowercase().as_str() {
            "username" => p.username = val,
            "realm" => p.realm = val,
            "nonce" => p.nonce = val,
            "uri" => p.uri = val,
            "response" => p.response = val,
            "qop" => p.qop = val,
            "nc" => p.nc = val,
            "cnonce" => p.cnonce = val,
            _ => {}
        }
    }
    Some(p)
}

/// Outcome of checking a REGISTER's credentials.
pub enum AuthResult {
    Ok(String),
    Challenge,
    Forbidden,
}

pub fn check_auth(users: &Users, method: &str, auth_value: Option<&str>) -> AuthResult {
    let Some(v) = auth_value else {
        return AuthResult::Challenge;
    };
    let Some(p) = parse_digest(v) else {
        return AuthResult::Forbidden;
    };
    if p.realm != REALM {
        return AuthResult::Challenge;
    }
    if !nonce_valid(p.nonce) {
        return AuthResult::Challenge; // stale/foreign nonce: challenge again
    }
    let Some(ha1) = users.ha1(p.username) else {
        return AuthResult::Forbidden;
    };
    let ha2 = md5_hex(&[method.as_bytes(), p.uri.as_bytes()]);
    let expect = if p.qop.is_empty() {
        md5_hex(&[ha1.as_bytes(), p.nonce.as_bytes(), ha2.as_bytes()])
    } else {
        md5_hex(&[
            ha1.as_bytes(),
            p.nonce.as_bytes(),
            p.nc.as_bytes(),
            p.cnonce.as_bytes(),
            p.qop.as_bytes(),
            ha2.as_bytes(),
        ])
    };
    if expect.eq_ignore_ascii_case(p.response) {
        AuthResult::Ok(p.username.to_string())
    } else {
        AuthResult::Forbidden
    }
}

pub struct Binding {
    pub contact: String,
    pub source: SocketAddr,
    pub expires_at: Instant,
}

#[derive(Default)]
pub struct Location {
    pub map: Mutex<HashMap<String, Binding>>,
}

impl Location {
    pub fn store(&self, aor: String, contact: String, source: SocketAddr, expires: u32) {
        let mut m = self.map.lock().unwrap();
        if expires == 0 {
            m.remove(&aor);
        } else {
            m.insert(
                aor,
                Binding {
                    contact,
                    source,
                    expires_at: Instant::now() + Duration::from_secs(expires as u64),
                },
            );
        }
    }
    pub fn len(&self) -> usize {
        self.map.lock().unwrap().len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Strip `<...>` and params: "Name <sip:a@b;x>;expires=3" -> "sip:a@b;x".
pub fn contact_uri(contact: &str) -> &str {
    let c = contact.trim();
    if let (Some(a), Some(b)) = (c.find('<'), c.find('>')) {
        if a < b {
            return &c[a + 1..b];
        }
    }
    c.split(';').next().unwrap_or(c).trim()
}

pub fn contact_expires_param(contact: &str) -> Option<u32> {
    let after = match contact.find('>') {
        Some(i) => &contact[i..],
        None => contact,
    };
    after.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("expires")
            .then(|| v.trim().parse().ok())
            .flatten()
    })
}

/// AoR from a To header value: "<sip:user0001@eval.test>;tag=x" -> "sip:user0001@eval.test".
pub fn aor_of(to: &str) -> String {
    let u = contact_uri(to);
    let u = u.split(';').next().unwrap_or(u);
    u.to_ascii_lowercase()
}

pub fn port_from_env(default: u16) -> u16 {
    std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(default)
}

pub fn workers_from_env() -> usize {
    std::env::var("WORKERS")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(2)
}

/// RFC 3261 §18.2.1 + RFC 3581: add `received` and fill an empty `rport`.
pub fn via_with_received(via: &str, src: SocketAddr) -> String {
    let mut out = String::with_capacity(via.len() + 40);
    let mut had_rport = false;
    for (i, part) in via.split(';').enumerate() {
        if i > 0 {
            out.push(';');
        }
        let t = part.trim();
        if t.eq_ignore_ascii_case("rport") {
            out.push_str(&format!("rport={}", src.port()));
            had_rport = true;
        } else if t.len() >= 9 && t[..9].eq_ignore_ascii_case("received=") {
            // drop a stale received=, re-added below
            out.pop();
        } else {
            out.push_str(part);
        }
    }
    let _ = had_rport;
    out.push_str(&format!(";received={}", src.ip()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_roundtrip() {
        let users = Users::new();
        let nonce = make_nonce();
        assert!(nonce_valid(&nonce));
        let ha1 = md5_hex(&[b"user0042", REALM.as_bytes(), b"secret"]);
        let ha2 = md5_hex(&[b"REGISTER", b"sip:127.0.0.1:5060"]);
        let resp = md5_hex(&[
            ha1.as_bytes(),
            nonce.as_bytes(),
            b"00000001",
            b"abc",
            b"auth",
            ha2.as_bytes(),
        ]);
        let hdr = format!(
            "Digest username=\"user0042\",realm=\"eval.test\",cnonce=\"abc\",nc=00000001,qop=auth,uri=\"sip:127.0.0.1:5060\",nonce=\"{nonce}\",response=\"{resp}\",algorithm=MD5"
        );
        assert!(matches!(check_auth(&users, "REGISTER", Some(&hdr)), AuthResult::Ok(u) if u == "user0042"));
        let bad = hdr.replace(&resp, "00000000000000000000000000000000");
        assert!(matches!(check_auth(&users, "REGISTER", Some(&bad)), AuthResult::Forbidden));
        assert!(matches!(check_auth(&users, "REGISTER", None), AuthResult::Challenge));
    }

    #[test]
    fn via_received() {
        let src: SocketAddr = "127.0.0.1:5999".parse().unwrap();
        assert_eq!(
            via_with_received("SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1;rport", src),
            "SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1;rport=5999;received=127.0.0.1"
        );
    }

    #[test]
    fn contact_parsing() {
        assert_eq!(contact_uri("\"A\" <sip:a@b:5;transport=udp>;expires=60"), "sip:a@b:5;transport=udp");
        assert_eq!(contact_expires_param("<sip:a@b>;expires=60"), Some(60));
        assert_eq!(aor_of("<sip:User1@eval.test>;tag=1"), "sip:user1@eval.test");
    }
}
