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
}

impl Scan for str {
    #[inline]
    fn find_byte(&self, byte: u8) -> Option<usize> {
        debug_assert!(byte.is_ascii());
        memchr::memchr(byte, self.as_bytes())
    }

    #[inline]
    fn split_byte(&self, byte: u8) -> Option<(&str, &str)> {
        let i = self.find_byte(byte)?;
        Some((&self[..i], &self[i + 1..]))
    }

    #[inline]
    fn rsplit_byte(&self, byte: u8) -> Option<(&str, &str)> {
        debug_assert!(byte.is_ascii());
        let i = memchr::memrchr(byte, self.as_bytes())?;
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
    fn sip_trim(&self) -> &str {
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
        ];
        for s in samples {
            assert_eq!(s.sip_trim(), s.trim(), "trim of {s:?}");
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
}
