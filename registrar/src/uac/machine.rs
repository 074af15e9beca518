//! The pure state machine of one outbound registration (or presence subscription): what to
//! send next, when to refresh or retry, and what to report. No I/O and no clock: the driver
//! (`uac::client`) feeds it [`Input`]s and carries out the [`Action`]s it returns.
//!
//! ```text
//!   Start ──► Sending ──2xx──► Registered ──timer (½ granted)──► Sending
//!               │  ▲ 401/407: answer once per fresh challenge (again if stale)
//!               │  └ 423: raise to Min-Expires and resend
//!               └─ error/timeout ──► Backoff ──timer (capped exponential, jittered)──► Sending
//!   Stop (any state with a possible binding) ──► Unregistering (Expires: 0) ──► Finished
//! ```

use crate::auth::client::Challenge;
use std::time::Duration;
use switchboard_crds::registration::RegistrationPhase;

/// Timer settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timing {
    /// First retry delay after a failure (before jitter).
    pub backoff_base: Duration,
    /// Largest retry delay.
    pub backoff_max: Duration,
    /// Shortest refresh interval, whatever the upstream grants.
    pub min_refresh: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            backoff_base: Duration::from_secs(2),
            backoff_max: Duration::from_secs(300),
            min_refresh: Duration::from_secs(1),
        }
    }
}

/// A final response, as the machine needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Status code (final: ≥ 200).
    pub code: u16,
    /// `"403 Forbidden"`.
    pub status_text: String,
    /// For 401/407: the challenge to answer, or why none can be.
    pub challenge: Option<Result<Challenge, String>>,
    /// For 2xx: the expiry granted to our Contact.
    pub granted: Option<u32>,
    /// For 423: `Min-Expires`.
    pub min_expires: Option<u32>,
    /// `Retry-After` seconds.
    pub retry_after: Option<u32>,
}

impl Reply {
    /// A reply with only a code and text (tests, and codes that carry nothing else).
    pub fn status(code: u16, text: &str) -> Reply {
        Reply {
            code,
            status_text: text.to_string(),
            challenge: None,
            granted: None,
            min_expires: None,
            retry_after: None,
        }
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Begin registering.
    Start,
    /// A final response to the request last sent.
    Reply(Reply),
    /// No final response within the transaction timeout (Timer F).
    Timeout,
    /// The request could not be sent: DNS failure (`code` None), connection refused (503).
    TransportFailed {
        /// Status code to report, if any.
        code: Option<u16>,
        /// Human-readable reason.
        reason: String,
    },
    /// The timer armed by the last [`Action::Wait`] fired.
    Timer,
    /// The registration was removed from the config, or the registrar shuts down.
    Stop,
    /// The notifier ended the subscription (NOTIFY `Subscription-State: terminated`): start
    /// a new one after `retry_after` seconds (at once when absent).
    Terminated {
        /// Seconds to wait first.
        retry_after: Option<u32>,
    },
}

/// Credentials to put on the next request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    /// The challenge answered.
    pub challenge: Challenge,
    /// `Proxy-Authorization` (407) rather than `Authorization` (401).
    pub proxy: bool,
    /// Nonce count.
    pub nc: u32,
}

/// A phase report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// New phase.
    pub phase: RegistrationPhase,
    /// Last status code (408 for a timeout), none before any answer or on a DNS failure.
    pub code: Option<u16>,
    /// `"200 OK"`, `"403 Forbidden"`, `"408 timeout"`, `"DNS failure: …"`.
    pub reason: String,
    /// Seconds granted (Successful only).
    pub granted: Option<u32>,
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send the request (a new transaction) with this expiry and these credentials.
    Send {
        /// `Expires` value (0 to unregister).
        expires: u32,
        /// Credentials, if any.
        auth: Option<Auth>,
    },
    /// Arm the timer (replacing any armed one); it fires [`Input::Timer`].
    Wait(Duration),
    /// Report a phase.
    Report(Outcome),
    /// Nothing more to do: the task may end.
    Finished,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    Sending,
    Registered,
    Backoff,
    Unregistering,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SentAuth {
    None,
    /// Reused a nonce from an earlier transaction.
    Preemptive,
    /// Answered the challenge of this transaction's previous request.
    Fresh,
}

/// One registration's state.
#[derive(Debug, Clone)]
pub struct Machine {
    timing: Timing,
    expected_realm: Option<String>,
    state: State,
    /// Expiry asked for (raised by 423).
    expires: u32,
    auth: Option<Auth>,
    sent_auth: SentAuth,
    stale_answers: u8,
    brief_answers: u8,
    failures: u32,
    /// Whether the upstream may hold a binding of ours.
    bound: bool,
    rng: u64,
}

impl Machine {
    /// A machine asking for `expires` seconds; `seed` feeds the retry jitter.
    pub fn new(expires: u32, expected_realm: Option<String>, timing: Timing, seed: u64) -> Self {
        Machine {
            timing,
            expected_realm,
            state: State::Idle,
            expires: expires.max(1),
            auth: None,
            sent_auth: SentAuth::None,
            stale_answers: 0,
            brief_answers: 0,
            failures: 0,
            bound: false,
            rng: seed | 1,
        }
    }

    /// The expiry currently asked for.
    pub fn expires(&self) -> u32 {
        self.expires
    }

    /// Whether a request is outstanding.
    pub fn is_sending(&self) -> bool {
        matches!(self.state, State::Sending | State::Unregistering)
    }

    /// Whether it holds a binding (or subscription) and is only waiting to refresh it.
    pub fn is_registered(&self) -> bool {
        self.state == State::Registered
    }

    /// Whether the machine has finished.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Feeds one input and returns the actions, in order.
    pub fn handle(&mut self, input: Input) -> Vec<Action> {
        match (self.state, input) {
            (State::Done, _) => vec![],
            (State::Idle, Input::Start) => {
                let mut a = vec![Action::Report(Outcome {
                    phase: RegistrationPhase::InProgress,
                    code: None,
                    reason: "registering".into(),
                    granted: None,
                })];
                a.push(self.begin(false));
                a
            }
            (State::Registered | State::Backoff, Input::Timer) => vec![self.begin(false)],
            (State::Registered, Input::Terminated { retry_after }) => {
                self.state = State::Backoff;
                self.bound = false;
                let wait = retry_after.map_or(self.timing.min_refresh, |s| {
                    Duration::from_secs(s.into()).min(self.timing.backoff_max)
                });
                vec![Action::Wait(wait)]
            }
            (State::Sending, Input::Reply(r)) => self.on_reply(r),
            (State::Sending, Input::Timeout) => self.fail(Some(408), "408 timeout".into(), None),
            (State::Sending, Input::TransportFailed { code, reason }) => {
                self.fail(code, reason, None)
            }
            (State::Unregistering, Input::Reply(r)) => self.on_unregister_reply(r),
            (State::Unregistering, Input::Timeout | Input::TransportFailed { .. }) => self.finish(),
            (State::Idle, Input::Stop) => self.finish(),
            (State::Sending | State::Registered | State::Backoff, Input::Stop) => {
                if self.state == State::Sending || self.bound {
                    self.state = State::Unregistering;
                    self.stale_answers = 0;
                    vec![self.send(0, true)]
                } else {
                    self.finish()
                }
            }
            // Anything else (a late timer, a stray reply) changes nothing.
            _ => vec![],
        }
    }

    fn finish(&mut self) -> Vec<Action> {
        self.state = State::Done;
        vec![Action::Finished]
    }

    /// Starts a new attempt (initial, refresh or retry).
    fn begin(&mut self, _retry: bool) -> Action {
        self.state = State::Sending;
        self.stale_answers = 0;
        self.brief_answers = 0;
        self.send(self.expires, true)
    }

    /// Sends with the remembered credentials (preemptively, nc+1) when `reuse`.
    fn send(&mut self, expires: u32, reuse: bool) -> Action {
        let auth = if reuse {
            self.auth.as_mut().map(|a| {
                a.nc += 1;
                a.clone()
            })
        } else {
            None
        };
        self.sent_auth = if auth.is_some() {
            SentAuth::Preemptive
        } else {
            SentAuth::None
        };
        Action::Send { expires, auth }
    }

    fn answer(&mut self, challenge: Challenge, proxy: bool, expires: u32) -> Action {
        let auth = Auth {
            challenge,
            proxy,
            nc: 1,
        };
        self.auth = Some(auth.clone());
        self.sent_auth = SentAuth::Fresh;
        Action::Send {
            expires,
            auth: Some(auth),
        }
    }

    /// Decides whether a 401/407 can be answered: `Ok(challenge)` or `Err(reason)`.
    fn accept_challenge(&mut self, r: &Reply) -> Result<Challenge, String> {
        let c = match &r.challenge {
            Some(Ok(c)) => c.clone(),
            Some(Err(e)) => return Err(format!("{} ({e})", r.status_text)),
            None => return Err(format!("{} (no challenge)", r.status_text)),
        };
        if let Some(realm) = &self.expected_realm {
            if &c.realm != realm {
                return Err(format!(
                    "{} (realm {:?}, expected {realm:?})",
                    r.status_text, c.realm
                ));
            }
        }
        match self.sent_auth {
            SentAuth::None | SentAuth::Preemptive => Ok(c),
            SentAuth::Fresh if c.stale && self.stale_answers < 2 => {
                self.stale_answers += 1;
                Ok(c)
            }
            // Our answer to a fresh challenge was refused: wrong credentials.
            SentAuth::Fresh => Err(r.status_text.clone()),
        }
    }

    fn on_reply(&mut self, r: Reply) -> Vec<Action> {
        match r.code {
            200..=299 => {
                let granted = r.granted.unwrap_or(self.expires);
                if granted == 0 {
                    return self.fail(
                        Some(r.code),
                        format!("{} but no expiry granted", r.status_text),
                        None,
                    );
                }
                self.state = State::Registered;
                self.failures = 0;
                self.bound = true;
                vec![
                    Action::Report(Outcome {
                        phase: RegistrationPhase::Successful,
                        code: Some(r.code),
                        reason: r.status_text.clone(),
                        granted: Some(granted),
                    }),
                    Action::Wait(self.refresh_after(granted)),
                ]
            }
            401 | 407 => match self.accept_challenge(&r) {
                Ok(c) => vec![self.answer(c, r.code == 407, self.expires)],
                Err(reason) => self.fail(Some(r.code), reason, r.retry_after),
            },
            // RFC 6665 §8.3.2: the upstream does not offer this event package; asking again
            // soon would not change that.
            489 => {
                let max = u32::try_from(self.timing.backoff_max.as_secs()).unwrap_or(u32::MAX);
                self.fail(Some(489), r.status_text.clone(), Some(max.max(1)))
            }
            423 => match r.min_expires {
                Some(m) if m > self.expires && self.brief_answers < 2 => {
                    self.brief_answers += 1;
                    self.expires = m;
                    vec![self.send(m, true)]
                }
                _ => self.fail(Some(423), r.status_text.clone(), r.retry_after),
            },
            _ => self.fail(Some(r.code), r.status_text.clone(), r.retry_after),
        }
    }

    fn on_unregister_reply(&mut self, r: Reply) -> Vec<Action> {
        if matches!(r.code, 401 | 407) {
            if let Ok(c) = self.accept_challenge(&r) {
                return vec![self.answer(c, r.code == 407, 0)];
            }
        }
        self.bound = false;
        self.finish()
    }

    fn fail(&mut self, code: Option<u16>, reason: String, retry_after: Option<u32>) -> Vec<Action> {
        self.state = State::Backoff;
        self.failures = self.failures.saturating_add(1);
        let wait = match retry_after {
            Some(s) if s > 0 => Duration::from_secs(s.into()).min(self.timing.backoff_max),
            _ => self.backoff(),
        };
        vec![
            Action::Report(Outcome {
                phase: RegistrationPhase::Failed,
                code,
                reason,
                granted: None,
            }),
            Action::Wait(wait),
        ]
    }

    /// Refresh at half the granted expiry.
    pub fn refresh_after(&self, granted: u32) -> Duration {
        (Duration::from_secs(granted.into()) / 2).max(self.timing.min_refresh)
    }

    /// `base · 2^(failures-1)`, capped, times a jitter factor in [0.5, 1).
    fn backoff(&mut self) -> Duration {
        let exp = self.failures.saturating_sub(1).min(30);
        let raw = self
            .timing
            .backoff_base
            .saturating_mul(1u32 << exp)
            .min(self.timing.backoff_max);
        // xorshift64
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let jitter = 0.5 + (self.rng >> 11) as f64 / (1u64 << 53) as f64 / 2.0;
        raw.mul_f64(jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::digest::Algorithm;

    fn timing() -> Timing {
        Timing {
            backoff_base: Duration::from_secs(2),
            backoff_max: Duration::from_secs(300),
            min_refresh: Duration::from_secs(1),
        }
    }

    fn challenge(nonce: &str, stale: bool) -> Challenge {
        Challenge {
            realm: "example.test".into(),
            nonce: nonce.into(),
            opaque: None,
            algorithm: Algorithm::Md5,
            sess: false,
            qop_auth: true,
            stale,
        }
    }

    fn r401(nonce: &str, stale: bool) -> Input {
        Input::Reply(Reply {
            challenge: Some(Ok(challenge(nonce, stale))),
            ..Reply::status(401, "401 Unauthorized")
        })
    }

    fn ok(granted: u32) -> Input {
        Input::Reply(Reply {
            granted: Some(granted),
            ..Reply::status(200, "200 OK")
        })
    }

    fn sent(a: &[Action]) -> Option<(u32, Option<Auth>)> {
        a.iter().find_map(|a| match a {
            Action::Send { expires, auth } => Some((*expires, auth.clone())),
            _ => None,
        })
    }

    fn reported(a: &[Action]) -> Option<Outcome> {
        a.iter().find_map(|a| match a {
            Action::Report(o) => Some(o.clone()),
            _ => None,
        })
    }

    fn waited(a: &[Action]) -> Option<Duration> {
        a.iter().find_map(|a| match a {
            Action::Wait(d) => Some(*d),
            _ => None,
        })
    }

    #[test]
    fn challenge_answer_success_and_refresh() {
        let mut m = Machine::new(3600, None, timing(), 7);
        let a = m.handle(Input::Start);
        assert_eq!(reported(&a).unwrap().phase, RegistrationPhase::InProgress);
        assert_eq!(sent(&a), Some((3600, None)));
        let a = m.handle(r401("n1", false));
        let (_, auth) = sent(&a).unwrap();
        assert_eq!(auth.unwrap().nc, 1);
        let a = m.handle(ok(1800));
        let o = reported(&a).unwrap();
        assert_eq!(
            (o.phase, o.code, o.granted),
            (RegistrationPhase::Successful, Some(200), Some(1800))
        );
        assert_eq!(waited(&a), Some(Duration::from_secs(900)));
        // Refresh reuses the nonce with the next nonce count.
        let a = m.handle(Input::Timer);
        let (exp, auth) = sent(&a).unwrap();
        assert_eq!((exp, auth.unwrap().nc), (3600, 2));
        // The server wants a new nonce: answered, since the last one was preemptive.
        let a = m.handle(r401("n2", false));
        assert_eq!(sent(&a).unwrap().1.unwrap().challenge.nonce, "n2");
        let a = m.handle(ok(3600));
        assert_eq!(reported(&a).unwrap().phase, RegistrationPhase::Successful);
    }

    #[test]
    fn wrong_password_fails_with_401_then_backs_off_exponentially() {
        let mut m = Machine::new(600, None, timing(), 42);
        m.handle(Input::Start);
        m.handle(r401("n1", false));
        let a = m.handle(r401("n2", false));
        let o = reported(&a).unwrap();
        assert_eq!(
            (o.phase, o.code, o.reason.as_str()),
            (RegistrationPhase::Failed, Some(401), "401 Unauthorized")
        );
        let mut last = Duration::ZERO;
        let mut waits = vec![waited(&a).unwrap()];
        for _ in 0..12 {
            m.handle(Input::Timer);
            let a = m.handle(Input::Reply(Reply::status(403, "403 Forbidden")));
            assert_eq!(reported(&a).unwrap().code, Some(403));
            waits.push(waited(&a).unwrap());
        }
        assert!(
            waits[0] >= Duration::from_secs(1) && waits[0] < Duration::from_secs(2),
            "{waits:?}"
        );
        assert!(
            waits[3] >= Duration::from_secs(8) && waits[3] < Duration::from_secs(16),
            "{waits:?}"
        );
        for w in &waits {
            assert!(*w <= Duration::from_secs(300));
            last = last.max(*w);
        }
        assert!(
            last >= Duration::from_secs(150),
            "capped near 5 min: {waits:?}"
        );
    }

    #[test]
    fn stale_nonce_is_answered_again() {
        let mut m = Machine::new(600, None, timing(), 1);
        m.handle(Input::Start);
        m.handle(r401("n1", false));
        let a = m.handle(r401("n2", true));
        assert_eq!(sent(&a).unwrap().1.unwrap().challenge.nonce, "n2");
        assert_eq!(
            reported(&m.handle(ok(600))).unwrap().phase,
            RegistrationPhase::Successful
        );
    }

    #[test]
    fn realm_mismatch_fails() {
        let mut m = Machine::new(600, Some("other.test".into()), timing(), 1);
        m.handle(Input::Start);
        let o = reported(&m.handle(r401("n1", false))).unwrap();
        assert_eq!(o.phase, RegistrationPhase::Failed);
        assert!(o.reason.contains("realm"), "{}", o.reason);
    }

    #[test]
    fn interval_too_brief_raises_expiry() {
        let mut m = Machine::new(60, None, timing(), 1);
        m.handle(Input::Start);
        let a = m.handle(Input::Reply(Reply {
            min_expires: Some(600),
            ..Reply::status(423, "423 Interval Too Brief")
        }));
        assert_eq!(sent(&a).unwrap().0, 600);
        assert_eq!(m.expires(), 600);
        // A 423 without a larger Min-Expires is a failure.
        let a = m.handle(Input::Reply(Reply {
            min_expires: Some(600),
            ..Reply::status(423, "423 Interval Too Brief")
        }));
        assert_eq!(reported(&a).unwrap().code, Some(423));
    }

    #[test]
    fn timeout_then_recovery_without_action() {
        let mut m = Machine::new(600, None, timing(), 3);
        m.handle(Input::Start);
        m.handle(ok(600));
        m.handle(Input::Timer);
        let a = m.handle(Input::Timeout);
        let o = reported(&a).unwrap();
        assert_eq!(
            (o.phase, o.code, o.reason.as_str()),
            (RegistrationPhase::Failed, Some(408), "408 timeout")
        );
        let a = m.handle(Input::Timer);
        assert!(sent(&a).is_some());
        assert_eq!(
            reported(&m.handle(ok(600))).unwrap().phase,
            RegistrationPhase::Successful
        );
        assert_eq!(m.failures(), 0);
    }

    #[test]
    fn dns_failure_has_no_code() {
        let mut m = Machine::new(600, None, timing(), 3);
        m.handle(Input::Start);
        let a = m.handle(Input::TransportFailed {
            code: None,
            reason: "DNS failure: no such host".into(),
        });
        let o = reported(&a).unwrap();
        assert_eq!(
            (o.code, o.reason.as_str()),
            (None, "DNS failure: no such host")
        );
    }

    #[test]
    fn retry_after_is_honoured() {
        let mut m = Machine::new(600, None, timing(), 3);
        m.handle(Input::Start);
        let a = m.handle(Input::Reply(Reply {
            retry_after: Some(30),
            ..Reply::status(503, "503 Service Unavailable")
        }));
        assert_eq!(waited(&a), Some(Duration::from_secs(30)));
    }

    #[test]
    fn stop_unregisters_a_live_binding_and_answers_its_challenge() {
        let mut m = Machine::new(600, None, timing(), 3);
        m.handle(Input::Start);
        m.handle(r401("n1", false));
        m.handle(ok(600));
        let a = m.handle(Input::Stop);
        let (exp, auth) = sent(&a).unwrap();
        assert_eq!((exp, auth.unwrap().nc), (0, 2));
        let a = m.handle(r401("n9", false));
        assert_eq!(sent(&a).unwrap().0, 0);
        assert_eq!(m.handle(ok(0)), vec![Action::Finished]);
        assert!(m.is_done());
        assert!(m.handle(Input::Timer).is_empty());
    }

    #[test]
    fn stop_without_binding_finishes_at_once() {
        let mut m = Machine::new(600, None, timing(), 3);
        assert_eq!(m.handle(Input::Stop), vec![Action::Finished]);
        let mut m = Machine::new(600, None, timing(), 3);
        m.handle(Input::Start);
        m.handle(Input::Reply(Reply::status(403, "403 Forbidden")));
        assert_eq!(m.handle(Input::Stop), vec![Action::Finished]);
        // In flight: the upstream may have bound it, so unregister.
        let mut m = Machine::new(600, None, timing(), 3);
        m.handle(Input::Start);
        assert_eq!(sent(&m.handle(Input::Stop)).unwrap().0, 0);
        assert_eq!(m.handle(Input::Timeout), vec![Action::Finished]);
    }

    #[test]
    fn terminated_subscription_starts_again_and_489_waits_long() {
        let mut m = Machine::new(600, None, timing(), 3);
        m.handle(Input::Start);
        m.handle(ok(600));
        let a = m.handle(Input::Terminated { retry_after: None });
        assert_eq!(a, vec![Action::Wait(Duration::from_secs(1))]);
        assert!(sent(&m.handle(Input::Timer)).is_some());
        m.handle(ok(600));
        let a = m.handle(Input::Terminated {
            retry_after: Some(30),
        });
        assert_eq!(waited(&a), Some(Duration::from_secs(30)));
        // Not bound any more: stopping sends nothing.
        assert_eq!(m.handle(Input::Stop), vec![Action::Finished]);

        let mut m = Machine::new(600, None, timing(), 3);
        m.handle(Input::Start);
        let a = m.handle(Input::Reply(Reply::status(489, "489 Bad Event")));
        let o = reported(&a).unwrap();
        assert_eq!((o.phase, o.code), (RegistrationPhase::Failed, Some(489)));
        assert_eq!(waited(&a), Some(Duration::from_secs(300)));
    }

    #[test]
    fn refresh_is_half_the_grant_with_a_floor() {
        let m = Machine::new(600, None, timing(), 3);
        assert_eq!(m.refresh_after(3600), Duration::from_secs(1800));
        assert_eq!(m.refresh_after(1), Duration::from_secs(1));
    }
}
