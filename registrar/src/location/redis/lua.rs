//! The Lua scripts' calls: one `EVALSHA` command, written straight into the bytes Redis reads.
//!
//! Built by hand rather than through the crate's `Cmd` (a REGISTER's write is one such call):
//! a `Cmd` keeps its arguments in a buffer of their own and packs them into the protocol's
//! bytes only when sent, so every key and argument (the bindings' JSON, sent twice: expected and
//! new) was copied twice and each length formatted once more; this writes each argument's
//! bytes once, behind a header made when the script is (`bench/scale`, "The script call and
//! one task per socket").

use super::Pipe;
use ::redis::{ErrorKind, FromRedisValue, RedisResult, Script, ServerErrorKind};

/// A Lua script taking a fixed number of keys and arguments, called by its SHA-1.
pub(crate) struct Lua {
    script: Script,
    /// `*{count}`, `EVALSHA`, the hash and the number of keys, in the protocol's bytes.
    header: Vec<u8>,
    /// Keys and arguments a call carries.
    operands: usize,
}

/// One call of a [`Lua`] script: its keys, then its arguments, each appended with
/// [`Call::arg`].
pub(crate) struct Call {
    packed: Vec<u8>,
    /// Operands still to append.
    missing: usize,
}

/// What a call's key or argument can be: written as Redis reads it (a bulk string).
pub(crate) trait Operand {
    /// Appends the operand, as a bulk string, to a call.
    fn append(&self, out: &mut Vec<u8>);

    /// Operands this stands for.
    fn count(&self) -> usize {
        1
    }
}

impl Operand for str {
    fn append(&self, out: &mut Vec<u8>) {
        bulk(out, self.as_bytes());
    }
}

impl Operand for [u8] {
    fn append(&self, out: &mut Vec<u8>) {
        bulk(out, self);
    }
}

impl Operand for String {
    fn append(&self, out: &mut Vec<u8>) {
        bulk(out, self.as_bytes());
    }
}

macro_rules! integer_operand {
    ($($t:ty),*) => {$(
        impl Operand for $t {
            fn append(&self, out: &mut Vec<u8>) {
                bulk(out, itoa::Buffer::new().format(*self).as_bytes());
            }
        }
    )*};
}
integer_operand!(u32, u64, usize, i64);

/// Operands that never change (key names), written once in the protocol's bytes.
pub(crate) struct Packed {
    bytes: Vec<u8>,
    count: usize,
}

impl Packed {
    /// `texts`, one operand each, in order.
    pub(crate) fn new(texts: &[&str]) -> Packed {
        let mut bytes = Vec::new();
        for text in texts {
            bulk(&mut bytes, text.as_bytes());
        }
        Packed {
            bytes,
            count: texts.len(),
        }
    }
}

impl Operand for Packed {
    fn append(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.bytes);
    }

    fn count(&self) -> usize {
        self.count
    }
}

impl Lua {
    /// The script `code`, taking `keys` keys and `args` arguments.
    pub(crate) fn new(code: &str, keys: usize, args: usize) -> Lua {
        let script = Script::new(code);
        let mut header = format!("*{}\r\n", 3 + keys + args).into_bytes();
        for word in ["EVALSHA", script.get_hash(), &keys.to_string()] {
            bulk(&mut header, word.as_bytes());
        }
        Lua {
            script,
            header,
            operands: keys + args,
        }
    }

    /// A call, with room for `bytes` of keys and arguments: append the keys, then the
    /// arguments.
    pub(crate) fn call(&self, bytes: usize) -> Call {
        let mut packed = Vec::with_capacity(self.header.len() + bytes + 16 * self.operands);
        packed.extend_from_slice(&self.header);
        Call {
            packed,
            missing: self.operands,
        }
    }

    /// Sends `call` (from [`Self::call`], complete); when Redis does not know the script
    /// (restarted, flushed), loads it and sends `call` again.
    pub(crate) async fn run<T: FromRedisValue>(
        &self,
        call: &Call,
        conn: &mut Pipe,
    ) -> RedisResult<T> {
        assert_eq!(call.missing, 0, "a script call short of operands");
        let reply = match conn.query_packed(&call.packed).await {
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                self.script.load_async(conn).await?;
                conn.query_packed(&call.packed).await
            }
            other => other,
        }?;
        Ok(::redis::from_redis_value(reply)?)
    }
}

impl Call {
    /// Appends the next key or argument (or several, [`Packed`]).
    pub(crate) fn arg<T: Operand + ?Sized>(&mut self, operand: &T) -> &mut Call {
        self.missing = self
            .missing
            .checked_sub(operand.count())
            .expect("a script call given more operands than its script takes");
        operand.append(&mut self.packed);
        self
    }
}

/// Appends `bytes` as a bulk string: `$`, the length, CRLF, the bytes, CRLF.
fn bulk(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'$');
    out.extend_from_slice(itoa::Buffer::new().format(bytes.len()).as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_is_the_bytes_the_crate_would_send() {
        let lua = Lua::new("return {KEYS[1], ARGV[1], ARGV[2], ARGV[3]}", 1, 3);
        let mut call = lua.call(0);
        call.arg("k:é").arg(&Packed::new(&["\r\n", ""])).arg(&42u64);
        let mut cmd = ::redis::cmd("EVALSHA");
        cmd.arg(lua.script.get_hash())
            .arg(1)
            .arg("k:é")
            .arg(&b"\r\n"[..])
            .arg("")
            .arg(42u64);
        assert_eq!(call.packed, cmd.get_packed_command());
        assert_eq!(call.missing, 0);
    }

    #[test]
    #[should_panic(expected = "more operands")]
    fn a_call_refuses_an_operand_too_many() {
        Lua::new("return 1", 0, 1).call(0).arg("a").arg("b");
    }
}
