//! The dial-rule engine: rules applied left to right to a dialled number.
//!
//! A rule with a replacement rewrites every match of its regex (`$1` refers to a capture group);
//! a rule without one is a filter that must match somewhere, else the number is refused. The
//! compact form writes rules space-separated, `REGEX=REPLACEMENT` or `REGEX`, so
//! `"[^+*#\w]= ^8=7"` strips everything but digits, `+`, `*`, `#`, then turns a leading 8 into 7.

use kube::KubeSchema;
use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A user-supplied regex may compile to at most this many bytes, so one object cannot make the
/// operator or registrar allocate without bound.
const REGEX_SIZE_LIMIT: usize = 256 * 1024;

/// One dial rule in structured form.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DialRule {
    /// Regex matched against the number.
    #[serde(rename = "match")]
    #[schemars(length(min = 1, max = 1024))]
    pub match_: String,
    /// Replacement for every match; absent, the rule is a filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub with: Option<String>,
}

impl DialRule {
    /// A replace rule.
    pub fn replace(pattern: &str, with: &str) -> DialRule {
        DialRule {
            match_: pattern.to_string(),
            with: Some(with.to_string()),
        }
    }

    /// A filter rule.
    pub fn filter(pattern: &str) -> DialRule {
        DialRule {
            match_: pattern.to_string(),
            with: None,
        }
    }
}

/// Parses the compact form. A token's first `=` not escaped by `\` separates regex and
/// replacement; regexes cannot hold a literal space (write `\s` or `\x20`).
pub fn parse_compact(compact: &str) -> Vec<DialRule> {
    compact
        .split_whitespace()
        .map(|token| match find_separator(token) {
            Some(i) => DialRule::replace(&token[..i], &token[i + 1..]),
            None => DialRule::filter(token),
        })
        .collect()
}

fn find_separator(token: &str) -> Option<usize> {
    let bytes = token.as_bytes();
    let mut escaped = false;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'\\' if !escaped => escaped = true,
            b'=' if !escaped => return Some(i),
            _ => escaped = false,
        }
    }
    None
}

/// Renders rules back into the compact form.
pub fn to_compact(rules: &[DialRule]) -> String {
    rules
        .iter()
        .map(|r| match &r.with {
            Some(with) => format!("{}={}", r.match_, with),
            None => r.match_.clone(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A rule whose regex does not compile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidRule {
    /// Zero-based position of the rule.
    pub index: usize,
    /// The regex as written.
    pub pattern: String,
    /// What the regex compiler said.
    pub message: String,
}

impl fmt::Display for InvalidRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rule {} ({:?}): invalid regex: {}",
            self.index, self.pattern, self.message
        )
    }
}

impl std::error::Error for InvalidRule {}

/// Why a number was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// Zero-based position of the filter rule that did not match.
    pub index: usize,
    /// The filter's regex.
    pub pattern: String,
    /// The number as it was when the filter saw it.
    pub number: String,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} does not match filter rule {} ({:?})",
            self.number, self.index, self.pattern
        )
    }
}

impl std::error::Error for Refused {}

#[derive(Debug, Clone)]
enum Step {
    Replace(Regex, String),
    Filter(Regex),
}

/// Compiled rules, ready to apply.
#[derive(Debug, Clone)]
pub struct DialPlan {
    steps: Vec<Step>,
}

impl DialPlan {
    /// Compiles rules, reporting the first invalid regex with its index.
    pub fn compile(rules: &[DialRule]) -> Result<DialPlan, InvalidRule> {
        let steps = rules
            .iter()
            .enumerate()
            .map(|(index, rule)| {
                let regex = RegexBuilder::new(&rule.match_)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(|e| InvalidRule {
                        index,
                        pattern: rule.match_.clone(),
                        message: e.to_string(),
                    })?;
                Ok(match &rule.with {
                    Some(with) => Step::Replace(regex, with.clone()),
                    None => Step::Filter(regex),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(DialPlan { steps })
    }

    /// Compiles the compact form.
    pub fn compile_compact(compact: &str) -> Result<DialPlan, InvalidRule> {
        DialPlan::compile(&parse_compact(compact))
    }

    /// Applies the rules left to right; the transformed number, or the filter that refused it.
    pub fn apply(&self, number: &str) -> Result<String, Refused> {
        let mut current = number.to_string();
        for (index, step) in self.steps.iter().enumerate() {
            match step {
                Step::Replace(regex, with) => {
                    current = regex.replace_all(&current, with.as_str()).into_owned();
                }
                Step::Filter(regex) => {
                    if !regex.is_match(&current) {
                        return Err(Refused {
                            index,
                            pattern: regex.as_str().to_string(),
                            number: current,
                        });
                    }
                }
            }
        }
        Ok(current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_strip_then_replace_leading_eight() {
        let plan = DialPlan::compile_compact(r"[^+*#\w]= ^8=7").unwrap();
        assert_eq!(plan.apply("8 (926) 123-45-67").unwrap(), "79261234567");
    }

    #[test]
    fn filter_accepts_and_refuses() {
        let plan = DialPlan::compile(&[DialRule::filter(r"^79\d{9}$")]).unwrap();
        assert_eq!(plan.apply("79261234567").unwrap(), "79261234567");
        let refused = plan.apply("74951234567").unwrap_err();
        assert_eq!(refused.index, 0);
        assert_eq!(refused.number, "74951234567");
    }

    #[test]
    fn compact_filter_after_transform() {
        let plan = DialPlan::compile_compact(r"[^+*#\w]= ^8=7 ^79\d{9}$").unwrap();
        assert_eq!(plan.apply("8-926-123-45-67").unwrap(), "79261234567");
        assert_eq!(plan.apply("8 (495) 123-45-67").unwrap_err().index, 2);
    }

    #[test]
    fn dot_star_empties_any_number() {
        let plan = DialPlan::compile_compact(".*=").unwrap();
        for n in ["", "1", "+79261234567", "8 (926) 123-45-67", "*#"] {
            assert_eq!(plan.apply(n).unwrap(), "", "for {n:?}");
        }
    }

    #[test]
    fn invalid_regex_reports_its_index() {
        let err = DialPlan::compile_compact(r"[^+*#\w]= ^8=7 (unclosed").unwrap_err();
        assert_eq!(err.index, 2);
        assert_eq!(err.pattern, "(unclosed");
        assert!(err.to_string().contains("rule 2"), "{err}");
    }

    #[test]
    fn compact_form_parses_like_structured_form() {
        assert_eq!(
            parse_compact(r"[^+*#\w]= ^8=7 ^79\d{9}$"),
            vec![
                DialRule::replace(r"[^+*#\w]", ""),
                DialRule::replace("^8", "7"),
                DialRule::filter(r"^79\d{9}$"),
            ]
        );
    }

    #[test]
    fn escaped_equals_belongs_to_the_regex() {
        let rules = parse_compact(r"a\=b=c");
        assert_eq!(rules, vec![DialRule::replace(r"a\=b", "c")]);
        assert_eq!(
            DialPlan::compile(&rules).unwrap().apply("a=b").unwrap(),
            "c"
        );
    }

    #[test]
    fn capture_groups_in_replacement() {
        let plan = DialPlan::compile(&[DialRule::replace(r"^00(\d+)$", "+$1")]).unwrap();
        assert_eq!(plan.apply("0049301234").unwrap(), "+49301234");
    }

    #[test]
    fn compact_round_trips() {
        let src = r"[^+*#\w]= ^8=7 ^79\d{9}$";
        assert_eq!(to_compact(&parse_compact(src)), src);
    }

    #[test]
    fn empty_rules_pass_number_through() {
        let plan = DialPlan::compile(&[]).unwrap();
        assert_eq!(plan.apply("1001").unwrap(), "1001");
    }
}
