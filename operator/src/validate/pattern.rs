//! CallPattern checks: rules that compile, one route, a route to a registration that exists.

use super::{Problem, Problems};
use crate::index::Index;
use switchboard_crds::validation::validate_pattern;

/// Adds every pattern's problems to `problems`.
pub fn check(index: &Index, problems: &mut Problems) {
    for (key, pattern) in &index.patterns {
        let mut mine: Vec<Problem> = validate_pattern(&pattern.spec)
            .into_iter()
            .map(Problem::from_field)
            .collect();
        if let Some(reg) = pattern
            .spec
            .route
            .as_ref()
            .and_then(|r| r.registration.as_ref())
        {
            if !index.registrations.contains_key(&key.sibling(reg)) {
                mine.push(Problem::missing(format!(
                    "spec.route.registration: SipRegistration {reg:?} not found"
                )));
            }
        }
        if !mine.is_empty() {
            problems.entry(key.clone()).or_default().extend(mine);
        }
    }
}
