//! REGISTER processing, RFC 3261 §10.3 steps 6–8, as a pure function:
//! (request, site policy, current bindings, now) → accept with the new binding set, or reject.
//!
//! Authentication (steps 3–5) happens before, in [`crate::auth`]; the response is written by
//! [`crate::service`]; the store applies the result atomically ([`crate::location`]).

pub mod events;

use crate::location::Binding;
use crate::message::headers::{ContactSpec, Contacts, SipUri};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};
use switchboard_crds::common::Transport;
use switchboard_crds::site::RegistrationPolicy;

/// The parts of a REGISTER the decision needs.
#[derive(Clone, Copy, Debug)]
pub struct RegisterRequest<'a> {
    /// The Contact headers taken together.
    pub contacts: &'a Contacts,
    /// The Expires header.
    pub expires_header: Option<u32>,
    /// Call-ID.
    pub call_id: &'a str,
    /// CSeq number.
    pub cseq: u32,
    /// Packet source.
    pub source: SocketAddr,
    /// Transport received over.
    pub transport: Transport,
    /// User-Agent header.
    pub user_agent: Option<&'a str>,
}

/// The outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// 200 OK; `Some(set)` replaces the AOR's bindings, `None` leaves them (a query).
    Accept(Option<Vec<Binding>>),
    /// An error response.
    Reject {
        /// Status code.
        status: u16,
        /// Reason phrase.
        reason: &'static str,
        /// `Min-Expires` to send with a 423.
        min_expires: Option<u32>,
    },
}

fn reject(status: u16, reason: &'static str) -> Decision {
    Decision::Reject {
        status,
        reason,
        min_expires: None,
    }
}

/// Whether the site lets devices register over `transport`.
pub fn transport_allowed(policy: &RegistrationPolicy, transport: Transport) -> bool {
    policy.transports.contains(&transport)
}

/// Decides a REGISTER against the AOR's live bindings; `max_contacts` is the device's own limit,
/// when it has one, else the policy's applies.
pub fn decide(
    req: &RegisterRequest<'_>,
    policy: &RegistrationPolicy,
    max_contacts: Option<u32>,
    current: &[Binding],
    now: SystemTime,
    replica: &str,
) -> Decision {
    let live = |b: &&Binding| b.is_live(now);
    // Step 7's ordering rule: the same Call-ID with a CSeq not above the stored one means this
    // request is older than the one that wrote the binding. RFC 3261 only says "abort"; the
    // answer is a 400 (the request's fault), not a 500 a client would retry.
    let out_of_order = |b: &Binding| b.call_id == req.call_id && req.cseq <= b.cseq;
    let specs = match req.contacts {
        Contacts::None => return Decision::Accept(None),
        Contacts::Star => {
            if req.expires_header != Some(0) {
                return reject(400, "Contact * Requires Expires: 0");
            }
            if current.iter().filter(live).any(out_of_order) {
                return reject(400, "Out Of Order CSeq");
            }
            return Decision::Accept(Some(Vec::new()));
        }
        Contacts::List(specs) => specs,
    };
    let mut next: Vec<Binding> = current.iter().filter(live).cloned().collect();
    for spec in specs {
        let expires = match expires_of(req, spec, policy) {
            Ok(expires) => expires,
            Err(rejected) => return rejected,
        };
        match next.iter().position(|b| same_uri(&b.contact, &spec.uri)) {
            Some(_)
                if current
                    .iter()
                    .filter(live)
                    .any(|b| same_uri(&b.contact, &spec.uri) && out_of_order(b)) =>
            {
                return reject(400, "Out Of Order CSeq");
            }
            Some(i) if expires == 0 => {
                next.remove(i);
            }
            Some(i) => refresh(&mut next[i], req, spec, expires, now, replica),
            None if expires != 0 => next.push(bind(req, spec, expires, now, replica)),
            None => {}
        }
    }
    keep_newest(&mut next, max_contacts.unwrap_or(policy.max_contacts));
    Decision::Accept(Some(next))
}

/// The lifetime granted to one contact (its own expires, else the request's, else the site's
/// default, capped at the site's maximum); a 423 when shorter than the site's minimum.
fn expires_of(
    req: &RegisterRequest<'_>,
    spec: &ContactSpec,
    policy: &RegistrationPolicy,
) -> Result<u32, Decision> {
    let expires = spec
        .expires
        .or(req.expires_header)
        .unwrap_or(policy.default_expires);
    if expires != 0 && expires < policy.min_expires {
        return Err(Decision::Reject {
            status: 423,
            reason: "Interval Too Brief",
            min_expires: Some(policy.min_expires),
        });
    }
    Ok(expires.min(policy.max_expires))
}

/// Refreshes a stored binding from the request. A refresh mostly repeats what is stored: only
/// what changed is copied.
fn refresh(
    b: &mut Binding,
    req: &RegisterRequest<'_>,
    spec: &ContactSpec,
    expires: u32,
    now: SystemTime,
    replica: &str,
) {
    set_str(&mut b.contact, &spec.uri);
    b.q = spec.q;
    b.expires_at = now + Duration::from_secs(expires as u64);
    b.updated_at = now;
    set_str(&mut b.call_id, req.call_id);
    b.cseq = req.cseq;
    b.source = req.source;
    b.transport = req.transport;
    if b.user_agent.as_deref() != req.user_agent {
        b.user_agent = req.user_agent.map(str::to_string);
    }
    set_str(&mut b.replica, replica);
}

/// A new binding for a contact the AOR did not hold.
fn bind(
    req: &RegisterRequest<'_>,
    spec: &ContactSpec,
    expires: u32,
    now: SystemTime,
    replica: &str,
) -> Binding {
    Binding {
        contact: spec.uri.clone(),
        q: spec.q,
        expires_at: now + Duration::from_secs(expires as u64),
        registered_at: now,
        updated_at: now,
        call_id: req.call_id.to_string(),
        cseq: req.cseq,
        source: req.source,
        transport: req.transport,
        user_agent: req.user_agent.map(str::to_string),
        replica: replica.to_string(),
    }
}

/// Beyond `limit` (at least one) the least recently refreshed bindings go: with a limit of
/// one, a phone's new contact replaces its old one.
fn keep_newest(bindings: &mut Vec<Binding>, limit: u32) {
    let max = limit.max(1) as usize;
    if bindings.len() > max {
        bindings.sort_by_key(|b| std::cmp::Reverse(b.updated_at));
        bindings.truncate(max);
    }
}

fn set_str(field: &mut String, value: &str) {
    if field != value {
        value.clone_into(field);
    }
}

/// URI equality for bindings, close to RFC 3261 §19.1.4: scheme, user (case-sensitive), host
/// (case-insensitive), port, and the transport/user/maddr/ttl/method parameters. Non-SIP URIs
/// compare as case-insensitive text.
pub fn same_uri(a: &str, b: &str) -> bool {
    if a == b {
        return true; // the usual case (a refresh), without parsing
    }
    match (SipUri::parse(a), SipUri::parse(b)) {
        (Some(x), Some(y)) => {
            const SIGNIFICANT: [&str; 5] = ["transport", "user", "maddr", "ttl", "method"];
            let pick = |u: &SipUri| {
                let mut p: Vec<(String, Option<String>)> = u
                    .params
                    .iter()
                    .filter(|(n, _)| SIGNIFICANT.contains(&n.as_str()))
                    .map(|(n, v)| (n.clone(), v.as_ref().map(|v| v.to_ascii_lowercase())))
                    .collect();
                p.sort();
                p
            };
            x.scheme == y.scheme
                && x.user == y.user
                && x.host == y.host
                && x.port == y.port
                && pick(&x) == pick(&y)
        }
        _ => a.trim().eq_ignore_ascii_case(b.trim()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::headers::{parse_contacts, ContactSpec};

    fn policy() -> RegistrationPolicy {
        RegistrationPolicy {
            min_expires: 60,
            max_expires: 3600,
            default_expires: 600,
            max_contacts: 1,
            transports: vec![Transport::Udp, Transport::Tcp],
            ..Default::default()
        }
    }

    fn t0() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn req<'a>(
        contacts: &'a Contacts,
        expires: Option<u32>,
        call_id: &'a str,
        cseq: u32,
    ) -> RegisterRequest<'a> {
        RegisterRequest {
            contacts,
            expires_header: expires,
            call_id,
            cseq,
            source: "192.0.2.1:5060".parse().unwrap(),
            transport: Transport::Udp,
            user_agent: Some("test"),
        }
    }

    fn accept(d: Decision) -> Vec<Binding> {
        match d {
            Decision::Accept(Some(b)) => b,
            other => panic!("expected accept, got {other:?}"),
        }
    }

    fn contacts(s: &str) -> Contacts {
        parse_contacts(s).unwrap()
    }

    #[test]
    fn first_registration_uses_header_param_or_default_expiry() {
        let p = policy();
        let c = contacts("<sip:1001@192.0.2.1:5060>");
        let b = accept(decide(
            &req(&c, Some(120), "a", 1),
            &p,
            None,
            &[],
            t0(),
            "r1",
        ));
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].remaining(t0()), 120);
        assert_eq!(b[0].replica, "r1");
        let b = accept(decide(&req(&c, None, "a", 1), &p, None, &[], t0(), "r1"));
        assert_eq!(b[0].remaining(t0()), 600);
        let c = contacts("<sip:1001@192.0.2.1:5060>;expires=300");
        let b = accept(decide(
            &req(&c, Some(120), "a", 1),
            &p,
            None,
            &[],
            t0(),
            "r1",
        ));
        assert_eq!(
            b[0].remaining(t0()),
            300,
            "the contact parameter wins over the header"
        );
    }

    #[test]
    fn too_brief_is_423_and_too_long_is_clamped() {
        let p = policy();
        let c = contacts("<sip:1001@192.0.2.1>");
        assert_eq!(
            decide(&req(&c, Some(30), "a", 1), &p, None, &[], t0(), "r"),
            Decision::Reject {
                status: 423,
                reason: "Interval Too Brief",
                min_expires: Some(60)
            }
        );
        let b = accept(decide(
            &req(&c, Some(999_999), "a", 1),
            &p,
            None,
            &[],
            t0(),
            "r",
        ));
        assert_eq!(b[0].remaining(t0()), 3600);
    }

    #[test]
    fn refresh_keeps_registered_at_and_expires_zero_removes() {
        let p = policy();
        let c = contacts("<sip:1001@192.0.2.1>");
        let b1 = accept(decide(
            &req(&c, Some(120), "a", 1),
            &p,
            None,
            &[],
            t0(),
            "r",
        ));
        let later = t0() + Duration::from_secs(60);
        let b2 = accept(decide(
            &req(&c, Some(120), "a", 2),
            &p,
            None,
            &b1,
            later,
            "r",
        ));
        assert_eq!(b2.len(), 1);
        assert_eq!(b2[0].registered_at, t0());
        assert_eq!(b2[0].remaining(later), 120);
        let b3 = accept(decide(&req(&c, Some(0), "a", 3), &p, None, &b2, later, "r"));
        assert!(b3.is_empty());
    }

    #[test]
    fn call_id_and_cseq_ordering() {
        let p = policy();
        let c = contacts("<sip:1001@192.0.2.1>");
        let b = accept(decide(
            &req(&c, Some(120), "a", 5),
            &p,
            None,
            &[],
            t0(),
            "r",
        ));
        for cseq in [4, 5] {
            assert!(matches!(
                decide(&req(&c, Some(120), "a", cseq), &p, None, &b, t0(), "r"),
                Decision::Reject {
                    status: 400,
                    reason: "Out Of Order CSeq",
                    ..
                }
            ));
        }
        // Another Call-ID (the phone rebooted) may use any CSeq.
        assert_eq!(
            accept(decide(&req(&c, Some(120), "b", 1), &p, None, &b, t0(), "r")).len(),
            1
        );
    }

    #[test]
    fn star_needs_expires_zero_and_removes_all() {
        let mut p = policy();
        p.max_contacts = 3;
        let c = contacts("<sip:a@192.0.2.1>, <sip:b@192.0.2.2>;q=0.5");
        let b = accept(decide(
            &req(&c, Some(120), "a", 1),
            &p,
            None,
            &[],
            t0(),
            "r",
        ));
        assert_eq!(b.len(), 2);
        assert_eq!(b[1].q, Some(500));
        let star = Contacts::Star;
        assert!(matches!(
            decide(&req(&star, Some(60), "b", 1), &p, None, &b, t0(), "r"),
            Decision::Reject { status: 400, .. }
        ));
        assert!(matches!(
            decide(&req(&star, None, "b", 1), &p, None, &b, t0(), "r"),
            Decision::Reject { status: 400, .. }
        ));
        assert!(matches!(
            decide(&req(&star, Some(0), "a", 1), &p, None, &b, t0(), "r"),
            Decision::Reject {
                status: 400,
                reason: "Out Of Order CSeq",
                ..
            }
        ));
        assert!(accept(decide(
            &req(&star, Some(0), "b", 1),
            &p,
            None,
            &b,
            t0(),
            "r"
        ))
        .is_empty());
    }

    #[test]
    fn max_contacts_replaces_the_oldest() {
        let mut p = policy();
        let a = contacts("<sip:a@192.0.2.1>");
        let b = contacts("<sip:b@192.0.2.2>");
        let first = accept(decide(
            &req(&a, Some(120), "x", 1),
            &p,
            None,
            &[],
            t0(),
            "r",
        ));
        let t1 = t0() + Duration::from_secs(1);
        let second = accept(decide(
            &req(&b, Some(120), "y", 1),
            &p,
            None,
            &first,
            t1,
            "r",
        ));
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].contact, "sip:b@192.0.2.2");
        p.max_contacts = 2;
        let both = accept(decide(
            &req(&b, Some(120), "y", 1),
            &p,
            None,
            &first,
            t1,
            "r",
        ));
        assert_eq!(both.len(), 2);
        // A device's own limit replaces the site's, either way.
        let one = accept(decide(
            &req(&b, Some(120), "y", 1),
            &p,
            Some(1),
            &first,
            t1,
            "r",
        ));
        assert_eq!(one.len(), 1);
        p.max_contacts = 1;
        let own = accept(decide(
            &req(&b, Some(120), "y", 1),
            &p,
            Some(2),
            &first,
            t1,
            "r",
        ));
        assert_eq!(own.len(), 2);
    }

    #[test]
    fn query_changes_nothing_and_lapsed_bindings_are_ignored() {
        let p = policy();
        assert_eq!(
            decide(
                &req(&Contacts::None, None, "a", 1),
                &p,
                None,
                &[],
                t0(),
                "r"
            ),
            Decision::Accept(None)
        );
        let c = contacts("<sip:1001@192.0.2.1>");
        let b = accept(decide(&req(&c, Some(60), "a", 5), &p, None, &[], t0(), "r"));
        // After it lapsed, the same Call-ID and a lower CSeq is a fresh registration.
        let later = t0() + Duration::from_secs(61);
        assert_eq!(
            accept(decide(&req(&c, Some(60), "a", 1), &p, None, &b, later, "r")).len(),
            1
        );
    }

    #[test]
    fn uri_equality() {
        assert!(same_uri(
            "sip:a@Host.Example:5060",
            "sip:a@host.example:5060"
        ));
        assert!(!same_uri("sip:A@host", "sip:a@host"));
        assert!(!same_uri("sip:a@host", "sip:a@host:5060"));
        assert!(!same_uri("sip:a@host;transport=tcp", "sip:a@host"));
        assert!(same_uri(
            "sip:a@host;transport=TCP;ob",
            "sip:a@host;transport=tcp"
        ));
        assert!(same_uri("tel:+1234", "TEL:+1234"));
        let _ = ContactSpec {
            uri: String::new(),
            q: None,
            expires: None,
        };
    }

    #[test]
    fn transport_policy() {
        assert!(transport_allowed(&policy(), Transport::Tcp));
        assert!(!transport_allowed(&policy(), Transport::Tls));
    }
}
