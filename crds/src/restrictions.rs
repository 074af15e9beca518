//! Call restrictions: whether a (transformed) number may be dialled.

use crate::site::CallRestrictions;
use std::fmt;

/// Why a number may not be dialled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restricted {
    /// The number starts with a blocked prefix.
    Blocked {
        /// The prefix that matched.
        prefix: String,
    },
    /// Premium-rate numbers are not allowed.
    PremiumRate {
        /// The premium-rate prefix that matched.
        prefix: String,
    },
    /// International numbers are not allowed.
    International,
}

impl fmt::Display for Restricted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Restricted::Blocked { prefix } => write!(f, "prefix {prefix} is blocked"),
            Restricted::PremiumRate { prefix } => {
                write!(f, "premium-rate numbers ({prefix}…) are not allowed")
            }
            Restricted::International => f.write_str("international calls are not allowed"),
        }
    }
}

impl std::error::Error for Restricted {}

/// Checks a number against restrictions. Emergency numbers always pass; then blocked prefixes,
/// premium rate and international calls are refused unless allowed.
pub fn check(restrictions: &CallRestrictions, number: &str) -> Result<(), Restricted> {
    if restrictions.emergency_numbers.iter().any(|e| e == number) {
        return Ok(());
    }
    if let Some(prefix) = longest_prefix(&restrictions.blocked_prefixes, number) {
        return Err(Restricted::Blocked { prefix });
    }
    if !restrictions.allow_premium_rate {
        if let Some(prefix) = longest_prefix(&restrictions.premium_rate_prefixes, number) {
            return Err(Restricted::PremiumRate { prefix });
        }
    }
    if !restrictions.allow_international && is_international(restrictions, number) {
        return Err(Restricted::International);
    }
    Ok(())
}

fn longest_prefix(prefixes: &[String], number: &str) -> Option<String> {
    prefixes
        .iter()
        .filter(|p| !p.is_empty() && number.starts_with(p.as_str()))
        .max_by_key(|p| p.len())
        .cloned()
}

/// `+CC…` or `00CC…` is international unless CC is the site's own country code.
fn is_international(restrictions: &CallRestrictions, number: &str) -> bool {
    let Some(rest) = number
        .strip_prefix('+')
        .or_else(|| number.strip_prefix("00"))
    else {
        return false;
    };
    match &restrictions.country_code {
        Some(cc) => !rest.starts_with(cc.as_str()),
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(cc: Option<&str>) -> CallRestrictions {
        CallRestrictions {
            country_code: cc.map(str::to_string),
            blocked_prefixes: vec!["+7809".into()],
            ..Default::default()
        }
    }

    #[test]
    fn emergency_always_allowed() {
        let mut r = site(None);
        r.blocked_prefixes.push("1".into());
        assert_eq!(check(&r, "112"), Ok(()));
        assert_eq!(check(&r, "911"), Ok(()));
    }

    #[test]
    fn international_refused_unless_home_country_or_allowed() {
        let r = site(Some("7"));
        assert_eq!(check(&r, "+79261234567"), Ok(()));
        assert_eq!(check(&r, "0079261234567"), Ok(()));
        assert_eq!(check(&r, "+4930123456"), Err(Restricted::International));
        assert_eq!(check(&r, "004930123456"), Err(Restricted::International));
        assert_eq!(
            check(&site(None), "+79261234567"),
            Err(Restricted::International)
        );
        let open = CallRestrictions {
            allow_international: true,
            ..site(Some("7"))
        };
        assert_eq!(check(&open, "+4930123456"), Ok(()));
    }

    #[test]
    fn premium_and_blocked() {
        let r = site(Some("7"));
        assert_eq!(
            check(&r, "9001234"),
            Err(Restricted::PremiumRate {
                prefix: "900".into()
            })
        );
        assert_eq!(
            check(&r, "+78091234567"),
            Err(Restricted::Blocked {
                prefix: "+7809".into()
            })
        );
        let premium_ok = CallRestrictions {
            allow_premium_rate: true,
            ..site(Some("7"))
        };
        assert_eq!(check(&premium_ok, "9001234"), Ok(()));
    }

    #[test]
    fn local_numbers_pass() {
        assert_eq!(check(&site(None), "1001"), Ok(()));
        assert_eq!(check(&site(None), "84951234567"), Ok(()));
    }
}
