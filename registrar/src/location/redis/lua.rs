//! The Lua scripts' calls: one `EVALSHA` command, written straight into the bytes Redis reads.
//!
//! Built by hand rather than through the crate's `Cmd` (a REGISTER's write is one such call):
//! a `Cmd` keeps its arguments in a buffer of their own and packs them into the protocol's
//! bytes only when sent, so every key and argument (the bindings' JSON, sent twice: expected and
//! new) was copied twice and each length formatted once more; this writes each argument's
//! bytes once, behind a header made when the script is (`bench/scale`, "The script call and
//! one task per socket").

use super::Pipe;
use ::redis::{ErrorKind, FromRedisValue, RedisError, RedisResult, Script, ServerErrorKind};

/// A Lua script taking a fixed number of keys and arguments, called by its SHA-1.
pub(crate) struct Lua {
    script: Script,
    /// `*{count}`, `EVALSHA`, the hash and the number of keys, in the protocol's bytes.
    header: Vec<u8>,
    /// Keys and arguments a call carries.
    operands: isize,
}

/// One call of a [`Lua`] script: its keys, then its arguments, each appended with
/// [`Call::arg`].
pub(crate) struct Call {
    packed: Vec<u8>,
    /// Operands still to append (below zero: too many were).
    missing: isize,
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
integer_operand!(u32, u64, usize);

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
            operands: (keys + args) as isize,
        }
    }

    /// A call, with room for `bytes` of keys and arguments: append the keys, then the
    /// arguments.
    pub(crate) fn call(&self, bytes: usize) -> Call {
        let room = self.header.len() + bytes + 16 * self.operands as usize;
        let mut packed = Vec::with_capacity(room);
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
        let packed = call.complete()?;
        let reply = match conn.query_packed(packed).await {
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                self.script.load_async(conn).await?;
                conn.query_packed(packed).await
            }
            other => other,
        }?;
        Ok(::redis::from_redis_value(reply)?)
    }
}

impl Call {
    /// Appends the next key or argument (or several, [`Packed`]).
    pub(crate) fn arg<T: Operand + ?Sized>(&mut self, operand: &T) -> &mut Call {
        self.missing -= operand.count() as isize;
        operand.append(&mut self.packed);
        self
    }

    /// The call's bytes, once it has exactly its script's operands (a mistake here is an error,
    /// not a panic in the middle of a REGISTER).
    fn complete(&self) -> RedisResult<&[u8]> {
        if self.missing != 0 {
            return Err(RedisError::from((
                ErrorKind::Client,
                "a script call with the wrong number of operands",
                format!("{} missing", self.missing),
            )));
        }
        Ok(&self.packed)
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
        assert_eq!(call.complete().unwrap(), cmd.get_packed_command());
    }

    #[test]
    fn a_call_with_the_wrong_number_of_operands_is_refused() {
        let lua = Lua::new("return 1", 0, 1);
        assert!(lua.call(0).complete().is_err());
        let mut call = lua.call(0);
        call.arg("a").arg("b");
        let e = call.complete().unwrap_err();
        assert!(e.to_string().contains("-1 missing"), "{e}");
    }
}
