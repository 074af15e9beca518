//! Sites: an accepted Site becomes one domain of the config (its domain the digest realm).

use super::outcome::{Compiled, NotReady, SiteOutcome};
use crate::index::Index;
use crate::key::ObjectKey;
use crate::validate::Verdicts;
use std::collections::BTreeMap;
use switchboard_crds::config::{DomainConfig, UserConfig};
use switchboard_crds::site::SiteSpec;

/// The domains of the accepted sites, still without devices; each site's outcome (counts at
/// zero, filled in as devices are placed) goes into `out`.
pub(super) fn domains(
    index: &Index,
    verdicts: &Verdicts,
    out: &mut Compiled,
) -> BTreeMap<ObjectKey, DomainConfig> {
    let mut domains = BTreeMap::new();
    for (key, site) in &index.sites {
        let ready = if verdicts.site_ok(key) {
            domains.insert(key.clone(), domain(key, &site.spec));
            Ok(())
        } else {
            Err(NotReady::new("NotAccepted", "the Site is not accepted"))
        };
        out.sites.insert(
            key.clone(),
            SiteOutcome {
                devices: 0,
                registered: 0,
                ready,
            },
        );
    }
    domains
}

fn domain(key: &ObjectKey, s: &SiteSpec) -> DomainConfig {
    DomainConfig {
        domain: s.domain.clone(),
        site: key.to_string(),
        extensions: s.extensions.clone(),
        default_caller_id: s.default_outbound_caller_id.clone(),
        trusted_peers: s.trusted_peers.clone(),
        registration: s.registration.clone(),
        users: s
            .users
            .iter()
            .map(|u| UserConfig {
                name: u.name.clone(),
                extension: u.extension.clone(),
            })
            .collect(),
        devices: Vec::new(),
    }
}
