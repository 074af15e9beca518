//! Site checks: its own fields, a domain no other site has, users' extensions unique, the
//! default CallPatterns exist.

use super::unique::{Claimant, Claims};
use super::{Problem, Problems};
use crate::index::Index;
use std::collections::BTreeMap;
use switchboard_crds::validation::validate_site;

/// Adds every site's problems to `problems`.
pub fn check(index: &Index, problems: &mut Problems) {
    let mut domains = Claims::default();
    for (key, site) in &index.sites {
        let mut mine: Vec<Problem> = validate_site(&site.spec)
            .into_iter()
            .map(Problem::from_field)
            .collect();
        domains.claim(
            site.spec.domain.as_str(),
            Claimant::object("Site", &**site, key),
        );
        let mut seen = BTreeMap::new();
        for user in &site.spec.users {
            if let Some(ext) = &user.extension {
                if let Some(other) = seen.insert(ext.clone(), user.name.clone()) {
                    mine.push(Problem::conflict(format!(
                        "spec.users: extension {ext} is given to both {other:?} and {:?}",
                        user.name
                    )));
                }
            }
        }
        for (i, name) in site.spec.call_patterns.iter().enumerate() {
            if !index.patterns.contains_key(&key.sibling(name)) {
                mine.push(Problem::missing(format!(
                    "spec.callPatterns[{i}]: CallPattern {name:?} not found"
                )));
            }
        }
        if !mine.is_empty() {
            problems.entry(key.clone()).or_default().extend(mine);
        }
    }
    domains.report(problems, |d| format!("spec.domain: domain {d}"));
}
