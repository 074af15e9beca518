//! Digest authentication of REGISTER requests and of the proxy's calls.
//!
//! - [`digest`]: header parsing and response computation (RFC 2617/7616/8760).
//! - [`nonce`]: stateless HMAC nonces any replica sharing the key can check.
//! - [`limiter`]: failed authentications per (source, user) and per source, with backoff.
//! - [`replay`]: the highest nonce-count per nonce (replays refused).
//! - [`state`]: the limiter and replay records behind one trait, in memory for one replica,
//!   in Redis ([`redis`]) for several, so a replay or a guess is refused by every replica.
//! - [`log_gate`]: failure log lines rate-limited per source.
//!
//! [`Authenticator::verify`] takes the time as an argument and its state as a trait object, so
//! every branch is unit-tested.
//!
//! **Two steps.** A request is first checked on its own (nonce, digest; a wrong digest counted
//! by the limiter), then admitted by the state (blocked? replayed? else its nonce-count
//! recorded). [`Authenticator::check`] does both; a REGISTER takes them apart
//! ([`Authenticator::check_digest`], then a [`Pending`] admission) so that with the state in
//! Redis the admission rides in the bindings write ([`Authenticator::guard`]): one round trip.
//!
//! **Answers.** No or unusable credentials → 401 with a fresh challenge per algorithm the
//! domain offers (its `registration.digestAlgorithms`, in that order; MD5 alone by default, a
//! site opting in to RFC 8760 lists SHA-256 first, §2.4). A digest that verifies against an
//! expired nonce → 401 with `stale=true`. A wrong digest with a fresh nonce → **403**,
//! identical for an unknown user and a wrong password (same status, same reason phrase, same
//! headers, the same work: an unknown user is checked against a dummy HA1, and the same
//! limiter). 403 rather than a fresh 401 because a phone with a wrong password would otherwise
//! loop on challenges. A replayed nonce-count → 401 with a fresh nonce. Credentials of a
//! blocked (source, user) or source → 403, even when right. The state unreachable (Redis
//! down) → [`Verdict::Unavailable`]: a REGISTER gets the location store's 500 with
//! `Retry-After`, a call 503.

pub mod client;
pub mod digest;
pub mod limiter;
pub mod log_gate;
pub mod nonce;
pub mod redis;
pub mod replay;
pub mod state;

use crate::location::Guard;
use crate::metrics::Metrics;
use digest::{Algorithm, Credentials};
use limiter::{LimiterSettings, PairKey, Scope, Strike};
use log_gate::LogGate;
use nonce::{NonceKey, NonceStatus};
use state::{Admission, AuthState, MemoryAuthState, StateError};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use switchboard_crds::common::DigestAlgorithm;
use switchboard_crds::config::{DeviceConfig, DomainConfig, RegistrarConfig};

/// How the registrar authenticates.
#[derive(Clone, Debug)]
pub struct AuthSettings {
    /// Nonce lifetime; older nonces get `stale=true`.
    pub nonce_ttl: Duration,
    /// The failed-authentication limiter.
    pub limiter: LimiterSettings,
    /// Replay protection in memory: the nonce-counts of the last this many nonces issued are
    /// held (8 bytes each); an older nonce is answered as stale.
    pub nonce_capacity: usize,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            nonce_ttl: Duration::from_secs(300),
            limiter: LimiterSettings::default(),
            nonce_capacity: 1 << 21,
        }
    }
}

impl AuthSettings {
    /// The state of one replica, in memory, with these limits.
    pub fn memory_state(&self) -> Arc<dyn AuthState> {
        Arc::new(MemoryAuthState::new(self.limiter, self.nonce_capacity))
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
    /// The shared state could not be reached (500 to a REGISTER, like the store, 503 to a call).
    Unavailable,
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
    /// The (source, user) pair or the source is cooling off after too many failures.
    Blocked,
    /// The shared state could not be reached.
    StateUnavailable,
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
            Failure::StateUnavailable => "state_unavailable",
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
    pub credentials: Option<&'a Credentials<'a>>,
    /// The HA1 values of the device named by the credentials' username, if it exists.
    pub ha1: Option<Ha1<'a>>,
    /// The source address (for the failure limiter).
    pub source: IpAddr,
    /// Unix milliseconds (nonces use the seconds, the limiter the milliseconds).
    pub now_ms: u64,
}

/// What [`Authenticator::verify`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// What to answer.
    pub verdict: Verdict,
    /// Why it was not authorized.
    pub failure: Option<Failure>,
    /// A block this attempt started: on what, until when (unix ms).
    pub blocked: Option<(Scope, u64)>,
}

impl Outcome {
    fn of(verdict: Verdict, failure: Failure) -> Outcome {
        Outcome {
            verdict,
            failure: Some(failure),
            blocked: None,
        }
    }

    fn challenge(failure: Failure) -> Outcome {
        Outcome::of(Verdict::Challenge { stale: false }, failure)
    }
}

/// One request's credentials checked against a domain's devices ([`Authenticator::check`]).
#[derive(Debug)]
pub struct Checked<'c> {
    /// What to answer.
    pub verdict: Verdict,
    /// Why it failed, worth counting (a request without credentials is not a failure).
    pub failure: Option<Failure>,
    /// The device the credentials name, if it exists.
    pub device: Option<&'c DeviceConfig>,
    /// From [`Authenticator::check_digest`] only: the digest is right (`verdict` is
    /// `Authorized`) but the request is not admitted yet; the caller must, through
    /// [`Authenticator::admit`] or a write behind [`Authenticator::guard`].
    pub pending: Option<Pending>,
}

/// A request whose digest verified, still to be admitted by the state.
#[derive(Clone, Debug)]
pub struct Pending {
    pair: PairKey,
    realm: String,
    nonce: String,
    nc: u32,
    now_ms: u64,
}

const DUMMY_HA1: Ha1<'static> = Ha1 {
    md5: "00000000000000000000000000000000",
    sha256: "0000000000000000000000000000000000000000000000000000000000000000",
};

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Where the devices are found by realm and SIP user: the config in force indexes them
/// ([`crate::config::Loaded`]); a bare [`RegistrarConfig`] searches its sorted lists.
pub trait Directory {
    /// The device with SIP user `user` in the domain `realm`.
    fn device(&self, realm: &str, user: &str) -> Option<&DeviceConfig>;
}

impl Directory for RegistrarConfig {
    fn device(&self, realm: &str, user: &str) -> Option<&DeviceConfig> {
        RegistrarConfig::device(self, realm, user).map(|(_, d)| d)
    }
}

/// The device an auth name names, with the HA1 values its digest is checked against: `user`
/// against the device's HA1, `user@realm` (as Zoiper and others send it) against its HA1 of
/// that name. Another domain after the `@` names nobody.
fn named_device<'c>(
    config: &'c (impl Directory + ?Sized),
    realm: &str,
    name: &str,
) -> Option<(&'c DeviceConfig, Ha1<'c>)> {
    if let Some(d) = config.device(realm, name) {
        let ha1 = Ha1 {
            md5: &d.ha1_md5,
            sha256: &d.ha1_sha256,
        };
        return Some((d, ha1));
    }
    let (user, domain) = name.rsplit_once('@')?;
    if !domain.eq_ignore_ascii_case(realm) {
        return None;
    }
    let d = config.device(realm, user)?;
    let ha1 = Ha1 {
        md5: d.ha1b_md5.as_deref()?,
        sha256: d.ha1b_sha256.as_deref()?,
    };
    Some((d, ha1))
}

/// The outcome of an admission.
fn admitted(admission: Result<Admission, StateError>) -> Outcome {
    match admission {
        Ok(Admission::Admitted) => Outcome {
            verdict: Verdict::Authorized,
            failure: None,
            blocked: None,
        },
        Ok(Admission::Blocked(_)) => Outcome::of(Verdict::Forbidden, Failure::Blocked),
        Ok(Admission::Replay) => Outcome::challenge(Failure::Replay),
        Ok(Admission::Forgotten) => Outcome::of(Verdict::Challenge { stale: true }, Failure::Stale),
        Err(e) => {
            tracing::warn!(error = %e, "checking an authentication");
            Outcome::of(Verdict::Unavailable, Failure::StateUnavailable)
        }
    }
}

/// Verifies digests and issues challenges.
pub struct Authenticator {
    settings: AuthSettings,
    state: Arc<dyn AuthState>,
    metrics: Arc<Metrics>,
    logs: LogGate,
}

impl Authenticator {
    /// An authenticator keeping its limiter and replay records in `state`, counting into
    /// `metrics`.
    pub fn new(
        settings: AuthSettings,
        state: Arc<dyn AuthState>,
        metrics: Arc<Metrics>,
    ) -> Authenticator {
        Authenticator {
            settings,
            state,
            metrics,
            logs: LogGate::default(),
        }
    }

    /// The settings.
    pub fn settings(&self) -> &AuthSettings {
        &self.settings
    }

    /// Checks a request's digest credentials for `domain`: `headers` are its `Authorization`
    /// (REGISTER) or `Proxy-Authorization` (calls) values; the ones for the domain's realm are
    /// taken, the device they name looked up, the digest verified and the request admitted.
    /// REGISTER and the proxy share this; each answers a challenge with its own header.
    /// Failures are counted and logged (at most a few lines a minute per source) here.
    #[allow(clippy::too_many_arguments)]
    pub async fn check<'c, 'h>(
        &self,
        key: &NonceKey,
        config: &'c (impl Directory + ?Sized),
        domain: &DomainConfig,
        method: &str,
        headers: impl IntoIterator<Item = &'h str>,
        source: IpAddr,
        now_ms: u64,
    ) -> Checked<'c> {
        let mut checked = self
            .check_digest(key, config, domain, method, headers, source, now_ms)
            .await;
        if let Some(pending) = checked.pending.take() {
            let outcome = self.admit(&pending).await;
            checked.verdict = outcome.verdict;
            checked.failure = outcome.failure;
        }
        checked
    }

    /// [`Authenticator::check`] short of the admission: a right digest comes back `Authorized`
    /// with [`Checked::pending`] set.
    #[allow(clippy::too_many_arguments)]
    pub async fn check_digest<'c, 'h>(
        &self,
        key: &NonceKey,
        config: &'c (impl Directory + ?Sized),
        domain: &DomainConfig,
        method: &str,
        headers: impl IntoIterator<Item = &'h str>,
        source: IpAddr,
        now_ms: u64,
    ) -> Checked<'c> {
        let realm = domain.domain.as_str();
        let credentials = headers
            .into_iter()
            .filter_map(Credentials::parse)
            .find(|c| c.realm.eq_ignore_ascii_case(realm));
        let named = credentials
            .as_ref()
            .and_then(|c| named_device(config, realm, &c.username));
        let device = named.map(|(d, _)| d);
        let examined = self
            .examine(
                key,
                &Attempt {
                    realm,
                    algorithms: &domain.registration.digest_algorithms,
                    method,
                    credentials: credentials.as_ref(),
                    ha1: named.map(|(_, ha1)| ha1),
                    source,
                    now_ms,
                },
            )
            .await;
        let outcome = match examined {
            Ok(pending) => {
                return Checked {
                    verdict: Verdict::Authorized,
                    failure: None,
                    device,
                    pending: Some(pending),
                }
            }
            Err(outcome) => outcome,
        };
        let failure = outcome.failure.filter(|f| *f != Failure::NoCredentials);
        let user = credentials.as_ref().map(|c| c.username.as_ref());
        self.record(&outcome, failure, realm, user, source, now_ms);
        Checked {
            verdict: outcome.verdict,
            failure,
            device,
            pending: None,
        }
    }

    /// Admits a request whose digest verified (one round trip for the Redis state); a refusal
    /// is counted and logged as by [`Authenticator::check`].
    pub async fn admit(&self, pending: &Pending) -> Outcome {
        let p = pending;
        let admission = self.state.admit(&p.pair, &p.nonce, p.nc, p.now_ms).await;
        self.conclude(p, admission)
    }

    /// The admission of `pending` as a [`Guard`] for the Redis bindings write, when the state
    /// is in Redis (`None`: admit it with [`Authenticator::admit`]).
    pub fn guard(&self, pending: &Pending) -> Option<Guard> {
        let p = pending;
        self.state.guard(&p.pair, &p.nonce, p.nc, p.now_ms)
    }

    /// The outcome of `pending`'s admission, decided by [`Authenticator::admit`] or by a write
    /// behind its guard; a refusal counted and logged.
    pub fn conclude(&self, pending: &Pending, admission: Result<Admission, StateError>) -> Outcome {
        let outcome = admitted(admission);
        let p = pending;
        let user = Some(p.pair.user.as_str());
        self.record(
            &outcome,
            outcome.failure,
            &p.realm,
            user,
            p.pair.source,
            p.now_ms,
        );
        outcome
    }

    /// Counts a failure and a block in the metrics, and logs what a person should see.
    fn record(
        &self,
        outcome: &Outcome,
        failure: Option<Failure>,
        realm: &str,
        user: Option<&str>,
        source: IpAddr,
        now_ms: u64,
    ) {
        let Some(f) = failure else { return };
        self.metrics
            .auth_failures
            .with_label_values(&[f.as_str()])
            .inc();
        if let Some((scope, _)) = outcome.blocked {
            self.metrics
                .auth_blocks
                .with_label_values(&[scope.as_str()])
                .inc();
        }
        let noteworthy = matches!(
            f,
            Failure::WrongPassword
                | Failure::UnknownUser
                | Failure::Blocked
                | Failure::StateUnavailable
        ) || outcome.blocked.is_some();
        if !noteworthy {
            return;
        }
        let Some(left_out) = self.logs.allow(source, now_ms) else {
            self.metrics.auth_logs_suppressed.inc();
            return;
        };
        match outcome.blocked {
            Some((scope, until)) => tracing::warn!(
                %source, realm, user, scope = scope.as_str(),
                seconds = until.saturating_sub(now_ms) / 1000, left_out,
                "too many failed authentications: blocked"
            ),
            None => tracing::info!(
                %source, realm, user, reason = f.as_str(), left_out,
                "authentication failed"
            ),
        }
    }

    /// Decides on an attempt: [`Authenticator::examine`], then the admission.
    pub async fn verify(&self, key: &NonceKey, a: &Attempt<'_>) -> Outcome {
        match self.examine(key, a).await {
            Ok(p) => self.admit(&p).await,
            Err(outcome) => outcome,
        }
    }

    /// Checks an attempt short of its admission: the request to admit when its digest is
    /// right on a fresh nonce, else the outcome (a wrong digest counted by the limiter).
    async fn examine(&self, key: &NonceKey, a: &Attempt<'_>) -> Result<Pending, Outcome> {
        let Some(c) = a.credentials else {
            return Err(Outcome::challenge(Failure::NoCredentials));
        };
        let Some(algorithm) = c
            .algorithm()
            .filter(|&al| a.algorithms.iter().any(|&o| Algorithm::from(o) == al))
        else {
            return Err(Outcome::challenge(Failure::Unusable));
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
            return Err(Outcome::challenge(Failure::Unusable));
        };
        let now_secs = a.now_ms / 1000;
        let status = key.check(
            &c.nonce,
            a.realm,
            now_secs,
            self.settings.nonce_ttl.as_secs(),
        );
        if status == NonceStatus::Invalid {
            return Err(Outcome::challenge(Failure::BadNonce));
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
        let pair = PairKey {
            source: a.source,
            user: c.username.to_string(),
            known: a.ha1.is_some(),
        };
        if !right {
            if status == NonceStatus::Stale {
                // Not counted: the phone may just have kept an old nonce; it gets a fresh
                // challenge and fails properly next time if the password is wrong.
                return Err(Outcome::challenge(Failure::WrongPassword));
            }
            let why = if a.ha1.is_some() {
                Failure::WrongPassword
            } else {
                Failure::UnknownUser
            };
            return Err(self.strike(&pair, a.now_ms, why).await);
        }
        if status == NonceStatus::Stale {
            return Err(Outcome::of(
                Verdict::Challenge { stale: true },
                Failure::Stale,
            ));
        }
        Ok(Pending {
            pair,
            realm: a.realm.to_string(),
            nonce: c.nonce.to_string(),
            nc,
            now_ms: a.now_ms,
        })
    }

    /// Counts a wrong digest (`why`) against `pair` in the limiter.
    async fn strike(&self, pair: &PairKey, now_ms: u64, why: Failure) -> Outcome {
        match self.state.fail(pair, now_ms).await {
            Ok(Strike::AlreadyBlocked(_)) => Outcome::of(Verdict::Forbidden, Failure::Blocked),
            Ok(Strike::Blocked { scope, until }) => Outcome {
                blocked: Some((scope, until)),
                ..Outcome::of(Verdict::Forbidden, why)
            },
            Ok(Strike::Counted) => Outcome::of(Verdict::Forbidden, why),
            Err(e) => {
                tracing::warn!(error = %e, "recording a failed authentication");
                Outcome::of(Verdict::Unavailable, Failure::StateUnavailable)
            }
        }
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
        let nonce = key.issue(realm, now_secs, self.state.salt());
        algorithms
            .iter()
            .map(|&alg| digest::challenge(realm, &nonce, alg.into(), stale))
            .collect()
    }

    /// Forgets lapsed limiter records and log budgets and sets the blocked gauges (called
    /// every second by the sweeper).
    pub async fn sweep(&self) {
        let now = unix_ms();
        self.logs.prune(now);
        if let Err(e) = self.state.prune(now).await {
            tracing::debug!(error = %e, "pruning the authentication state");
        }
        match self.state.blocked(now).await {
            Ok(b) => {
                let gauge = &self.metrics.auth_blocked;
                gauge.with_label_values(&["pair"]).set(b.pairs as i64);
                gauge.with_label_values(&["source"]).set(b.sources as i64);
            }
            Err(e) => tracing::debug!(error = %e, "counting blocked sources"),
        }
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
    }

    fn fixture() -> Fixture {
        let (md5, sha) = ha1("1001", REALM, "secret");
        Fixture {
            auth: {
                let settings = AuthSettings {
                    limiter: LimiterSettings {
                        pair_failures: 3,
                        ..Default::default()
                    },
                    ..Default::default()
                };
                let state = settings.memory_state();
                Authenticator::new(settings, state, Arc::new(Metrics::new()))
            },
            key: NonceKey::new(b"k"),
            md5,
            sha,
        }
    }

    /// The verdict and failure of an attempt.
    async fn v(f: &Fixture, a: &Attempt<'_>) -> (Verdict, Option<Failure>) {
        let o = f.auth.verify(&f.key, a).await;
        (o.verdict, o.failure)
    }

    /// What a client computes from the password.
    fn answer(
        alg: Algorithm,
        user: &str,
        password: &str,
        nonce: &str,
        nc: u32,
    ) -> Credentials<'static> {
        let (md5, sha) = ha1(user, REALM, password);
        let h = if alg == Algorithm::Md5 { md5 } else { sha };
        let nc = format!("{nc:08x}");
        let uri = "sip:switchboard.local";
        Credentials {
            username: user.to_string().into(),
            realm: REALM.into(),
            nonce: nonce.to_string().into(),
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
            )
            .into(),
            algorithm: Some(alg.name().into()),
            cnonce: Some("c0ffee".into()),
            qop: Some("auth".into()),
            nc: Some(nc.into()),
            opaque: None,
        }
    }

    fn attempt<'a>(
        f: &'a Fixture,
        c: Option<&'a Credentials<'a>>,
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
            now_ms: now_secs * 1000,
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

    #[tokio::test]
    async fn challenge_lists_sha256_first_then_md5() {
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

    #[tokio::test]
    async fn a_domain_offering_md5_only_gets_one_challenge_and_refuses_sha256() {
        let f = fixture();
        let md5_only = &[DigestAlgorithm::Md5];
        let ch = f.auth.challenges(&f.key, REALM, md5_only, 1000, false);
        assert_eq!(ch.len(), 1);
        assert!(ch[0].contains("algorithm=MD5"));
        let sha = answer(Algorithm::Sha256, "1001", "secret", &nonce_of(&ch[0]), 1);
        let mut a = attempt(&f, Some(&sha), true, 1001);
        a.algorithms = md5_only;
        assert_eq!(
            v(&f, &a).await,
            (Verdict::Challenge { stale: false }, Some(Failure::Unusable))
        );
        let md5 = answer(Algorithm::Md5, "1001", "secret", &nonce_of(&ch[0]), 1);
        let mut a = attempt(&f, Some(&md5), true, 1001);
        a.algorithms = md5_only;
        assert_eq!(v(&f, &a).await.0, Verdict::Authorized);
    }

    #[tokio::test]
    async fn both_algorithms_authorize_and_nc_must_grow() {
        let f = fixture();
        for alg in [Algorithm::Sha256, Algorithm::Md5] {
            let nonce = nonce_of(&f.auth.challenges(&f.key, REALM, BOTH, 1000, false)[0]);
            let c1 = answer(alg, "1001", "secret", &nonce, 1);
            assert_eq!(
                v(&f, &attempt(&f, Some(&c1), true, 1001)).await.0,
                Verdict::Authorized
            );
            // The same nc again is a replay.
            assert_eq!(
                v(&f, &attempt(&f, Some(&c1), true, 1002)).await,
                (Verdict::Challenge { stale: false }, Some(Failure::Replay))
            );
            let c2 = answer(alg, "1001", "secret", &nonce, 2);
            assert_eq!(
                v(&f, &attempt(&f, Some(&c2), true, 1003)).await.0,
                Verdict::Authorized
            );
        }
    }

    #[tokio::test]
    async fn wrong_password_and_unknown_user_look_the_same() {
        let f = fixture();
        let nonce = nonce_of(&f.auth.challenges(&f.key, REALM, BOTH, 1000, false)[0]);
        let wrong = answer(Algorithm::Sha256, "1001", "nope", &nonce, 1);
        let unknown = answer(Algorithm::Sha256, "9999", "secret", &nonce, 1);
        let a = v(&f, &attempt(&f, Some(&wrong), true, 1001)).await;
        let b = v(&f, &attempt(&f, Some(&unknown), false, 1001)).await;
        assert_eq!(a.0, Verdict::Forbidden);
        assert_eq!(b.0, Verdict::Forbidden);
        assert_eq!(a.1, Some(Failure::WrongPassword));
        assert_eq!(b.1, Some(Failure::UnknownUser));
    }

    #[tokio::test]
    async fn stale_only_when_the_digest_is_right() {
        let f = fixture();
        let nonce = nonce_of(&f.auth.challenges(&f.key, REALM, BOTH, 1000, false)[0]);
        let good = answer(Algorithm::Md5, "1001", "secret", &nonce, 1);
        assert_eq!(
            v(&f, &attempt(&f, Some(&good), true, 1400)).await,
            (Verdict::Challenge { stale: true }, Some(Failure::Stale))
        );
        let bad = answer(Algorithm::Md5, "1001", "nope", &nonce, 1);
        assert_eq!(
            v(&f, &attempt(&f, Some(&bad), true, 1400)).await.0,
            Verdict::Challenge { stale: false }
        );
        assert!(f.auth.challenges(&f.key, REALM, BOTH, 1400, true)[0].ends_with("stale=true"));
    }

    #[tokio::test]
    async fn forged_nonce_and_missing_qop_are_rechallenged() {
        let f = fixture();
        let forged = answer(
            Algorithm::Md5,
            "1001",
            "secret",
            &NonceKey::new(b"x").issue(REALM, 1000, [0; 8]),
            1,
        );
        assert_eq!(
            v(&f, &attempt(&f, Some(&forged), true, 1000)).await,
            (Verdict::Challenge { stale: false }, Some(Failure::BadNonce))
        );
        let nonce = nonce_of(&f.auth.challenges(&f.key, REALM, BOTH, 1000, false)[0]);
        let mut no_qop = answer(Algorithm::Md5, "1001", "secret", &nonce, 1);
        no_qop.qop = None;
        assert_eq!(
            v(&f, &attempt(&f, Some(&no_qop), true, 1000)).await.1,
            Some(Failure::Unusable)
        );
        assert_eq!(
            v(&f, &attempt(&f, None, true, 1000)).await.1,
            Some(Failure::NoCredentials)
        );
    }

    #[tokio::test]
    async fn too_many_failures_block_the_pair_not_its_neighbours() {
        let f = fixture();
        let nonce = nonce_of(&f.auth.challenges(&f.key, REALM, BOTH, 1000, false)[0]);
        for i in 1..=3 {
            let bad = answer(Algorithm::Md5, "1001", "nope", &nonce, i);
            assert_eq!(
                v(&f, &attempt(&f, Some(&bad), true, 1001)).await.0,
                Verdict::Forbidden
            );
        }
        // Even the right password is refused now, without a challenge.
        let good = answer(Algorithm::Md5, "1001", "secret", &nonce, 9);
        assert_eq!(
            v(&f, &attempt(&f, Some(&good), true, 1002)).await,
            (Verdict::Forbidden, Some(Failure::Blocked))
        );
        // Without credentials a request is challenged: the block bites on the answer.
        assert_eq!(
            v(&f, &attempt(&f, None, true, 1002)).await,
            (
                Verdict::Challenge { stale: false },
                Some(Failure::NoCredentials)
            )
        );
        // Another user behind the same address is not blocked (it fails only on its digest,
        // here as an unknown user).
        let other = answer(Algorithm::Md5, "1002", "secret", &nonce, 10);
        assert_eq!(
            v(&f, &attempt(&f, Some(&other), false, 1002)).await,
            (Verdict::Forbidden, Some(Failure::UnknownUser))
        );
    }
}
