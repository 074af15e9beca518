//! Digest authentication of REGISTER requests.
//!
//! - [`digest`]: header parsing and response computation (RFC 2617/7616/8760).
//! - [`nonce`]: stateless HMAC nonces any replica sharing the key can check.
//! - [`replay`]: the highest nonce-count per nonce (replays refused).
//! - [`limiter`]: per-source failed-authentication limit.
//!
//! [`Authenticator::verify`] is pure apart from those two bounded maps and takes the time as an
//! argument, so every branch is unit-tested.
//!
//! **Answers.** No or unusable credentials → 401 with a fresh challenge per algorithm the
//! domain offers (its `registration.digestAlgorithms`, in that order; MD5 alone by default, a
//! site opting in to RFC 8760 lists SHA-256 first, §2.4). A digest that verifies against an expired nonce →
//! 401 with `stale=true`. A wrong digest with a fresh nonce → **403**, identical for an unknown
//! user and a wrong password (same status, same reason phrase, same headers, and the same work:
//! an unknown user is checked against a dummy HA1). 403 rather than a fresh 401 because a phone
//! with a wrong password would otherwise loop on challenges; a 403 stops it and counts towards
//! the source's failure limit. A replayed nonce-count → 401 with a fresh nonce.

pub mod client;
pub mod digest;
pub mod limiter;
pub mod nonce;
pub mod replay;

use digest::{Algorithm, Credentials};
use limiter::{FailureLimiter, LimiterSettings};
use nonce::{NonceKey, NonceStatus};
use replay::NonceCounts;
use std::net::IpAddr;
use std::time::{Duration, Instant};
use switchboard_crds::common::DigestAlgorithm;
use switchboard_crds::config::{DeviceConfig, DomainConfig, RegistrarConfig};

/// How the registrar authenticates.
#[derive(Clone, Debug)]
pub struct AuthSettings {
    /// Nonce lifetime; older nonces get `stale=true`.
    pub nonce_ttl: Duration,
    /// The failed-authentication limiter.
    pub limiter: LimiterSettings,
    /// Nonces remembered for replay protection.
    pub nonce_capacity: usize,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            nonce_ttl: Duration::from_secs(300),
            limiter: LimiterSettings::default(),
            nonce_capacity: 1_000_000,
        }
    }
}

/// What to answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead.
    Authorized,
    /// 401 with fresh challenges (`stale` says whether to set `stale=true`).
    Challenge {
        /// The nonce was ours and the digest right, but the nonce expired.
        stale: bool,
    },
    /// 403.
    Forbidden,
}

/// Why a request was not authorized, for metrics and logs (never sent to the client).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// No credentials for the realm: the normal first round trip.
    NoCredentials,
    /// Credentials without `qop=auth`, `nc` or `cnonce`, or with an algorithm not offered.
    Unusable,
    /// A nonce that is not ours.
    BadNonce,
    /// A correct digest on an expired nonce.
    Stale,
    /// The nonce-count did not increase.
    Replay,
    /// No such device.
    UnknownUser,
    /// Wrong digest.
    WrongPassword,
    /// The source is cooling off after too many failures.
    Blocked,
}

impl Failure {
    /// Label value for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::NoCredentials => "no_credentials",
            Failure::Unusable => "unusable_credentials",
            Failure::BadNonce => "bad_nonce",
            Failure::Stale => "stale_nonce",
            Failure::Replay => "replay",
            Failure::UnknownUser => "unknown_user",
            Failure::WrongPassword => "wrong_password",
            Failure::Blocked => "blocked",
        }
    }
}

/// A device's stored digest secrets.
#[derive(Clone, Copy, Debug)]
pub struct Ha1<'a> {
    /// Hex MD5 HA1.
    pub md5: &'a str,
    /// Hex SHA-256 HA1.
    pub sha256: &'a str,
}

impl<'a> Ha1<'a> {
    fn for_algorithm(&self, a: Algorithm) -> &'a str {
        match a {
            Algorithm::Md5 => self.md5,
            Algorithm::Sha256 => self.sha256,
        }
    }
}

/// An authentication attempt.
#[derive(Clone, Copy, Debug)]
pub struct Attempt<'a> {
    /// The realm (the device's domain).
    pub realm: &'a str,
    /// The algorithms the domain offers (credentials in another one are re-challenged).
    pub algorithms: &'a [DigestAlgorithm],
    /// The request method.
    pub method: &'a str,
    /// Credentials for this realm, if the request carried them.
    pub credentials: Option<&'a Credentials>,
    /// The HA1 values of the device named by the credentials' username, if it exists.
    pub ha1: Option<Ha1<'a>>,
    /// The source address (for the failure limiter).
    pub source: IpAddr,
    /// Unix seconds (for nonces).
    pub now_secs: u64,
    /// Monotonic now (for the limiter).
    pub now: Instant,
}

/// One request's credentials checked against a domain's devices ([`Authenticator::check`]).
#[derive(Debug)]
pub struct Checked<'c> {
    /// What to answer.
    pub verdict: Verdict,
    /// Why it failed, worth counting (a request without credentials is not a failure).
    pub failure: Option<Failure>,
    /// The credentials for the realm, if the request carried them.
    pub credentials: Option<Credentials>,
    /// The device the credentials name, if it exists.
    pub device: Option<&'c DeviceConfig>,
}

const DUMMY_HA1: Ha1<'static> = Ha1 {
    md5: "00000000000000000000000000000000",
    sha256: "0000000000000000000000000000000000000000000000000000000000000000",
};

/// Verifies digests and issues challenges.
pub struct Authenticator {
    settings: AuthSettings,
    counts: NonceCounts,
    limiter: FailureLimiter,
}

impl Authenticator {
    /// An authenticator with the given settings.
    pub fn new(settings: AuthSettings) -> Authenticator {
        Authenticator {
            counts: NonceCounts::new(settings.nonce_ttl.as_secs(), settings.nonce_capacity),
            limiter: FailureLimiter::new(settings.limiter),
            settings,
        }
    }

    /// The settings.
    pub fn settings(&self) -> &AuthSettings {
        &self.settings
    }

    /// Checks a request's digest credentials for `domain`: `headers` are its `Authorization`
    /// (REGISTER) or `Proxy-Authorization` (calls) values; the ones for the domain's realm are
    /// taken, the device they name looked up and the digest verified. REGISTER and the proxy
    /// share this; each answers a challenge with its own header.
    #[allow(clippy::too_many_arguments)]
    pub fn check<'c, 'h>(
        &self,
        key: &NonceKey,
        config: &'c RegistrarConfig,
        domain: &DomainConfig,
        method: &str,
        headers: impl IntoIterator<Item = &'h str>,
        source: IpAddr,
        now_secs: u64,
    ) -> Checked<'c> {
        let realm = domain.domain.as_str();
        let credentials = headers
            .into_iter()
            .filter_map(Credentials::parse)
            .find(|c| c.realm.eq_ignore_ascii_case(realm));
        let device = credentials
            .as_ref()
            .and_then(|c| config.device(realm, &c.username))
            .map(|(_, d)| d);
        let (verdict, failure) = self.verify(
            key,
            &Attempt {
                realm,
                algorithms: &domain.registration.digest_algorithms,
                method,
                credentials: credentials.as_ref(),
                ha1: device.map(|d| Ha1 {
                    md5: &d.ha1_md5,
                    sha256: &d.ha1_sha256,
                }),
                source,
                now_secs,
                now: Instant::now(),
            },
        );
        Checked {
            verdict,
            failure: failure.filter(|f| *f != Failure::NoCredentials),
            credentials,
            device,
        }
    }

    /// Decides on an attempt; the second value says why it was not authorized.
    pub fn verify(&self, key: &NonceKey, a: &Attempt<'_>) -> (Verdict, Option<Failure>) {
        if self.limiter.is_blocked(a.source, a.now) {
            return (Verdict::Forbidden, Some(Failure::Blocked));
        }
        let Some(c) = a.credentials else {
            return (
                Verdict::Challenge { stale: false },
                Some(Failure::NoCredentials),
            );
        };
        let challenge = |f| (Verdict::Challenge { stale: false }, Some(f));
        let Some(algorithm) = c
            .algorithm()
            .filter(|&al| a.algorithms.iter().any(|&o| Algorithm::from(o) == al))
        else {
            return challenge(Failure::Unusable);
        };
        let qop_ok = c
            .qop
            .as_deref()
            .is_some_and(|q| q.eq_ignore_ascii_case("auth"));
        let nc =
            c.nc.as_deref()
                .filter(|n| n.len() == 8)
                .and_then(|n| u32::from_str_radix(n, 16).ok())
                .filter(|&n| n > 0);
        let (true, Some(nc), Some(cnonce)) = (qop_ok, nc, c.cnonce.as_deref()) else {
            return challenge(Failure::Unusable);
        };
        let status = key.check(
            &c.nonce,
            a.realm,
            a.now_secs,
            self.settings.nonce_ttl.as_secs(),
        );
        if status == NonceStatus::Invalid {
            return challenge(Failure::BadNonce);
        }
        let ha1 = a.ha1.unwrap_or(DUMMY_HA1).for_algorithm(algorithm);
        let expected = digest::expected_hex(
            algorithm,
            ha1,
            a.method,
            &c.uri,
            &c.nonce,
            c.nc.as_deref(),
            Some(cnonce),
            c.qop.as_deref(),
        );
        let right = digest::constant_time_eq_ignore_ascii_case(expected.as_str(), &c.response)
            && a.ha1.is_some();
        if !right {
            if status == NonceStatus::Stale {
                // Not counted: the phone may just have kept an old nonce; it gets a fresh
                // challenge and fails properly next time if the password is wrong.
                return challenge(Failure::WrongPassword);
            }
            self.limiter.record_failure(a.source, a.now);
            let why = if a.ha1.is_some() {
                Failure::WrongPassword
            } else {
                Failure::UnknownUser
            };
            return (Verdict::Forbidden, Some(why));
        }
        if status == NonceStatus::Stale {
            return (Verdict::Challenge { stale: true }, Some(Failure::Stale));
        }
        if !self.counts.record(&c.nonce, nc, a.now_secs) {
            return challenge(Failure::Replay);
        }
        (Verdict::Authorized, None)
    }

    /// The `WWW-Authenticate` values for a 401: one per algorithm the domain offers, in its
    /// order, sharing one nonce.
    pub fn challenges(
        &self,
        key: &NonceKey,
        realm: &str,
        algorithms: &[DigestAlgorithm],
        now_secs: u64,
        stale: bool,
    ) -> Vec<String> {
        let nonce = key.issue(realm, now_secs, rand::random());
        algorithms
            .iter()
            .map(|&alg| digest::challenge(realm, &nonce, alg.into(), stale))
            .collect()
    }

    /// Forgets limiter entries whose time is over (called by the sweeper).
    pub fn prune(&self, now: Instant) {
        self.limiter.prune(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_crds::config::ha1;

    const REALM: &str = "switchboard.local";
    /// A site that opted in to RFC 8760: SHA-256, then MD5.
    const BOTH: &[DigestAlgorithm] = &[DigestAlgorithm::Sha256, DigestAlgorithm::Md5];

    struct Fixture {
        auth: Authenticator,
        key: NonceKey,
        md5: String,
        sha: String,
        t0: Instant,
    }

    fn fixture() -> Fixture {
        let (md5, sha) = ha1("1001", REALM, "secret");
        Fixture {
            auth: Authenticator::new(AuthSettings {
                limiter: LimiterSettings {
                    max_failures: 3,
                    ..Default::default()
                },
                ..Default::default()
            }),
            key: NonceKey::new(b"k"),
            md5,
            sha,
            t0: Instant::now(),
        }
    }

    /// What a client computes from the password.
    fn answer(alg: Algorithm, user: &str, password: &str, nonce: &str, nc: u32) -> Credentials {
        let (md5, sha) = ha1(user, REALM, password);
        let h = if alg == Algorithm::Md5 { md5 } else { sha };
        let nc = format!("{nc:08x}");
        let uri = "sip:switchboard.local";
        Credentials {
            username: user.into(),
            realm: REALM.into(),
            nonce: nonce.into(),
            uri: uri.into(),
            response: digest::expected_response(
                alg,
                &h,
                "REGISTER",
                uri,
                nonce,
                Some(&nc),
                Some("c0ffee"),
                Some("auth"),
            ),
            algorithm: Some(alg.name().into()),
            cnonce: Some("c0ffee".into()),
            qop: Some("auth".into()),
            nc: Some(nc),
            opaque: None,
        }
    }

    fn attempt<'a>(
        f: &'a Fixture,
        c: Option<&'a Credentials>,
        known: bool,
        now_secs: u64,
    ) -> Attempt<'a> {
        Attempt {
            realm: REALM,
            algorithms: BOTH,
            method: "REGISTER",
            credentials: c,
            ha1: known.then_some(Ha1 {
                md5: &f.md5,
                sha256: &f.sha,
            }),
            source: "192.0.2.9".parse().unwrap(),
            now_secs,
            now: f.t0 + Duration::from_secs(now_secs - 1000),
        }
    }

    fn nonce_of(challenge: &str) -> String {
        challenge
            .split("nonce=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap()
            .to_string()
    }

    #[test]
    fn challenge_lists_sha256_first_then_md5() {
        let f = fixture();
        let ch = f.auth.challenges(&f.key, REALM, BOTH, 1000, false);
        assert_eq!(ch.len(), 2);
        assert!(ch[0].contains("algorithm=SHA-256"));
        assert!(ch[1].contains("algorithm=MD5"));
        assert!(ch
            .iter()
            .all(|c| c.contains("qop=\"auth\"") && !c.contains("stale")));
        assert_eq!(nonce_of(&ch[0]), nonce_of(&ch[1]));
    }

    #[test]
    fn a_domain_offering_md5_only_gets_one_challenge_and_refuses_sha256() {
        let f = fixture();
        let md5_only = &[DigestAlgorithm::Md5];
        let ch = f.auth.challenges(&f.key, REALM, md5_only, 1000, false);
        assert_eq!(ch.len(), 1);
        assert!(ch[0].contains("algorithm=MD5"));
        let sha = answer(Algorithm::Sha256, "1001", "secret", &nonce_of(&ch[0]), 1);
        let mut a = attempt(&f, Some(&sha), true, 1001);
        a.algorithms = md5_only;
        assert_eq!(
            f.auth.verify(&f.key, &a),
            (Verdict::Challenge { stale: false }, Some(Failure::Unusable))
        );
        let md5 = answer(Algorithm::Md5, "1001", "secret", &nonce_of(&ch[0]), 1);
        let mut a = attempt(&f, Some(&md5), true, 1001);
        a.algorithms = md5_only;
        assert_eq!(f.auth.verify(&f.key, &a).0, Verdict::Authorized);
    }

    #[test]
    fn both_algorithms_authorize_and_nc_must_grow() {
        let f = fixture();
        for alg in [Algorithm::Sha256, Algorithm::Md5] {
            let nonce = nonce_of(&f.auth.challenges(&f.key, REALM, BOTH, 1000, false)[0]);
            let c1 = answer(alg, "1001", "secret", &nonce, 1);
            assert_eq!(
                f.auth.verify(&f.key, &attempt(&f, Some(&c1), true, 1001)).0,
                Verdict::Authorized
            );
            // The same nc again is a replay.
            assert_eq!(
                f.auth.verify(&f.key, &attempt(&f, Some(&c1), true, 1002)),
                (Verdict::Challenge { stale: false }, Some(Failure::Replay))
            );
            let c2 = answer(alg, "1001", "secret", &nonce, 2);
            assert_eq!(
                f.auth.verify(&f.key, &attempt(&f, Some(&c2), true, 1003)).0,
                Verdict::Authorized
            );
        }
    }

    #[test]
    fn wrong_password_and_unknown_user_look_the_same() {
        let f = fixture();
        let nonce = nonce_of(&f.auth.challenges(&f.key, REALM, BOTH, 1000, false)[0]);
        let wrong = answer(Algorithm::Sha256, "1001", "nope", &nonce, 1);
        let unknown = answer(Algorithm::Sha256, "9999", "secret", &nonce, 1);
        let a = f
            .auth
            .verify(&f.key, &attempt(&f, Some(&wrong), true, 1001));
        let b = f
            .auth
            .verify(&f.key, &attempt(&f, Some(&unknown), false, 1001));
        assert_eq!(a.0, Verdict::Forbidden);
        assert_eq!(b.0, Verdict::Forbidden);
        assert_eq!(a.1, Some(Failure::WrongPassword));
        assert_eq!(b.1, Some(Failure::UnknownUser));
    }

    #[test]
    fn stale_only_when_the_digest_is_right() {
        let f = fixture();
        let nonce = nonce_of(&f.auth.challenges(&f.key, REALM, BOTH, 1000, false)[0]);
        let good = answer(Algorithm::Md5, "1001", "secret", &nonce, 1);
        assert_eq!(
            f.auth.verify(&f.key, &attempt(&f, Some(&good), true, 1400)),
            (Verdict::Challenge { stale: true }, Some(Failure::Stale))
        );
        let bad = answer(Algorithm::Md5, "1001", "nope", &nonce, 1);
        assert_eq!(
            f.auth
                .verify(&f.key, &attempt(&f, Some(&bad), true, 1400))
                .0,
            Verdict::Challenge { stale: false }
        );
        assert!(f.auth.challenges(&f.key, REALM, BOTH, 1400, true)[0].ends_with("stale=true"));
    }

    #[test]
    fn forged_nonce_and_missing_qop_are_rechallenged() {
        let f = fixture();
        let forged = answer(
            Algorithm::Md5,
            "1001",
            "secret",
            &NonceKey::new(b"x").issue(REALM, 1000, [0; 8]),
            1,
        );
        assert_eq!(
            f.auth
                .verify(&f.key, &attempt(&f, Some(&forged), true, 1000)),
            (Verdict::Challenge { stale: false }, Some(Failure::BadNonce))
        );
        let nonce = nonce_of(&f.auth.challenges(&f.key, REALM, BOTH, 1000, false)[0]);
        let mut no_qop = answer(Algorithm::Md5, "1001", "secret", &nonce, 1);
        no_qop.qop = None;
        assert_eq!(
            f.auth
                .verify(&f.key, &attempt(&f, Some(&no_qop), true, 1000))
                .1,
            Some(Failure::Unusable)
        );
        assert_eq!(
            f.auth.verify(&f.key, &attempt(&f, None, true, 1000)).1,
            Some(Failure::NoCredentials)
        );
    }

    #[test]
    fn too_many_failures_block_the_source() {
        let f = fixture();
        let nonce = nonce_of(&f.auth.challenges(&f.key, REALM, BOTH, 1000, false)[0]);
        for i in 1..=3 {
            let bad = answer(Algorithm::Md5, "1001", "nope", &nonce, i);
            assert_eq!(
                f.auth
                    .verify(&f.key, &attempt(&f, Some(&bad), true, 1001))
                    .0,
                Verdict::Forbidden
            );
        }
        // Even the right password is refused now, without a challenge.
        let good = answer(Algorithm::Md5, "1001", "secret", &nonce, 9);
        assert_eq!(
            f.auth.verify(&f.key, &attempt(&f, Some(&good), true, 1002)),
            (Verdict::Forbidden, Some(Failure::Blocked))
        );
        assert_eq!(
            f.auth.verify(&f.key, &attempt(&f, None, true, 1002)),
            (Verdict::Forbidden, Some(Failure::Blocked))
        );
    }
}
