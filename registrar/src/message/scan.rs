//! Searches and trims on the short strings of SIP text, by byte.
//!
//! The standard `str` methods with a `char` pattern (`find(':')`, `split_once(';')`) and
//! `trim()` go through the generic pattern machinery and the Unicode whitespace table; on the
//! REGISTER path they cost about a fifth of the user-space instructions
//! (`bench/register/callgrind.sh`, issue 18). A SIP delimiter is one ASCII byte, which can
//! only match at a character boundary, so [`memchr`] finds it directly; a trim looks at
//! ASCII ends first. The results are the same as the `str` methods'.

/// `str` methods with the same results as their standard counterparts, found by byte.
pub trait Scan {
    /// `str::find` of an ASCII byte.
    fn find_byte(&self, byte: u8) -> Option<usize>;
    /// `str::split_once` at an ASCII byte.
    fn split_byte(&self, byte: u8) -> Option<(&str, &str)>;
    /// `str::rsplit_once` at an ASCII byte.
    fn rsplit_byte(&self, byte: u8) -> Option<(&str, &str)>;
    /// `str::split` at each ASCII byte.
    fn split_each(&self, byte: u8) -> impl Iterator<Item = &str>;
    /// `str::contains` of an ASCII byte.
    fn has_byte(&self, byte: u8) -> bool;
    /// `str::trim`: ASCII whitespace without the Unicode table, which is consulted only when
    /// an end is not ASCII (or is the vertical tab, whitespace to `char` but not to `u8`).
    fn sip_trim(&self) -> &str;
    /// `str::trim_start`, without the Unicode table when the first byte is visible ASCII.
    fn sip_trim_start(&self) -> &str;
}

impl Scan for str {
    #[inline]
    fn find_byte(&self, byte: u8) -> Option<usize> {
        debug_assert!(byte.is_ascii());
        let b = self.as_bytes();
        // Most SIP fields are short: below a vector's width, memchr's dispatch costs more
        // than the loop it falls back to.
        if b.len() < 32 {
            return b.iter().position(|&c| c == byte);
        }
        memchr::memchr(byte, b)
    }

    #[inline]
    fn split_byte(&self, byte: u8) -> Option<(&str, &str)> {
        let i = self.find_byte(byte)?;
        Some((&self[..i], &self[i + 1..]))
    }

    #[inline]
    fn rsplit_byte(&self, byte: u8) -> Option<(&str, &str)> {
        debug_assert!(byte.is_ascii());
        let b = self.as_bytes();
        let i = if b.len() < 32 {
            b.iter().rposition(|&c| c == byte)?
        } else {
            memchr::memrchr(byte, b)?
        };
        Some((&self[..i], &self[i + 1..]))
    }

    fn split_each(&self, byte: u8) -> impl Iterator<Item = &str> {
        let mut rest = Some(self);
        std::iter::from_fn(move || {
            let r = rest?;
            match r.split_byte(byte) {
                Some((piece, after)) => {
                    rest = Some(after);
                    Some(piece)
                }
                None => {
                    rest = None;
                    Some(r)
                }
            }
        })
    }

    #[inline]
    fn has_byte(&self, byte: u8) -> bool {
        self.find_byte(byte).is_some()
    }

    #[inline]
    fn sip_trim_start(&self) -> &str {
        match self.as_bytes().first() {
            Some(b) if b.is_ascii_graphic() => self,
            _ => self.trim_start(),
        }
    }

    #[inline]
    fn sip_trim(&self) -> &str {
        // Most pieces arrive trimmed already: both ends visible ASCII.
        let b = self.as_bytes();
        if b.first().is_some_and(u8::is_ascii_graphic) && b.last().is_some_and(u8::is_ascii_graphic)
        {
            return self;
        }
        let t = self.trim_ascii();
        let unusual = |b: &u8| !b.is_ascii() || *b == 0x0b;
        let b = t.as_bytes();
        if b.first().is_some_and(unusual) || b.last().is_some_and(unusual) {
            t.trim()
        } else {
            t
        }
    }
}

/// Where a message's head ends: the first CRLFCRLF, found by its last LF (`memchr` builds no
/// searcher per message, as `memmem` does).
#[inline]
pub fn head_end(data: &[u8]) -> Option<usize> {
    memchr::memchr_iter(b'\n', data)
        .find(|&i| i >= 3 && &data[i - 3..=i] == b"\r\n\r\n")
        .map(|i| i - 3)
}

/// What a byte may be in SIP text, by table: one lookup per byte instead of a chain of
/// comparisons (a `"-.!%*_+`'~".contains(c)` per character cost the REGISTER path as much as
/// the rest of the check it was in).
const fn classes() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_alphanumeric() {
            t[b] = TOKEN | HOST;
        }
        b += 1;
    }
    let marks = b"-.!%*_+`'~";
    let mut i = 0;
    while i < marks.len() {
        t[marks[i] as usize] |= TOKEN;
        i += 1;
    }
    // Visible ASCII but the quote and angle brackets, and UTF-8 beyond ASCII.
    let mut u = 0x21;
    while u < 256 {
        if u != 0x7f && u != b'"' as usize && u != b'<' as usize && u != b'>' as usize {
            t[u] |= URI;
        }
        u += 1;
    }
    t[b'.' as usize] |= HOST;
    t[b'-' as usize] |= HOST;
    t[b'_' as usize] |= HOST;
    t
}

const TOKEN: u8 = 1;
const HOST: u8 = 2;
const URI: u8 = 4;
static CLASSES: [u8; 256] = classes();

/// Whether a byte may appear in a token (RFC 3261 §25.1).
#[inline]
pub fn is_token_byte(b: u8) -> bool {
    CLASSES[usize::from(b)] & TOKEN != 0
}

/// Whether `s` is a token: non-empty, token bytes only.
#[inline]
pub fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_byte)
}

/// The length of the token at the start of `s` (0 if none).
#[inline]
pub fn token_len(s: &str) -> usize {
    s.bytes().position(|b| !is_token_byte(b)).unwrap_or(s.len())
}

/// Whether a byte may appear in a host name or IPv4 address as this registrar reads them
/// (letters, digits, `.`, `-`, `_`).
#[inline]
pub fn is_host_byte(b: u8) -> bool {
    CLASSES[usize::from(b)] & HOST != 0
}

/// Whether a byte may appear in an absolute URI as a header field carries it: no whitespace,
/// control, quote or angle bracket (bytes beyond ASCII pass: UTF-8 is the next check's).
#[inline]
pub fn is_uri_byte(b: u8) -> bool {
    CLASSES[usize::from(b)] & URI != 0
}

#[cfg(test)]
mod tests {
    use super::Scan;

    #[test]
    fn same_results_as_the_str_methods() {
        let samples = [
            "",
            " ",
            "sip:alice@example.com;transport=tcp?h=v",
            "[::1]:5060:x;y@z",
            "  <sip:a@b>;tag=1 \t",
            "\u{a0}value\u{3000}",
            "\x0b x \x0b",
            "é:à;ü",
            "\r\n folded \r\n",
            // Past 32 bytes memchr does the search.
            "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-5a1b;rport;received=192.0.2.1",
            "<sip:1001@[2001:db8::1]:5060;transport=udp>;expires=3600;q=0.5 ",
        ];
        for s in samples {
            assert_eq!(s.sip_trim(), s.trim(), "trim of {s:?}");
            assert_eq!(s.sip_trim_start(), s.trim_start(), "trim_start of {s:?}");
            for b in [b':', b';', b'@', b'?', b'<', b'>', b' '] {
                let c = b as char;
                assert_eq!(s.find_byte(b), s.find(c), "find {c:?} in {s:?}");
                assert_eq!(s.split_byte(b), s.split_once(c), "split {c:?} in {s:?}");
                assert_eq!(s.rsplit_byte(b), s.rsplit_once(c), "rsplit {c:?} in {s:?}");
                let each: Vec<&str> = s.split_each(b).collect();
                assert_eq!(
                    each,
                    s.split(c).collect::<Vec<_>>(),
                    "split_each {c:?} in {s:?}"
                );
                assert_eq!(s.has_byte(b), s.contains(c), "contains {c:?} in {s:?}");
            }
        }
    }

    #[test]
    fn the_head_ends_at_the_first_empty_line() {
        assert_eq!(super::head_end(b"a\r\nb\r\n\r\nc\r\n\r\n"), Some(4));
        assert_eq!(super::head_end(b"\n\r\n\r\n"), Some(1));
        assert_eq!(super::head_end(b"\r\n\r\n"), Some(0));
        assert_eq!(super::head_end(b"a\r\n\n\r\n"), None);
        assert_eq!(super::head_end(b"a\r\n\r"), None);
    }

    #[test]
    fn byte_classes_are_the_grammars() {
        for b in 0..=255u8 {
            let c = b as char;
            let token = c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c);
            assert_eq!(super::is_token_byte(b), token, "token byte {b}");
            let host = c.is_ascii_alphanumeric() || ".-_".contains(c);
            assert_eq!(super::is_host_byte(b), host, "host byte {b}");
            let uri = !(b <= b' ' || b == 0x7f || matches!(b, b'<' | b'>' | b'"'));
            assert_eq!(super::is_uri_byte(b), uri, "URI byte {b}");
        }
        assert!(super::is_token("REGISTER") && !super::is_token("") && !super::is_token("a b"));
        assert_eq!(super::token_len("UDP 1.2.3.4"), 3);
        assert_eq!(super::token_len("é"), 0);
    }
}
