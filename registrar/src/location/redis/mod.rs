//! The Redis location store: bindings shared by every registrar replica.
//!
//! Data model (one Redis, no Cluster; every key starts with the store's prefix):
//!
//! - `{prefix}:aor:{aor}` — string: the AOR's bindings as JSON (`Stored`, times in unix
//!   milliseconds), with a TTL of the latest expiry plus `GRACE` so the sweeper still sees
//!   (and reports) lapsed bindings, and nothing outlives a crashed replica for long.
//! - `{prefix}:expiry` — sorted set: AOR scored by its earliest binding expiry (ms), what the
//!   sweeper scans.
//! - `{prefix}:counts` — hash AOR → bindings stored, and `{prefix}:bindings` — their total, so
//!   [`LocationStore::stats`] is two O(1) reads.
//! - `{prefix}:upstream` — hash outbound registration → Contact registered upstream.
//!
//! **Compare-and-set in one round trip.** A connection ([`Connections`]: one per runtime)
//! multiplexes every caller of its runtime, so `WATCH`/`MULTI` (connection state) cannot be
//! used. An update instead decides from the AOR's value as this replica last saw it
//! ([`seen`]) and writes with one Lua script (`CAS_SCRIPT`, `EVALSHA`) that applies the new
//! value, the expiry set and the counts only if the value is still that one. On conflict
//! (another replica wrote the AOR, or this one never saw it) the script answers the current
//! value and the store decides again from it (at most `MAX_ATTEMPTS` real conflicts). A
//! decision that writes nothing (a query, a rejection) is checked against a fresh read
//! first, since it answers from the stored bindings.
//!
//! **The admission in the same script.** A REGISTER's write carries a [`Guard`] from the
//! authentication state ([`LocationStore::update_guarded`]): the script checks it first (pair
//! or source blocked? nonce-count not above the recorded one? then it answers the refusal and
//! writes nothing), then compares and sets, and records the nonce-count only with an applied
//! write, so a conflict's retry is not taken for a replay of itself. A REGISTER refreshing a
//! binding this replica wrote is thus one round trip in all, authentication included.
//!
//! The stored value ([`stored`]) and the keys are those of earlier versions, which read and
//! write the same keys with a GET and the same compare-and-set: replicas of both versions can
//! run side by side during a rolling upgrade.

mod connections;
mod guard;
mod lua;
mod pipe;
mod resp;
mod seen;
mod stored;

pub use connections::Connections;
pub(crate) use guard::GUARD_LUA;
pub use guard::{Guard, Refusal};
pub(crate) use lua::Lua;
use lua::Packed;
pub use pipe::Pipe;

use super::{
    Binding, Decide, Expired, Guarded, LocationStore, StoreError, StoreFuture, StoreStats, Update,
};
use ::redis::{Cmd, FromRedisValue, IntoConnectionInfo, Value as Reply};
use seen::{Seen, Value};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use stored::{decode, encode, to_millis};

/// How long a connection attempt may take, how long a connection may answer nothing while
/// commands wait before it is given up, and how long one command may take, its answer and any
/// (re)connecting included: a REGISTER must not hang while Redis is down or silent (see
/// [`pipe`]).
const TIMING: pipe::Timing = pipe::Timing {
    connect: Duration::from_secs(1),
    stalled: Duration::from_secs(3),
    command: COMMAND_DEADLINE,
};
/// [`pipe::Timing::command`].
const COMMAND_DEADLINE: Duration = Duration::from_millis(1500);
/// How long an AOR's key outlives its latest binding, so the sweeper can still report it.
const GRACE: Duration = Duration::from_secs(60);
/// Lost compare-and-set races (a wrong guess of the current value is not one) before an
/// update gives up on a contended AOR.
const MAX_ATTEMPTS: usize = 16;
/// AORs handled per sweep, and keys per SCAN page.
const BATCH: usize = 1000;

/// The compare-and-set write of one AOR, as the Lua function `cas()`.
///
/// KEYS: aor key, expiry set, counts hash, bindings counter.
/// ARGV: aor, expected present (`1`/`0`), expected value, new value (empty: delete), TTL (ms),
/// earliest expiry (ms), new binding count.
/// Returns `{1}` when applied; `{0, current}` (`{0}` when the key is absent) when the value was
/// not the expected one, so the caller decides again without reading. The count is written
/// only when it changes (not on a refresh).
const CAS_LUA: &str = r#"
local function cas()
  local cur = redis.call('GET', KEYS[1])
  if ARGV[2] == '1' then
    if cur ~= ARGV[3] then
      if cur then return {0, cur} end
      return {0}
    end
  elseif cur then
    return {0, cur}
  end
  local old = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0')
  local new = tonumber(ARGV[7])
  if new == 0 then
    if cur then redis.call('DEL', KEYS[1]) end
    redis.call('ZREM', KEYS[2], ARGV[1])
    redis.call('HDEL', KEYS[3], ARGV[1])
  else
    redis.call('SET', KEYS[1], ARGV[4], 'PX', ARGV[5])
    redis.call('ZADD', KEYS[2], ARGV[6], ARGV[1])
    if new ~= old then redis.call('HSET', KEYS[3], ARGV[1], new) end
  end
  if new ~= old then
    redis.call('INCRBY', KEYS[4], new - old)
  end
  return {1}
end
"#;

/// The compare-and-set script: `cas()` alone.
fn cas_script() -> Lua {
    Lua::new(&format!("{CAS_LUA}return cas()\n"), 4, 7)
}

/// The compare-and-set behind a [`Guard`] (KEYS 5–7, ARGV 8–10): the guard first, answering
/// `{2, code}` and writing nothing when it refuses; then `cas()`, whose conflict records
/// nothing either (the retry runs the guard again and must not take its own count for a
/// replay); the guard's count is recorded only with the applied write.
fn guarded_cas_script() -> Lua {
    Lua::new(
        &format!(
            "{GUARD_LUA}{CAS_LUA}\
local refused = guard(5, 8)
if refused ~= 0 then return {{2, refused}} end
local done = cas()
if done[1] == 1 then record(5, 8) end
return done
"
        ),
        7,
        10,
    )
}

/// The key names under one prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Keys {
    /// `{prefix}:aor:`, followed by the AOR.
    aor: String,
    expiry: String,
    counts: String,
    bindings: String,
    upstream: String,
    /// SCAN pattern matching every AOR key (the prefix glob-escaped).
    aor_pattern: String,
}

impl Keys {
    fn new(prefix: &str) -> Keys {
        let mut escaped = String::with_capacity(prefix.len());
        for c in prefix.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                escaped.push('\\');
            }
            escaped.push(c);
        }
        Keys {
            aor: format!("{prefix}:aor:"),
            expiry: format!("{prefix}:expiry"),
            counts: format!("{prefix}:counts"),
            bindings: format!("{prefix}:bindings"),
            upstream: format!("{prefix}:upstream"),
            aor_pattern: format!("{escaped}:aor:*"),
        }
    }

    fn aor_key(&self, aor: &str) -> String {
        [self.aor.as_str(), aor].concat()
    }

    fn aor_of<'k>(&self, key: &'k str) -> Option<&'k str> {
        key.strip_prefix(self.aor.as_str())
    }
}

/// The outcome of one compare-and-set write.
#[derive(Debug, PartialEq, Eq)]
enum Cas {
    Applied,
    /// The value held instead of the expected one (`None`: no value).
    Conflict(Option<Vec<u8>>),
}

impl Cas {
    /// Reads the CAS script's answer, or the guarded one's (`Err`: the guard refused).
    fn from_reply(reply: Reply) -> Result<Result<Cas, Refusal>, StoreError> {
        // Read as it came: the crate's conversion to `Vec<Value>` rebuilt the array twice.
        let mut items = match reply {
            Reply::Array(items) => items,
            other => vec![other],
        };
        match items.as_mut_slice() {
            [Reply::Int(1)] => Ok(Ok(Cas::Applied)),
            [Reply::Int(2), Reply::Int(code)] if *code != 0 => {
                Ok(Err(Refusal::from_code(*code).expect("not 0")))
            }
            [Reply::Int(0)] => Ok(Ok(Cas::Conflict(None))),
            [Reply::Int(0), Reply::BulkString(cur)] => {
                Ok(Ok(Cas::Conflict(Some(std::mem::take(cur)))))
            }
            other => Err(StoreError(format!(
                "redis CAS script: unexpected answer {other:?}"
            ))),
        }
    }
}

/// The live bindings of a value (`None`: no value).
fn live(value: Option<&Value>, now: SystemTime) -> Vec<Binding> {
    value.map_or_else(Vec::new, |v| {
        v.bindings
            .iter()
            .filter(|b| b.is_live(now))
            .cloned()
            .collect()
    })
}

/// Bindings in Redis, shared by every replica using the same server and prefix.
///
/// Counts from [`LocationStore::stats`] are those of the stored bindings: a binding that lapsed
/// is counted until the sweeper ([`LocationStore::expire`], every second) removes it, where the
/// memory store counts live bindings only.
pub struct RedisStore {
    conns: Connections,
    keys: Keys,
    cas: Lua,
    guarded_cas: Lua,
    /// The scripts' keys after the AOR's (expiry set, counts, total), packed once.
    cas_keys: Packed,
    seen: Seen,
}

impl RedisStore {
    /// The default key prefix.
    pub const DEFAULT_PREFIX: &'static str = "switchboard";

    /// A store on the Redis at `url` (`redis://host:port/db`), keys under `prefix`.
    ///
    /// The connection is made lazily: this fails only on a malformed URL (or one that is not
    /// `redis://`), never because Redis is down at start-up. While Redis is unreachable or
    /// silent every operation fails within 1.5 s ([`COMMAND_DEADLINE`]) with a [`StoreError`],
    /// and the next operation after Redis is back connects again.
    pub async fn connect(url: &str, prefix: &str) -> Result<RedisStore, StoreError> {
        let info = url
            .into_connection_info()
            .map_err(|e| StoreError(format!("redis url {url:?}: {e}")))?;
        // Its error already names Redis; the URL says which.
        let conns =
            Connections::new(info, TIMING).map_err(|e| StoreError(format!("{} ({url:?})", e.0)))?;
        let keys = Keys::new(prefix);
        Ok(RedisStore {
            conns,
            cas_keys: Packed::new(&[&keys.expiry, &keys.counts, &keys.bindings]),
            keys,
            cas: cas_script(),
            guarded_cas: guarded_cas_script(),
            seen: Seen::default(),
        })
    }

    /// The connections (cheap to clone), for the authentication state kept in the same Redis
    /// ([`crate::auth::redis::RedisAuthState`]).
    pub fn connections(&self) -> Connections {
        self.conns.clone()
    }

    async fn query<T: FromRedisValue>(&self, what: &str, cmd: &Cmd) -> Result<T, StoreError> {
        let mut conn = self.conns.get()?;
        bounded(what, cmd.query_async(&mut conn)).await
    }

    /// The raw value of an AOR's key.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.query("GET", ::redis::cmd("GET").arg(key)).await
    }

    /// The value of an AOR's key, decoded, and recorded as seen.
    async fn read(&self, aor: &str, key: &str) -> Result<Option<Arc<Value>>, StoreError> {
        let value = self.get(key).await?.map(|raw| {
            Arc::new(Value {
                bindings: decode(key, &raw),
                raw,
            })
        });
        self.seen.put(aor, value.clone());
        Ok(value)
    }

    /// Writes `new` (encoded: `value`, empty when `new` is) for `aor` if its key (`key`) still
    /// holds `expected` (`None`: still absent).
    async fn cas(
        &self,
        aor: &str,
        key: &str,
        expected: Option<&[u8]>,
        new: (&[Binding], &[u8]),
        now: SystemTime,
    ) -> Result<Cas, StoreError> {
        self.guarded_cas(aor, key, expected, new, None, now)
            .await?
            .map_err(|r| StoreError(format!("redis CAS script: refused {r:?} without a guard")))
    }

    /// [`Self::cas`] behind `guard` when given (`Err`: it refused, nothing written).
    async fn guarded_cas(
        &self,
        aor: &str,
        key: &str,
        expected: Option<&[u8]>,
        (new, value): (&[Binding], &[u8]),
        guard: Option<&Guard>,
        now: SystemTime,
    ) -> Result<Result<Cas, Refusal>, StoreError> {
        let latest = new.iter().map(|b| b.expires_at).max().unwrap_or(now);
        let ttl = latest.duration_since(now).unwrap_or(Duration::ZERO) + GRACE;
        let earliest = new.iter().map(|b| b.expires_at).min().unwrap_or(now);
        let script = if guard.is_some() {
            &self.guarded_cas
        } else {
            &self.cas
        };
        let expected_value = expected.unwrap_or_default();
        let mut call = script.call(expected_value.len() + value.len() + key.len() + 256);
        call.arg(key).arg(&self.cas_keys);
        if let Some(guard) = guard {
            guard.push_keys(&mut call);
        }
        call.arg(aor)
            .arg(if expected.is_some() { "1" } else { "0" })
            .arg(expected_value)
            .arg(value)
            .arg(&(ttl.as_millis().max(1) as u64))
            .arg(&to_millis(earliest))
            .arg(&new.len());
        if let Some(guard) = guard {
            guard.push_args(&mut call);
        }
        let mut conn = self.conns.get()?;
        Cas::from_reply(bounded("CAS script", script.run(&call, &mut conn)).await?)
    }

    /// Deletes `aor`'s bindings if its key (`key`) still holds `expected`.
    async fn cas_delete(
        &self,
        aor: &str,
        key: &str,
        expected: Option<&[u8]>,
        now: SystemTime,
    ) -> Result<Cas, StoreError> {
        let cas = self.cas(aor, key, expected, (&[], &[]), now).await?;
        if cas == Cas::Applied {
            self.seen.forget(aor);
        }
        Ok(cas)
    }

    /// [`LocationStore::update`], behind `guard` when given; an error before the guard answered
    /// is [`Guarded::Unreached`], so the caller can tell it from a failed write.
    async fn update_inner(
        &self,
        aor: &str,
        now: SystemTime,
        guard: Option<&Guard>,
        decide: &mut Decide<'_>,
    ) -> Result<Guarded, StoreError> {
        let mut passed = false;
        match self
            .decide_write(aor, now, guard, decide, &mut passed)
            .await
        {
            Err(e) if guard.is_some() && !passed => Ok(Guarded::Unreached(e)),
            done => done,
        }
    }

    /// The decide-write loop; `passed` is set once the guard has let a write through to its
    /// compare-and-set (a conflict).
    async fn decide_write(
        &self,
        aor: &str,
        now: SystemTime,
        guard: Option<&Guard>,
        decide: &mut Decide<'_>,
        passed: &mut bool,
    ) -> Result<Guarded, StoreError> {
        let key = self.keys.aor_key(aor);
        // Decided from the value last seen until Redis has answered with the current one.
        let mut current = self.seen.get(aor);
        let mut verified = false;
        let mut conflicts = 0;
        while conflicts < MAX_ATTEMPTS {
            let before = live(current.as_deref(), now);
            let Some(after) = decide(&before) else {
                if !verified {
                    // Nothing written to check the guess against, and the answer shows the
                    // bindings (or rejects because of them): decide from a fresh read.
                    current = self.read(aor, &key).await?;
                    verified = true;
                    continue;
                }
                return Ok(Guarded::Unwritten(Update {
                    after: before.clone(),
                    before,
                }));
            };
            let after: Vec<Binding> = after.into_iter().filter(|b| b.is_live(now)).collect();
            let value = if after.is_empty() {
                Vec::new()
            } else {
                encode(&after)
            };
            let expected = current.as_ref().map(|v| v.raw.as_slice());
            match self
                .guarded_cas(aor, &key, expected, (&after, &value), guard, now)
                .await?
            {
                Err(refusal) => return Ok(Guarded::Refused(refusal)),
                Ok(Cas::Applied) => {
                    // Our copy of the value seen let go first, so that `Seen::wrote` can
                    // rewrite it in place.
                    drop(current);
                    self.seen.wrote(aor, value, &after);
                    return Ok(Guarded::Applied(Update { before, after }));
                }
                Ok(Cas::Conflict(_)) if verified => {
                    // A lost race: the answered value is outdated by the time the backoff
                    // (which spreads the writers) is over, so read afresh after it.
                    *passed = true;
                    backoff(conflicts).await;
                    conflicts += 1;
                    current = self.read(aor, &key).await?;
                }
                Ok(Cas::Conflict(raw)) => {
                    // A wrong guess: decide again at once from the value answered.
                    *passed = true;
                    current = raw.map(|raw| {
                        Arc::new(Value {
                            bindings: decode(&key, &raw),
                            raw,
                        })
                    });
                    self.seen.put(aor, current.clone());
                    verified = true;
                }
            }
        }
        Err(StoreError(format!(
            "{aor}: still contended after {MAX_ATTEMPTS} attempts"
        )))
    }

    /// Removes the lapsed bindings of one AOR due in the expiry set; `Some` when this call did.
    async fn expire_aor(&self, aor: &str, now: SystemTime) -> Result<Option<Expired>, StoreError> {
        let key = self.keys.aor_key(aor);
        let mut raw = self.get(&key).await?;
        for attempt in 0..MAX_ATTEMPTS {
            let Some(cur) = raw.as_deref() else {
                // The key outlived its TTL (no sweeper ran in time): drop its expiry entry and
                // count. Nothing to report, the bindings are gone.
                match self.cas_delete(aor, &key, None, now).await? {
                    Cas::Applied => return Ok(None),
                    Cas::Conflict(held) => raw = held,
                }
                backoff(attempt).await;
                continue;
            };
            let (remaining, expired): (Vec<Binding>, Vec<Binding>) =
                decode(&key, cur).into_iter().partition(|b| b.is_live(now));
            if expired.is_empty() {
                // Refreshed since the expiry set was read.
                return Ok(None);
            }
            let value = if remaining.is_empty() {
                Vec::new()
            } else {
                encode(&remaining)
            };
            match self
                .cas(aor, &key, Some(cur), (&remaining, &value), now)
                .await?
            {
                Cas::Applied => {
                    self.seen.wrote(aor, value, &remaining);
                    return Ok(Some(Expired {
                        aor: aor.to_string(),
                        expired,
                        remaining,
                    }));
                }
                Cas::Conflict(held) => raw = held,
            }
            backoff(attempt).await;
        }
        Err(StoreError(format!(
            "{aor}: still contended after {MAX_ATTEMPTS} attempts"
        )))
    }

    async fn expire_inner(&self, now: SystemTime) -> Result<Vec<Expired>, StoreError> {
        let due: Vec<String> = self
            .query(
                "ZRANGEBYSCORE",
                ::redis::cmd("ZRANGEBYSCORE")
                    .arg(&self.keys.expiry)
                    .arg("-inf")
                    .arg(to_millis(now))
                    .arg("LIMIT")
                    .arg(0)
                    .arg(BATCH),
            )
            .await?;
        let mut out = Vec::new();
        for aor in &due {
            if let Some(e) = self.expire_aor(aor, now).await? {
                out.push(e);
            }
        }
        out.sort_by(|a, b| a.aor.cmp(&b.aor));
        Ok(out)
    }

    /// One SCAN page of AOR keys: the next cursor (0 at the end) and the keys.
    async fn scan_page(&self, cursor: u64) -> Result<(u64, Vec<String>), StoreError> {
        self.query(
            "SCAN",
            ::redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&self.keys.aor_pattern)
                .arg("COUNT")
                .arg(BATCH),
        )
        .await
    }

    /// Deletes an AOR (through the CAS path, so the counts follow); whether this call did.
    async fn remove_aor(&self, aor: &str, now: SystemTime) -> Result<bool, StoreError> {
        let key = self.keys.aor_key(aor);
        let mut raw = self.get(&key).await?;
        for attempt in 0..MAX_ATTEMPTS {
            match self.cas_delete(aor, &key, raw.as_deref(), now).await? {
                Cas::Applied => return Ok(raw.is_some()),
                Cas::Conflict(held) => raw = held,
            }
            backoff(attempt).await;
        }
        Err(StoreError(format!(
            "{aor}: still contended after {MAX_ATTEMPTS} attempts"
        )))
    }

    async fn retain_inner(
        &self,
        keep: &(dyn Fn(&str) -> bool + Send + Sync),
    ) -> Result<usize, StoreError> {
        let now = SystemTime::now();
        self.seen.retain(keep);
        let mut removed = 0;
        let mut cursor = 0;
        loop {
            let (next, keys) = self.scan_page(cursor).await?;
            for key in &keys {
                let Some(aor) = self.keys.aor_of(key) else {
                    continue;
                };
                if !keep(aor) && self.remove_aor(aor, now).await? {
                    removed += 1;
                }
            }
            if next == 0 {
                return Ok(removed);
            }
            cursor = next;
        }
    }

    async fn snapshot_inner(
        &self,
        now: SystemTime,
    ) -> Result<Vec<(String, Vec<Binding>)>, StoreError> {
        let mut out = Vec::new();
        let mut cursor = 0;
        loop {
            let (next, keys) = self.scan_page(cursor).await?;
            if keys.is_empty() {
                if next == 0 {
                    break;
                }
                cursor = next;
                continue;
            }
            let values: Vec<Option<Vec<u8>>> =
                self.query("MGET", ::redis::cmd("MGET").arg(&keys)).await?;
            for (key, raw) in keys.iter().zip(values) {
                let (Some(aor), Some(raw)) = (self.keys.aor_of(key), raw) else {
                    continue; // gone between SCAN and MGET
                };
                let live: Vec<Binding> = decode(key, &raw)
                    .into_iter()
                    .filter(|b| b.is_live(now))
                    .collect();
                if !live.is_empty() {
                    out.push((aor.to_string(), live));
                }
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        // SCAN may return a key twice.
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out.dedup_by(|a, b| a.0 == b.0);
        Ok(out)
    }

    async fn stats_inner(&self) -> Result<StoreStats, StoreError> {
        let mut conn = self.conns.get()?;
        let (aors, bindings): (usize, Option<i64>) = bounded(
            "HLEN/GET",
            ::redis::pipe()
                .cmd("HLEN")
                .arg(&self.keys.counts)
                .cmd("GET")
                .arg(&self.keys.bindings)
                .query_async(&mut conn),
        )
        .await?;
        Ok(StoreStats {
            aors,
            bindings: bindings.unwrap_or(0).max(0) as usize,
        })
    }
}

/// Waits a random while after the `attempt`-th lost compare-and-set, up to 1, 2, 4, ... 128 ms
/// ("full jitter"), so writers contending for one AOR spread out instead of colliding again in
/// lockstep: with 100 writers on one AOR, fixed or short waits ran out of attempts.
async fn backoff(attempt: usize) {
    let cap_us = 1000u64 << attempt.min(7);
    tokio::time::sleep(Duration::from_micros(rand::random_range(0..=cap_us))).await;
}

/// Runs one Redis call, bounded by [`COMMAND_DEADLINE`] (the connection fails a caller whose
/// time is up, [`pipe`]), mapping failures to [`StoreError`].
///
/// A write that timed out may still have been applied; the caller sees an error (the phone
/// retries its REGISTER) and the next read sees the applied state, so nothing is left half-done:
/// the CAS script itself is atomic.
pub(crate) async fn bounded<T>(
    what: &str,
    f: impl std::future::Future<Output = ::redis::RedisResult<T>>,
) -> Result<T, StoreError> {
    f.await
        .map_err(|e| StoreError(format!("redis {what}: {e}")))
}

impl LocationStore for RedisStore {
    fn lookup<'a>(&'a self, aor: &'a str, now: SystemTime) -> StoreFuture<'a, Vec<Binding>> {
        Box::pin(async move {
            let key = self.keys.aor_key(aor);
            Ok(self
                .get(&key)
                .await?
                .map(|raw| decode(&key, &raw))
                .unwrap_or_default()
                .into_iter()
                .filter(|b| b.is_live(now))
                .collect())
        })
    }

    fn update<'a>(
        &'a self,
        aor: &'a str,
        now: SystemTime,
        decide: &'a mut Decide<'_>,
    ) -> StoreFuture<'a, Update> {
        Box::pin(async move {
            match self.update_inner(aor, now, None, decide).await? {
                Guarded::Applied(u) | Guarded::Unwritten(u) => Ok(u),
                other => Err(StoreError(format!(
                    "{aor}: unguarded update answered {other:?}"
                ))),
            }
        })
    }

    fn update_guarded<'a>(
        &'a self,
        aor: &'a str,
        now: SystemTime,
        guard: &'a Guard,
        decide: &'a mut Decide<'_>,
    ) -> StoreFuture<'a, Guarded> {
        Box::pin(self.update_inner(aor, now, Some(guard), decide))
    }

    fn expire(&self, now: SystemTime) -> StoreFuture<'_, Vec<Expired>> {
        Box::pin(self.expire_inner(now))
    }

    fn retain<'a>(
        &'a self,
        keep: &'a (dyn Fn(&str) -> bool + Send + Sync),
    ) -> StoreFuture<'a, usize> {
        Box::pin(self.retain_inner(keep))
    }

    fn snapshot(&self, now: SystemTime) -> StoreFuture<'_, Vec<(String, Vec<Binding>)>> {
        Box::pin(self.snapshot_inner(now))
    }

    fn stats(&self, _now: SystemTime) -> StoreFuture<'_, StoreStats> {
        Box::pin(self.stats_inner())
    }

    fn upstream_contact<'a>(&'a self, registration: &'a str) -> StoreFuture<'a, Option<String>> {
        Box::pin(async move {
            self.query(
                "HGET",
                ::redis::cmd("HGET")
                    .arg(&self.keys.upstream)
                    .arg(registration),
            )
            .await
        })
    }

    fn set_upstream_contact<'a>(
        &'a self,
        registration: &'a str,
        contact: Option<&'a str>,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            match contact {
                Some(contact) => {
                    self.query::<()>(
                        "HSET",
                        ::redis::cmd("HSET")
                            .arg(&self.keys.upstream)
                            .arg(registration)
                            .arg(contact),
                    )
                    .await
                }
                None => {
                    self.query::<()>(
                        "HDEL",
                        ::redis::cmd("HDEL")
                            .arg(&self.keys.upstream)
                            .arg(registration),
                    )
                    .await
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cas_answers() {
        assert_eq!(
            Cas::from_reply(Reply::Array(vec![Reply::Int(1)])).unwrap(),
            Ok(Cas::Applied)
        );
        assert_eq!(
            Cas::from_reply(Reply::Array(vec![Reply::Int(0)])).unwrap(),
            Ok(Cas::Conflict(None))
        );
        assert_eq!(
            Cas::from_reply(Reply::Array(vec![
                Reply::Int(0),
                Reply::BulkString(b"[]".to_vec())
            ]))
            .unwrap(),
            Ok(Cas::Conflict(Some(b"[]".to_vec())))
        );
        assert_eq!(
            Cas::from_reply(Reply::Array(vec![Reply::Int(2), Reply::Int(3)])).unwrap(),
            Err(Refusal::Counted)
        );
        assert_eq!(
            Cas::from_reply(Reply::Array(vec![Reply::Int(2), Reply::Int(1)])).unwrap(),
            Err(Refusal::Blocked(0))
        );
        assert!(Cas::from_reply(Reply::Array(vec![Reply::Int(2), Reply::Int(0)])).is_err());
        assert!(Cas::from_reply(Reply::Array(vec![Reply::Int(2)])).is_err());
        assert!(Cas::from_reply(Reply::Array(Vec::new())).is_err());
    }

    #[test]
    fn key_names() {
        let k = Keys::new("switchboard");
        assert_eq!(k.aor_key("ns/alice"), "switchboard:aor:ns/alice");
        assert_eq!(k.aor_of("switchboard:aor:ns/alice"), Some("ns/alice"));
        assert_eq!(k.aor_of("other:aor:ns/alice"), None);
        assert_eq!(k.expiry, "switchboard:expiry");
        assert_eq!(k.counts, "switchboard:counts");
        assert_eq!(k.bindings, "switchboard:bindings");
        assert_eq!(k.upstream, "switchboard:upstream");
        assert_eq!(k.aor_pattern, "switchboard:aor:*");
        assert_eq!(Keys::new("a*b").aor_pattern, "a\\*b:aor:*");
    }
}
