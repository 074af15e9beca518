//! What digest authentication remembers between requests: the failure limiter
//! ([`super::limiter`]) and the highest nonce-count per nonce ([`super::replay`]). One replica
//! keeps it in memory ([`MemoryAuthState`]); replicas sharing bindings in Redis share it there
//! too ([`super::redis::RedisAuthState`]), so a captured `Authorization` cannot be replayed
//! against another replica and a guesser cannot spread its attempts over replicas.
//!
//! Both take the same two questions, each one round trip for Redis: [`AuthState::admit`] for
//! a request whose digest verified (blocked? replayed? else record its nonce-count) and
//! [`AuthState::fail`] for one whose digest did not. A REGISTER writing bindings to Redis
//! spares the first: [`AuthState::guard`] hands the admission to the bindings write, which
//! checks and records it in its own script, so a refresh is one round trip in all.

use super::limiter::{Limiter, LimiterSettings, PairKey, Scope, Strike};
use super::nonce::salt_of;
use super::replay::{NonceCounts, Record};
use crate::location::{Guard, Refusal};
use std::future::Future;
use std::pin::Pin;

/// A future returned by the state.
pub type StateFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StateError>> + Send + 'a>>;

/// The shared state could not be reached (Redis down).
#[derive(Debug, thiserror::Error)]
#[error("authentication state: {0}")]
pub struct StateError(pub String);

/// What [`AuthState::admit`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Go ahead (the nonce-count is recorded).
    Admitted,
    /// The pair or its source is blocked.
    Blocked(Scope),
    /// The nonce-count was not above the highest seen for the nonce.
    Replay,
    /// The nonce's count is not held (the memory state's ring: another process issued it, or
    /// too many nonces were issued since): the client is challenged again with `stale=true`.
    Forgotten,
}

impl From<Refusal> for Admission {
    /// A [`Guard`] built by [`AuthState::guard`] refused: its blocks are the pair's, then the
    /// source's.
    fn from(refusal: Refusal) -> Admission {
        match refusal {
            Refusal::Blocked(0) => Admission::Blocked(Scope::Pair),
            Refusal::Blocked(_) => Admission::Blocked(Scope::Source),
            Refusal::Counted => Admission::Replay,
        }
    }
}

/// Blocked keys, for the gauges.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Blocked {
    /// (source, user) pairs.
    pub pairs: u64,
    /// Sources.
    pub sources: u64,
}

/// The limiter and replay state, in memory or shared.
pub trait AuthState: Send + Sync + 'static {
    /// A request of `pair` whose digest verified, with nonce-count `nc` on `nonce`, at `now`
    /// (unix ms).
    fn admit<'a>(
        &'a self,
        pair: &'a PairKey,
        nonce: &'a str,
        nc: u32,
        now: u64,
    ) -> StateFuture<'a, Admission>;

    /// The checks of [`AuthState::admit`] as a [`Guard`] for the Redis bindings write to run in
    /// its own script (the same keys, the same answers through `Admission::from`), where the
    /// state lives in Redis; `None` for the memory state, whose caller admits first.
    fn guard(&self, pair: &PairKey, nonce: &str, nc: u32, now: u64) -> Option<Guard> {
        let _ = (pair, nonce, nc, now);
        None
    }

    /// The salt of a new nonce ([`super::nonce::NonceKey::issue`]): random, unless the state
    /// numbers its nonces.
    fn salt(&self) -> [u8; 8] {
        rand::random()
    }

    /// A request of `pair` whose digest did not verify, at `now` (unix ms).
    fn fail<'a>(&'a self, pair: &'a PairKey, now: u64) -> StateFuture<'a, Strike>;

    /// The keys blocked at `now`.
    fn blocked(&self, now: u64) -> StateFuture<'_, Blocked>;

    /// Forgets what has lapsed (called every second).
    fn prune(&self, now: u64) -> StateFuture<'_, ()>;
}

impl std::fmt::Debug for dyn AuthState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthState")
    }
}

/// The state of one replica, in its memory.
pub struct MemoryAuthState {
    limiter: Limiter,
    counts: NonceCounts,
}

impl MemoryAuthState {
    /// A state with these limits, holding the counts of the last `nonce_capacity` nonces it
    /// issued.
    pub fn new(limits: LimiterSettings, nonce_capacity: usize) -> Self {
        MemoryAuthState {
            limiter: Limiter::new(limits),
            counts: NonceCounts::new(nonce_capacity),
        }
    }
}

impl AuthState for MemoryAuthState {
    fn admit<'a>(
        &'a self,
        pair: &'a PairKey,
        nonce: &'a str,
        nc: u32,
        now: u64,
    ) -> StateFuture<'a, Admission> {
        let admission = match self.limiter.blocked(pair, now) {
            Some(scope) => Admission::Blocked(scope),
            None => match salt_of(nonce).map(|salt| self.counts.record(salt, nc)) {
                Some(Record::Counted) => Admission::Admitted,
                Some(Record::Replay) => Admission::Replay,
                Some(Record::Forgotten) | None => Admission::Forgotten,
            },
        };
        Box::pin(std::future::ready(Ok(admission)))
    }

    fn salt(&self) -> [u8; 8] {
        self.counts.salt()
    }

    fn fail<'a>(&'a self, pair: &'a PairKey, now: u64) -> StateFuture<'a, Strike> {
        Box::pin(std::future::ready(Ok(self.limiter.fail(pair, now))))
    }

    fn blocked(&self, now: u64) -> StateFuture<'_, Blocked> {
        let (pairs, sources) = self.limiter.blocked_counts(now);
        Box::pin(std::future::ready(Ok(Blocked {
            pairs: pairs as u64,
            sources: sources as u64,
        })))
    }

    fn prune(&self, now: u64) -> StateFuture<'_, ()> {
        self.limiter.prune(now);
        Box::pin(std::future::ready(Ok(())))
    }
}

/// The behaviour every [`AuthState`] must show, run against the memory state here and against
/// Redis in `tests/redis_store.rs`: blocks per pair and source, replays refused once seen.
pub async fn conformance(state: &dyn AuthState, limits: &LimiterSettings, now: u64) {
    let pair = |user: &str| PairKey {
        source: "192.0.2.7".parse().unwrap(),
        user: user.into(),
        known: true,
    };
    let ok = |a: Result<Admission, StateError>| a.expect("state reachable");
    let key = crate::auth::nonce::NonceKey::new(b"conformance");
    let n1 = key.issue("a.test", now / 1000, state.salt());
    let n2 = key.issue("a.test", now / 1000, state.salt());
    assert_eq!(
        ok(state.admit(&pair("alice"), &n1, 1, now).await),
        Admission::Admitted
    );
    assert_eq!(
        ok(state.admit(&pair("alice"), &n1, 1, now).await),
        Admission::Replay
    );
    assert_eq!(
        ok(state.admit(&pair("alice"), &n1, 2, now).await),
        Admission::Admitted
    );
    for i in 1..limits.pair_failures {
        let strike = state.fail(&pair("alice"), now).await.unwrap();
        assert_eq!(strike, Strike::Counted, "failure {i}");
    }
    let strike = state.fail(&pair("alice"), now).await.unwrap();
    let cooldown = limits.cooldown.as_millis() as u64;
    assert_eq!(
        strike,
        Strike::Blocked {
            scope: Scope::Pair,
            until: now + cooldown
        }
    );
    assert_eq!(
        state.fail(&pair("alice"), now + 1).await.unwrap(),
        Strike::AlreadyBlocked(Scope::Pair)
    );
    assert_eq!(
        ok(state.admit(&pair("alice"), &n1, 3, now + 1).await),
        Admission::Blocked(Scope::Pair)
    );
    assert_eq!(
        ok(state.admit(&pair("bob"), &n2, 1, now + 1).await),
        Admission::Admitted,
        "a neighbour behind the same address is not blocked"
    );
    let blocked = state.blocked(now + 1).await.unwrap();
    assert_eq!((blocked.pairs, blocked.sources), (1, 0));
    assert_eq!(
        ok(state
            .admit(&pair("alice"), &n1, 3, now + cooldown + 1)
            .await),
        Admission::Admitted,
        "the block ends"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn memory_state_conforms() {
        let limits = LimiterSettings {
            pair_failures: 3,
            cooldown: Duration::from_secs(10),
            ..Default::default()
        };
        let state = MemoryAuthState::new(limits, 1000);
        conformance(&state, &limits, 1_700_000_000_000).await;
    }

    #[tokio::test]
    async fn memory_state_forgets_nonces_it_did_not_issue() {
        let state = MemoryAuthState::new(LimiterSettings::default(), 1000);
        let pair = PairKey {
            source: "192.0.2.7".parse().unwrap(),
            user: "alice".into(),
            known: true,
        };
        let key = crate::auth::nonce::NonceKey::new(b"k");
        let before_restart = MemoryAuthState::new(LimiterSettings::default(), 1000);
        for nonce in [key.issue("a.test", 1, before_restart.salt()), "n1".into()] {
            let admission = state.admit(&pair, &nonce, 1, 1000).await.unwrap();
            assert_eq!(admission, Admission::Forgotten, "{nonce}");
        }
    }
}
