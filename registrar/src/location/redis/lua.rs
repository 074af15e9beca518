//! The Lua scripts' calls: one `EVALSHA` command, built directly.
//!
//! `redis::ScriptInvocation` copies each key and argument into a buffer of its own and then all
//! of them into the command: for a REGISTER's write, 14 allocations more and the bindings'
//! JSON (sent twice: expected and new) copied twice more.

use super::Pipe;
use ::redis::{Cmd, ErrorKind, FromRedisValue, RedisResult, Script, ServerErrorKind};

/// A Lua script taking a fixed number of keys and arguments, called by its SHA-1.
pub(crate) struct Lua {
    script: Script,
    keys: usize,
    args: usize,
}

impl Lua {
    /// The script `code`, taking `keys` keys and `args` arguments.
    pub(crate) fn new(code: &str, keys: usize, args: usize) -> Lua {
        Lua {
            script: Script::new(code),
            keys,
            args,
        }
    }

    /// `EVALSHA`, the hash and the number of keys, with room for `bytes` of keys and arguments:
    /// the caller appends the keys, then the arguments.
    pub(crate) fn call(&self, bytes: usize) -> Cmd {
        let mut cmd = Cmd::with_capacity(3 + self.keys + self.args, bytes + 64);
        cmd.arg("EVALSHA")
            .arg(self.script.get_hash())
            .arg(self.keys);
        cmd
    }

    /// Sends `call` (from [`Self::call`]); when Redis does not know the script (restarted,
    /// flushed), loads it and sends `call` again.
    pub(crate) async fn run<T: FromRedisValue>(
        &self,
        call: &Cmd,
        conn: &mut Pipe,
    ) -> RedisResult<T> {
        match call.query_async(conn).await {
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                self.script.load_async(conn).await?;
                call.query_async(conn).await
            }
            other => other,
        }
    }
}
