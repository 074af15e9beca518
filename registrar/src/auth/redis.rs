//! The authentication state in Redis, shared by every replica using the same server and
//! prefix (the location store's connections, [`crate::location::RedisStore::connections`]).
//!
//! Keys (under the store's prefix):
//!
//! - `{prefix}:auth:pair:{k|u}:{ip}:{user}` and `{prefix}:auth:src:{ip}` — hashes holding a
//!   limiter [`Record`] (`ws`, `f`, `until`, `strikes`), expiring when the record may be
//!   forgotten ([`Record::forget_at`]); `k`/`u` tell a configured user from an unknown name.
//! - `{prefix}:auth:blocked:pairs` and `…:sources` — sorted sets of the blocked keys by the
//!   end of their block, for the gauges.
//! - `{prefix}:nc:{nonce}` — the highest nonce-count seen for a nonce, kept for the nonce
//!   lifetime after its last use (a nonce older than that is stale and never authorizes).
//!   One key per nonce that authorized a request: phones reusing their nonce cost nothing
//!   more, a client taking a fresh challenge per REGISTER costs one key (about 100 bytes) per
//!   registration for the nonce lifetime.
//!
//! Each question is one Lua script, so one round trip and atomic: `FAIL_SCRIPT` is
//! [`Record::fail`] applied to the pair and the source; the admit script checks both blocks
//! and the nonce-count and records it. A REGISTER that writes bindings does not send the
//! admit script: [`AuthState::guard`] gives the same keys and arguments as a [`Guard`] to the
//! bindings write, whose script runs the same Lua ([`GUARD_LUA`]) first, so the refresh of a
//! registration is one round trip (one `EVALSHA`). Calls and REGISTERs that write nothing
//! still take the admit script, then their own reads.
//!
//! [`Record`]: super::limiter::Record
//! [`Record::fail`]: super::limiter::Record::fail
//! [`Record::forget_at`]: super::limiter::Record::forget_at

use super::limiter::{LimiterSettings, PairKey, Scope, Strike};
use super::state::{Admission, AuthState, Blocked, StateError, StateFuture};
use crate::location::redis::{bounded, Lua, GUARD_LUA};
use crate::location::{Connections, Guard, Refusal};
use crate::message::address::push_ip;
use std::time::Duration;

/// How long past its lifetime a nonce's count is kept (clock skew between replicas).
const NONCE_SLACK: Duration = Duration::from_secs(5);

/// The failure of one key pair, as [`super::limiter::Record::fail`] does it.
///
/// KEYS: pair hash, source hash, blocked pairs set, blocked sources set.
/// ARGV: now (ms), window (ms), pair limit, source limit, cooldown (ms), max cooldown (ms),
/// pair member, source member.
/// Returns {code, until}: 0 counted, 1 pair blocked now, 2 source blocked now, 3 pair
/// already blocked, 4 source already blocked.
const FAIL_SCRIPT: &str = r#"
local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local cooldown, maxc = tonumber(ARGV[5]), tonumber(ARGV[6])
local function load(k)
  local v = redis.call('HMGET', k, 'ws', 'f', 'until', 'strikes')
  return {ws = tonumber(v[1]) or 0, f = tonumber(v[2]) or 0,
          u = tonumber(v[3]) or 0, s = tonumber(v[4]) or 0}
end
local pair, src = load(KEYS[1]), load(KEYS[2])
if pair.u > now then return {3, pair.u} end
if src.u > now then return {4, src.u} end
local function fail(r, limit)
  if now - r.ws > window then r.ws = now; r.f = 0 end
  if r.s > 0 and now - r.u > maxc then r.s = 0 end
  r.f = r.f + 1
  if r.f < math.max(limit, 1) then return nil end
  r.u = now + math.min(cooldown * 2 ^ math.min(r.s, 32), maxc)
  r.s = r.s + 1; r.f = 0; r.ws = now
  return r.u
end
local function store(k, r)
  redis.call('HSET', k, 'ws', r.ws, 'f', r.f, 'until', r.u, 'strikes', r.s)
  local forget = math.max(r.u, r.ws + window)
  if r.s > 0 then forget = forget + maxc end
  redis.call('PEXPIREAT', k, forget)
end
local pu = fail(pair, tonumber(ARGV[3]))
local su = fail(src, tonumber(ARGV[4]))
store(KEYS[1], pair)
store(KEYS[2], src)
if pu then redis.call('ZADD', KEYS[3], pu, ARGV[7]) end
if su then redis.call('ZADD', KEYS[4], su, ARGV[8]) end
if pu then return {1, pu} end
if su then return {2, su} end
return {0, 0}
"#;

/// A request whose digest verified: [`GUARD_LUA`] on its own.
///
/// KEYS: pair hash, source hash, nonce-count key. ARGV: now (ms), nc, nonce lifetime (ms).
/// Returns 0 admitted (nc recorded), 1 pair blocked, 2 source blocked, 3 replay.
fn admit_script() -> Lua {
    Lua::new(
        &format!(
            "{GUARD_LUA}\
local refused = guard(1, 1)
if refused == 0 then record(1, 1) end
return refused
"
        ),
        3,
        3,
    )
}

/// The limiter and replay records in Redis.
pub struct RedisAuthState {
    conns: Connections,
    limits: LimiterSettings,
    nonce_ttl_ms: u64,
    prefix: String,
    blocked_pairs: String,
    blocked_sources: String,
    fail: Lua,
    admit: Lua,
}

fn ms(d: Duration) -> u64 {
    d.as_millis().min(u64::MAX as u128) as u64
}

/// What follows the prefix in a pair's hash's key (then its member in the blocked set,
/// `k|u:{ip}:{user}`) and in its source's (then the address as text).
const PAIR_INFIX: &str = ":auth:pair:";
const SOURCE_INFIX: &str = ":auth:src:";

/// A pair's records in Redis: the keys of its hash and of its source's, which end in its
/// member in the blocked set and in the source's address.
struct PairNames {
    pair_key: String,
    source_key: String,
    /// Where the member starts in `pair_key`, and the address in `source_key`.
    member_at: usize,
    source_at: usize,
}

impl PairNames {
    fn member(&self) -> &str {
        &self.pair_key[self.member_at..]
    }

    fn source(&self) -> &str {
        &self.source_key[self.source_at..]
    }
}

impl RedisAuthState {
    /// The state on `conns`, keys under `prefix`, with these limits and nonce lifetime.
    pub fn new(
        conns: Connections,
        prefix: &str,
        limits: LimiterSettings,
        nonce_ttl: Duration,
    ) -> RedisAuthState {
        RedisAuthState {
            conns,
            limits,
            nonce_ttl_ms: ms(nonce_ttl + NONCE_SLACK),
            prefix: prefix.to_string(),
            blocked_pairs: format!("{prefix}:auth:blocked:pairs"),
            blocked_sources: format!("{prefix}:auth:blocked:sources"),
            fail: Lua::new(FAIL_SCRIPT, 4, 8),
            admit: admit_script(),
        }
    }

    /// The current runtime's connection.
    fn conn(&self) -> Result<crate::location::redis::Pipe, StateError> {
        self.conns.get().map_err(|e| StateError(e.0))
    }

    /// The names of a pair's records (the source's address written once: this is on the path
    /// of every REGISTER).
    fn pair_names(&self, pair: &PairKey) -> PairNames {
        let kind = if pair.known { "k:" } else { "u:" };
        let prefix = self.prefix.as_str();
        let source_at = prefix.len() + SOURCE_INFIX.len();
        let mut source_key = String::with_capacity(source_at + 45);
        source_key.push_str(prefix);
        source_key.push_str(SOURCE_INFIX);
        push_ip(&mut source_key, pair.source);
        let source = &source_key[source_at..];
        PairNames {
            pair_key: [prefix, PAIR_INFIX, kind, source, ":", &pair.user].concat(),
            member_at: prefix.len() + PAIR_INFIX.len(),
            source_key,
            source_at,
        }
    }

    async fn run_fail(&self, pair: &PairKey, now: u64) -> Result<Strike, StateError> {
        let names = self.pair_names(pair);
        let mut call = self.fail.call(256);
        call.arg(&names.pair_key)
            .arg(&names.source_key)
            .arg(&self.blocked_pairs)
            .arg(&self.blocked_sources)
            .arg(&now)
            .arg(&ms(self.limits.window))
            .arg(&self.limits.pair_failures)
            .arg(&self.limits.source_failures)
            .arg(&ms(self.limits.cooldown))
            .arg(&ms(self.limits.max_cooldown))
            .arg(names.member())
            .arg(names.source());
        let mut conn = self.conn()?;
        let (code, until): (i64, u64) =
            bounded("auth fail script", self.fail.run(&call, &mut conn))
                .await
                .map_err(|e| StateError(e.0))?;
        Ok(match code {
            1 => Strike::Blocked {
                scope: Scope::Pair,
                until,
            },
            2 => Strike::Blocked {
                scope: Scope::Source,
                until,
            },
            3 => Strike::AlreadyBlocked(Scope::Pair),
            4 => Strike::AlreadyBlocked(Scope::Source),
            _ => Strike::Counted,
        })
    }

    /// The admission's keys and arguments: the one place they are named.
    fn make_guard(&self, pair: &PairKey, nonce: &str, nc: u32, now: u64) -> Guard {
        let names = self.pair_names(pair);
        Guard {
            blocks: [names.pair_key, names.source_key],
            counter: [&self.prefix, ":nc:", nonce].concat(),
            count: nc,
            now_ms: now,
            ttl_ms: self.nonce_ttl_ms,
        }
    }

    async fn run_admit(
        &self,
        pair: &PairKey,
        nonce: &str,
        nc: u32,
        now: u64,
    ) -> Result<Admission, StateError> {
        let guard = self.make_guard(pair, nonce, nc, now);
        let mut call = self.admit.call(256);
        guard.push_keys(&mut call);
        guard.push_args(&mut call);
        let mut conn = self.conn()?;
        let code: i64 = bounded("auth admit script", self.admit.run(&call, &mut conn))
            .await
            .map_err(|e| StateError(e.0))?;
        Ok(Refusal::from_code(code).map_or(Admission::Admitted, Admission::from))
    }

    async fn count_blocked(&self, now: u64) -> Result<Blocked, StateError> {
        let mut pipe = ::redis::pipe();
        let after_now = format!("({now}");
        pipe.cmd("ZCOUNT")
            .arg(&self.blocked_pairs)
            .arg(&after_now)
            .arg("+inf")
            .cmd("ZCOUNT")
            .arg(&self.blocked_sources)
            .arg(&after_now)
            .arg("+inf");
        let mut conn = self.conn()?;
        let (pairs, sources): (u64, u64) = bounded("ZCOUNT", pipe.query_async(&mut conn))
            .await
            .map_err(|e| StateError(e.0))?;
        Ok(Blocked { pairs, sources })
    }

    async fn prune_blocked(&self, now: u64) -> Result<(), StateError> {
        let mut pipe = ::redis::pipe();
        for set in [&self.blocked_pairs, &self.blocked_sources] {
            pipe.cmd("ZREMRANGEBYSCORE")
                .arg(set)
                .arg("-inf")
                .arg(now)
                .ignore();
        }
        let mut conn = self.conn()?;
        bounded::<()>("ZREMRANGEBYSCORE", pipe.query_async(&mut conn))
            .await
            .map_err(|e| StateError(e.0))
    }
}

impl AuthState for RedisAuthState {
    fn admit<'a>(
        &'a self,
        pair: &'a PairKey,
        nonce: &'a str,
        nc: u32,
        now: u64,
    ) -> StateFuture<'a, Admission> {
        Box::pin(self.run_admit(pair, nonce, nc, now))
    }

    fn guard(&self, pair: &PairKey, nonce: &str, nc: u32, now: u64) -> Option<Guard> {
        Some(self.make_guard(pair, nonce, nc, now))
    }

    fn fail<'a>(&'a self, pair: &'a PairKey, now: u64) -> StateFuture<'a, Strike> {
        Box::pin(self.run_fail(pair, now))
    }

    fn blocked(&self, now: u64) -> StateFuture<'_, Blocked> {
        Box::pin(self.count_blocked(now))
    }

    fn prune(&self, now: u64) -> StateFuture<'_, ()> {
        Box::pin(self.prune_blocked(now))
    }
}
