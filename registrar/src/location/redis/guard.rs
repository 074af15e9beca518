//! A guard: checks on keys other than the AOR's, run inside the bindings write
//! ([`super::RedisStore`]'s `update_guarded`) so that they and the write are one script call.
//!
//! The authentication state builds it ([`crate::auth::redis::RedisAuthState`]): the keys are
//! its limiter hashes and nonce-count key, named there only. The store knows just the shape:
//! hashes whose `until` field must not lie ahead, and a counter the request's count must
//! exceed, recorded once the write is applied. The same Lua ([`GUARD_LUA`]) answers the
//! authentication state's own admission script, so both checks are one piece of code.

/// Lua defining `guard(k, a)` and `record(k, a)` over `KEYS[k..k+2]` (first hash, second
/// hash, counter) and `ARGV[a..a+2]` (now in ms, count, counter TTL in ms). `guard` answers 0
/// (pass), 1 or 2 (that hash's `until` lies ahead) or 3 (the count is not above the counter);
/// `record` stores the count.
pub(crate) const GUARD_LUA: &str = r#"
local function guard(k, a)
  local now = tonumber(ARGV[a])
  if (tonumber(redis.call('HGET', KEYS[k], 'until')) or 0) > now then return 1 end
  if (tonumber(redis.call('HGET', KEYS[k + 1], 'until')) or 0) > now then return 2 end
  if tonumber(ARGV[a + 1]) <= (tonumber(redis.call('GET', KEYS[k + 2])) or 0) then return 3 end
  return 0
end
local function record(k, a)
  redis.call('SET', KEYS[k + 2], ARGV[a + 1], 'PX', ARGV[a + 2])
end
"#;

/// What a write must check first, and record once applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Guard {
    /// Hashes whose `until` field (unix ms) must not be after `now_ms`.
    pub blocks: [String; 2],
    /// The counter `count` must exceed; set to it (expiring after `ttl_ms`) with the write.
    pub counter: String,
    /// The request's count.
    pub count: u32,
    /// Unix milliseconds.
    pub now_ms: u64,
    /// The counter's lifetime after the write, ms.
    pub ttl_ms: u64,
}

impl Guard {
    /// Appends the guard's keys (three, in `GUARD_LUA`'s order) to a script's call.
    pub(crate) fn push_keys(&self, call: &mut super::lua::Call) {
        call.arg(&self.blocks[0])
            .arg(&self.blocks[1])
            .arg(&self.counter);
    }

    /// Appends the guard's arguments (three, in `GUARD_LUA`'s order), after the call's other
    /// arguments.
    pub(crate) fn push_args(&self, call: &mut super::lua::Call) {
        call.arg(&self.now_ms).arg(&self.count).arg(&self.ttl_ms);
    }
}

/// Why a guard stopped a write (nothing was written).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `blocks[i]`'s `until` lies ahead.
    Blocked(usize),
    /// The count was not above the counter.
    Counted,
}

impl Refusal {
    /// `GUARD_LUA`'s answer: `None` for a pass.
    pub(crate) fn from_code(code: i64) -> Option<Refusal> {
        match code {
            0 => None,
            1 => Some(Refusal::Blocked(0)),
            2 => Some(Refusal::Blocked(1)),
            _ => Some(Refusal::Counted),
        }
    }
}
