//! The digit map a phone uses to know when a number is complete: the site's extensions, its
//! emergency numbers, and, when the device has CallPatterns, anything else after a pause (the
//! registrar applies the patterns and restrictions; the phone only needs to know when to send).

/// Digit-map entries (`1xxx`, `[2-4]xx`, `112`, `x.T`) for a device.
pub fn entries(extensions: Option<(u64, u64)>, emergency: &[String], outside: bool) -> Vec<String> {
    let mut out = Vec::new();
    if let Some((first, last)) = extensions {
        out.extend(range(first, last));
    }
    for n in emergency {
        if !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()) && !out.contains(n) {
            out.push(n.clone());
        }
    }
    if outside {
        out.push("x.T".to_string());
    }
    out
}

/// Entries matching exactly the numbers `first..=last` (as written, without leading zeros).
fn range(first: u64, last: u64) -> Vec<String> {
    let mut out = Vec::new();
    let mut start = first;
    // One span per digit count: 5-9, 10-99, 100-123…
    while start <= last {
        let width = start.to_string().len() as u32;
        let top = 10u64.pow(width) - 1;
        let end = last.min(top);
        span(&start.to_string(), &end.to_string(), &mut out);
        if end == u64::MAX {
            break;
        }
        start = end + 1;
    }
    out
}

/// Entries for `a..=b`, both of the same length.
fn span(a: &str, b: &str, out: &mut Vec<String>) {
    if a == b {
        out.push(a.to_string());
        return;
    }
    let (a0, ar) = (a.as_bytes()[0], &a[1..]);
    let (b0, br) = (b.as_bytes()[0], &b[1..]);
    if a0 == b0 {
        let mut inner = Vec::new();
        span(ar, br, &mut inner);
        out.extend(inner.into_iter().map(|e| format!("{}{e}", a0 as char)));
        return;
    }
    let all = |s: &str, d: char| s.chars().all(|c| c == d);
    let xs = "x".repeat(ar.len());
    let (mut lo, mut hi) = (a0, b0);
    if !all(ar, '0') {
        span(a, &format!("{}{}", a0 as char, "9".repeat(ar.len())), out);
        lo += 1;
    }
    let tail = (!all(br, '9')).then_some(hi);
    if tail.is_some() {
        hi -= 1;
    }
    if lo <= hi {
        let head = if lo == hi {
            (lo as char).to_string()
        } else if (lo, hi) == (b'0', b'9') {
            "x".to_string()
        } else {
            format!("[{}-{}]", lo as char, hi as char)
        };
        out.push(format!("{head}{xs}"));
    }
    if let Some(h) = tail {
        span(&format!("{}{}", h as char, "0".repeat(br.len())), b, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(entry: &str, n: &str) -> bool {
        let (mut e, mut d) = (entry.chars().peekable(), n.chars());
        while let Some(c) = e.next() {
            let Some(digit) = d.next() else { return false };
            let ok = match c {
                'x' => true,
                '[' => {
                    let lo = e.next().unwrap();
                    e.next();
                    let hi = e.next().unwrap();
                    e.next();
                    (lo..=hi).contains(&digit)
                }
                c => c == digit,
            };
            if !ok {
                return false;
            }
        }
        d.next().is_none()
    }

    #[test]
    fn a_round_range_is_one_entry() {
        assert_eq!(range(1000, 1999), ["1xxx"]);
        assert_eq!(range(2000, 4999), ["[2-4]xxx"]);
    }

    #[test]
    fn every_range_matches_exactly_its_numbers() {
        for (a, b) in [
            (1000, 1999),
            (1005, 1234),
            (5, 123),
            (100, 100),
            (98, 1003),
            (2010, 2019),
        ] {
            let entries = range(a, b);
            for n in 0..2000u64 {
                let hit = entries.iter().any(|e| matches(e, &n.to_string()));
                assert_eq!(
                    hit,
                    (a..=b).contains(&n),
                    "{n} against {a}-{b}: {entries:?}"
                );
            }
        }
    }

    #[test]
    fn emergency_numbers_and_the_outside_catch_all() {
        let e = entries(
            Some((1000, 1999)),
            &["112".into(), "911".into(), "".into()],
            true,
        );
        assert_eq!(e, ["1xxx", "112", "911", "x.T"]);
        assert_eq!(entries(None, &[], false), Vec::<String>::new());
    }
}
