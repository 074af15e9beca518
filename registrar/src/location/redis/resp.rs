//! Redis's replies read from the bytes received: RESP2, the protocol [`super::pipe`] speaks.
//!
//! By hand rather than with the `redis` crate's parser: that one is built on `combine`'s
//! partial parsing and cost about 2 600 instructions per reply on a REGISTER's path
//! (`bench/scale`, callgrind), this one about 1 000. The replies a registrar reads are five
//! kinds; an error line is handed to the crate's parser, so its errors are the crate's own
//! (`NOSCRIPT` is `ServerErrorKind::NoScript`, and so on).

use redis::{ErrorKind, RedisError, Value};

/// Arrays nested deeper than this are refused (Redis's own replies to us nest two deep).
const MAX_DEPTH: usize = 8;

/// The first complete reply in `buf` and the bytes it took; `None` until all of it has arrived.
pub(super) fn reply(buf: &[u8]) -> Result<Option<(Value, usize)>, RedisError> {
    value(buf, 0)
}

fn value(buf: &[u8], depth: usize) -> Result<Option<(Value, usize)>, RedisError> {
    let Some((kind, line, next)) = header(buf)? else {
        return Ok(None);
    };
    let parsed = match kind {
        b'+' if line == b"OK" => Value::Okay,
        b'+' => Value::SimpleString(text(line)?),
        b':' => Value::Int(integer(line)?),
        b'-' => redis::parse_redis_value(&buf[..next])?,
        b'$' => return bulk(buf, line, next),
        b'*' => return array(buf, line, next, depth),
        _ => return Err(malformed("a reply of unknown type")),
    };
    Ok(Some((parsed, next)))
}

/// A reply's first line: its type byte, the rest of the line, and where the next line starts.
type Header<'a> = (u8, &'a [u8], usize);

/// The first line; `None` until it is complete.
fn header(buf: &[u8]) -> Result<Option<Header<'_>>, RedisError> {
    let Some(end) = memchr::memmem::find(buf, b"\r\n") else {
        return Ok(None);
    };
    let (&kind, line) = buf[..end]
        .split_first()
        .ok_or_else(|| malformed("an empty line"))?;
    Ok(Some((kind, line, end + 2)))
}

fn bulk(buf: &[u8], line: &[u8], start: usize) -> Result<Option<(Value, usize)>, RedisError> {
    let Some(len) = length(line)? else {
        return Ok(Some((Value::Nil, start)));
    };
    let end = start + len;
    if buf.len() < end + 2 {
        return Ok(None);
    }
    if &buf[end..end + 2] != b"\r\n" {
        return Err(malformed("a bulk string longer than announced"));
    }
    Ok(Some((Value::BulkString(buf[start..end].to_vec()), end + 2)))
}

fn array(
    buf: &[u8],
    line: &[u8],
    start: usize,
    depth: usize,
) -> Result<Option<(Value, usize)>, RedisError> {
    let Some(len) = length(line)? else {
        return Ok(Some((Value::Nil, start)));
    };
    if depth == MAX_DEPTH {
        return Err(malformed("arrays nested too deep"));
    }
    // Each element takes at least 3 bytes: an absurd count is not trusted for the allocation.
    let mut items = Vec::with_capacity(len.min(buf.len() / 3));
    let mut at = start;
    for _ in 0..len {
        let Some((item, used)) = value(&buf[at..], depth + 1)? else {
            return Ok(None);
        };
        items.push(item);
        at += used;
    }
    Ok(Some((Value::Array(items), at)))
}

/// A bulk string's or array's length; `None` for `-1` (nil).
fn length(line: &[u8]) -> Result<Option<usize>, RedisError> {
    match integer(line)? {
        -1 => Ok(None),
        n => usize::try_from(n)
            .map(Some)
            .map_err(|_| malformed("a negative length")),
    }
}

fn integer(line: &[u8]) -> Result<i64, RedisError> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| malformed("a malformed integer"))
}

fn text(line: &[u8]) -> Result<String, RedisError> {
    String::from_utf8(line.to_vec()).map_err(|_| malformed("a status line that is not UTF-8"))
}

fn malformed(what: &'static str) -> RedisError {
    RedisError::from((ErrorKind::Parse, "Redis sent", what.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::ServerErrorKind;

    fn whole(bytes: &[u8]) -> Value {
        let (v, used) = reply(bytes).unwrap().expect("complete");
        assert_eq!(used, bytes.len(), "{bytes:?}");
        v
    }

    #[test]
    fn the_kinds_a_registrar_reads() {
        assert_eq!(whole(b"+OK\r\n"), Value::Okay);
        assert_eq!(whole(b"+QUEUED\r\n"), Value::SimpleString("QUEUED".into()));
        assert_eq!(whole(b":-42\r\n"), Value::Int(-42));
        assert_eq!(whole(b"$-1\r\n"), Value::Nil);
        assert_eq!(whole(b"*-1\r\n"), Value::Nil);
        assert_eq!(whole(b"$0\r\n\r\n"), Value::BulkString(Vec::new()));
        assert_eq!(
            whole(b"$4\r\na\r\nb\r\n"),
            Value::BulkString(b"a\r\nb".to_vec()),
            "a bulk string is taken by its length, line breaks and all"
        );
        assert_eq!(
            whole(b"*2\r\n:0\r\n*2\r\n$1\r\nx\r\n$-1\r\n"),
            Value::Array(vec![
                Value::Int(0),
                Value::Array(vec![Value::BulkString(b"x".to_vec()), Value::Nil])
            ])
        );
    }

    #[test]
    fn an_error_reply_is_the_crates_error() {
        let v = whole(b"-NOSCRIPT No matching script.\r\n");
        let e = v.extract_error().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Server(ServerErrorKind::NoScript));
    }

    #[test]
    fn incomplete_until_every_byte_is_there() {
        let full = b"*2\r\n$5\r\nhello\r\n:1\r\n+OK\r\n";
        let first = full.len() - 5;
        for cut in 0..first {
            assert_eq!(reply(&full[..cut]).unwrap(), None, "cut at {cut}");
        }
        let (v, used) = reply(full).unwrap().unwrap();
        assert_eq!(used, first, "the next reply is left for the next call");
        assert_eq!(
            v,
            Value::Array(vec![Value::BulkString(b"hello".to_vec()), Value::Int(1)])
        );
    }

    #[test]
    fn malformed_replies_are_errors_not_panics() {
        for bad in [
            &b"?x\r\n"[..],
            b":12a\r\n",
            b"$-2\r\n",
            b"$3\r\nabcd\r\n",
            b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n",
            b"+\xff\r\n",
            b"\r\n",
        ] {
            assert!(reply(bad).is_err(), "{bad:?}");
        }
        // A huge announced array waits for its elements instead of allocating for them.
        assert_eq!(reply(b"*99999999999\r\n:1\r\n").unwrap(), None);
    }
}
