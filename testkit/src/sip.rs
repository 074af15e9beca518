//! The client side of SIP as tests need it, written from the RFCs independently of the
//! registrar's code: reading a response's status and headers, and answering a digest
//! challenge (RFC 2617 / RFC 7616, MD5 and SHA-256, `qop=auth`).

use md5::Digest as _;

/// The values of header `name` in a message's header section.
pub fn header_values<'a>(message: &'a str, name: &str) -> Vec<&'a str> {
    message
        .split("\r\n\r\n")
        .next()
        .unwrap_or("")
        .lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .collect()
}

/// The status code of a response (0 when it is none).
pub fn status_of(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// One parameter of a `Digest` challenge.
fn challenge_param(challenge: &str, name: &str) -> String {
    challenge
        .split(',')
        .map(str::trim)
        .map(|p| p.trim_start_matches("Digest").trim())
        .find_map(|p| p.strip_prefix(&format!("{name}=")))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| panic!("no {name} in the challenge {challenge}"))
}

/// An `Authorization` header line (with its CRLF) answering `challenge` (the value of a
/// `WWW-Authenticate` header) for `method` on `uri`, with nonce count `nc`.
pub fn authorization(
    challenge: &str,
    method: &str,
    user: &str,
    password: &str,
    uri: &str,
    nc: u32,
) -> String {
    let realm = challenge_param(challenge, "realm");
    let nonce = challenge_param(challenge, "nonce");
    let algorithm = challenge_param(challenge, "algorithm");
    let h = |s: String| -> String {
        match algorithm.as_str() {
            "MD5" => hex::encode(md5::Md5::digest(s.as_bytes())),
            "SHA-256" => hex::encode(sha2::Sha256::digest(s.as_bytes())),
            other => panic!("unexpected algorithm {other}"),
        }
    };
    let ha1 = h(format!("{user}:{realm}:{password}"));
    let ha2 = h(format!("{method}:{uri}"));
    let nc = format!("{nc:08x}");
    let cnonce = "0a4f113b";
    let response = h(format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
    format!(
        "Authorization: Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
         response=\"{response}\", algorithm={algorithm}, qop=auth, nc={nc}, cnonce=\"{cnonce}\"\r\n"
    )
}

/// A REGISTER for `user@domain` from `local` (`IP:PORT`) over `transport` (`UDP`, `TCP`),
/// with `extra` header lines (each ending in CRLF) before Content-Length.
pub fn register_request(
    domain: &str,
    transport: &str,
    local: &str,
    user: &str,
    cseq: u32,
    call_id: &str,
    extra: &str,
) -> String {
    format!(
        "REGISTER sip:{domain} SIP/2.0\r\n\
         Via: SIP/2.0/{transport} {local};branch=z9hG4bK-{call_id}-{cseq};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{user}@{domain}>;tag=tag-{call_id}\r\n\
         To: <sip:{user}@{domain}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} REGISTER\r\n\
         Contact: <sip:{user}@{local};transport={}>\r\n\
         User-Agent: switchboard-test-client\r\n\
         {extra}Content-Length: 0\r\n\r\n",
        transport.to_ascii_lowercase()
    )
}
