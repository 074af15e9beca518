//! When a callback is tried again, and when it is given up. Pure.

use std::time::Duration;

/// Retry settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Wait after the first failed attempt; doubled after each further one.
    pub first_delay: Duration,
    /// Longest wait.
    pub max_delay: Duration,
    /// Attempts per change before giving up.
    pub max_attempts: u32,
    /// How long one attempt may take (connect, TLS, answer).
    pub timeout: Duration,
}

impl Default for Policy {
    /// 1 s doubling to 60 s, 8 attempts (about 2 minutes in all), 10 s per attempt.
    fn default() -> Self {
        Policy {
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            max_attempts: 8,
            timeout: Duration::from_secs(10),
        }
    }
}

/// How one attempt went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// A 2xx.
    Delivered,
    /// Worth trying again: no answer, 408, 429, 5xx.
    Failed(String),
    /// The endpoint refused the request itself (another 4xx, a redirect): trying the same
    /// request again would get the same answer.
    Refused(String),
}

impl Attempt {
    /// From an HTTP status code.
    pub fn from_status(code: u16) -> Attempt {
        match code {
            200..=299 => Attempt::Delivered,
            408 | 429 | 500..=599 => Attempt::Failed(format!("HTTP {code}")),
            _ => Attempt::Refused(format!("HTTP {code}")),
        }
    }
}

/// What to do after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Delivered: next change.
    Done,
    /// Try again after this long.
    Retry(Duration),
    /// Give up on this change.
    GiveUp,
}

impl Policy {
    /// After `attempts` attempts (≥ 1), the last of which went as `last`.
    pub fn next(&self, attempts: u32, last: &Attempt) -> Next {
        match last {
            Attempt::Delivered => Next::Done,
            Attempt::Refused(_) => Next::GiveUp,
            Attempt::Failed(_) if attempts >= self.max_attempts => Next::GiveUp,
            Attempt::Failed(_) => {
                let exp = attempts.saturating_sub(1).min(20);
                Next::Retry(
                    self.first_delay
                        .saturating_mul(1 << exp)
                        .min(self.max_delay),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_then_gives_up() {
        let p = Policy::default();
        let failed = Attempt::Failed("HTTP 503".into());
        let waits: Vec<Next> = (1..=8).map(|n| p.next(n, &failed)).collect();
        let s = Duration::from_secs;
        assert_eq!(
            waits,
            vec![
                Next::Retry(s(1)),
                Next::Retry(s(2)),
                Next::Retry(s(4)),
                Next::Retry(s(8)),
                Next::Retry(s(16)),
                Next::Retry(s(32)),
                Next::Retry(s(60)),
                Next::GiveUp,
            ]
        );
        assert_eq!(p.next(1, &Attempt::Delivered), Next::Done);
    }

    #[test]
    fn status_codes() {
        assert_eq!(Attempt::from_status(204), Attempt::Delivered);
        for code in [408, 429, 500, 502, 503] {
            assert!(
                matches!(Attempt::from_status(code), Attempt::Failed(_)),
                "{code}"
            );
        }
        for code in [301, 400, 401, 404, 410] {
            let a = Attempt::from_status(code);
            assert!(matches!(a, Attempt::Refused(_)), "{code}");
            assert_eq!(Policy::default().next(1, &a), Next::GiveUp);
        }
    }
}
