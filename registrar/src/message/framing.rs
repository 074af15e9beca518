//! Cutting SIP messages out of a byte stream (TCP, TLS): RFC 3261 §18.3 — the head ends at the
//! first empty line, the body is Content-Length bytes — plus RFC 5626 §3.5.1 keepalives (a
//! double CRLF "ping" is answered with a single CRLF "pong").

use super::scan::head_end;

/// What the front of the buffer holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame {
    /// Not a whole message yet.
    Incomplete,
    /// A keepalive of `consumed` bytes; answer `\r\n` when `pong`.
    KeepAlive {
        /// Bytes to drop.
        consumed: usize,
        /// Whether to answer with a CRLF.
        pong: bool,
    },
    /// A whole message of `len` bytes.
    Message {
        /// Its length.
        len: usize,
    },
    /// The stream cannot be framed any more: close it.
    Error(FrameError),
}

/// Why a stream cannot be framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The message exceeds the maximum size.
    #[error("message larger than the maximum size")]
    TooLarge,
    /// Content-Length is not a number, or given twice with different values.
    #[error("Content-Length not a number, or given twice with different values")]
    BadContentLength,
}

/// Looks at the front of `buf`.
pub fn next_frame(buf: &[u8], max: usize) -> Frame {
    if buf.starts_with(b"\r\n") {
        if buf.starts_with(b"\r\n\r\n") {
            return Frame::KeepAlive {
                consumed: 4,
                pong: true,
            };
        }
        if b"\r\n\r\n".starts_with(buf) {
            return Frame::Incomplete;
        }
        return Frame::KeepAlive {
            consumed: 2,
            pong: false,
        };
    }
    let window = &buf[..buf.len().min(max)];
    let Some(head_end) = head_end(window) else {
        return if buf.len() >= max {
            Frame::Error(FrameError::TooLarge)
        } else {
            Frame::Incomplete
        };
    };
    let head = &buf[..head_end];
    let mut content_length: Option<usize> = None;
    for line in head.split(|&b| b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = String::from_utf8_lossy(&line[..colon]);
        let name = name.trim();
        if name.eq_ignore_ascii_case("Content-Length") || name.eq_ignore_ascii_case("l") {
            let value = String::from_utf8_lossy(&line[colon + 1..]);
            match value.trim().parse::<usize>() {
                // Two lengths that differ leave no way to find the next message (RFC 4475
                // §3.3.9).
                Ok(n) if content_length.is_some_and(|c| c != n) => {
                    return Frame::Error(FrameError::BadContentLength)
                }
                Ok(n) if n <= max => content_length = Some(n),
                Ok(_) => return Frame::Error(FrameError::TooLarge),
                Err(_) => return Frame::Error(FrameError::BadContentLength),
            }
        }
    }
    let total = head_end + 4 + content_length.unwrap_or(0);
    if total > max {
        return Frame::Error(FrameError::TooLarge);
    }
    if buf.len() < total {
        return Frame::Incomplete;
    }
    Frame::Message { len: total }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"OPTIONS sip:a SIP/2.0\r\nContent-Length: 3\r\n\r\nabc";

    #[test]
    fn whole_partial_and_pipelined() {
        assert_eq!(next_frame(MSG, 1000), Frame::Message { len: MSG.len() });
        for i in 0..MSG.len() {
            assert_eq!(next_frame(&MSG[..i], 1000), Frame::Incomplete, "prefix {i}");
        }
        let mut two = MSG.to_vec();
        two.extend_from_slice(MSG);
        assert_eq!(next_frame(&two, 1000), Frame::Message { len: MSG.len() });
    }

    #[test]
    fn keepalives() {
        assert_eq!(
            next_frame(b"\r\n\r\n", 1000),
            Frame::KeepAlive {
                consumed: 4,
                pong: true
            }
        );
        assert_eq!(next_frame(b"\r\n", 1000), Frame::Incomplete);
        assert_eq!(
            next_frame(b"\r\nOPT", 1000),
            Frame::KeepAlive {
                consumed: 2,
                pong: false
            }
        );
    }

    #[test]
    fn limits_and_errors() {
        assert_eq!(
            next_frame(&[b'a'; 100], 50),
            Frame::Error(FrameError::TooLarge)
        );
        assert_eq!(next_frame(&[b'a'; 40], 50), Frame::Incomplete);
        assert_eq!(
            next_frame(b"OPTIONS sip:a SIP/2.0\r\nl: 999999\r\n\r\n", 1000),
            Frame::Error(FrameError::TooLarge)
        );
        assert_eq!(
            next_frame(b"OPTIONS sip:a SIP/2.0\r\nContent-Length: x\r\n\r\n", 1000),
            Frame::Error(FrameError::BadContentLength)
        );
        assert_eq!(
            next_frame(
                b"OPTIONS sip:a SIP/2.0\r\nContent-Length: 13\r\nl: 5\r\n\r\n",
                1000
            ),
            Frame::Error(FrameError::BadContentLength)
        );
        // No Content-Length on a stream: taken as 0.
        assert_eq!(
            next_frame(b"OPTIONS sip:a SIP/2.0\r\n\r\nXYZ", 1000),
            Frame::Message { len: 25 }
        );
    }

    #[test]
    fn responses_frame_as_requests() {
        let m = b"SIP/2.0 200 OK\r\nContent-Length: 3\r\n\r\nabcSIP/2.0";
        assert_eq!(next_frame(m, 1000), Frame::Message { len: m.len() - 7 });
        assert_eq!(
            next_frame(b"SIP/2.0 200 OK\r\nContent-Length: 3\r\n\r\nab", 1000),
            Frame::Incomplete
        );
        assert_eq!(next_frame(b"SIP/2.0 200 OK\r\n", 1000), Frame::Incomplete);
    }
}
