//! `kubectl switchboard sites`: registered and total devices per Site, from their status.

use crate::table;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use switchboard_crds::common::condition::READY;
use switchboard_crds::Site;

/// The table of `sites`: namespace, name, domain, registered/total devices, Ready.
pub fn table(sites: &[Site]) -> String {
    let rows: Vec<Vec<String>> = sites
        .iter()
        .map(|s| {
            let status = s.status.as_ref();
            let ready = status
                .and_then(|st| st.conditions.iter().find(|c| c.type_ == READY))
                .map_or("Unknown", |c| c.status.as_str());
            vec![
                s.namespace().unwrap_or_default(),
                s.name_any(),
                s.spec.domain.clone(),
                format!(
                    "{}/{}",
                    status.map_or(0, |st| st.registered),
                    status.map_or(0, |st| st.devices)
                ),
                ready.to_string(),
            ]
        })
        .collect();
    table::render(
        &["NAMESPACE", "SITE", "DOMAIN", "REGISTERED", "READY"],
        &rows,
    )
}

/// Lists the Sites of `namespace`, or of every namespace.
pub async fn run(client: Client, namespace: Option<&str>) -> anyhow::Result<String> {
    let api: Api<Site> = match namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    let sites = api.list(&ListParams::default()).await?.items;
    if sites.is_empty() {
        return Ok("no Sites found\n".into());
    }
    Ok(table(&sites))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_per_site_with_registered_over_total() {
        let site: Site = serde_json::from_value(serde_json::json!({
            "apiVersion": "sip.switchboard.dev/v1alpha1", "kind": "Site",
            "metadata": {"name": "hq", "namespace": "acme"},
            "spec": {"domain": "hq.acme.test", "extensions": "1000-1999"},
            "status": {"devices": 20, "registered": 12,
                       "conditions": [{"type": "Ready", "status": "True", "reason": "Published",
                                       "message": "", "lastTransitionTime": "2026-12-01T00:00:00Z"}]}
        }))
        .unwrap();
        let mut new = site.clone();
        new.metadata.name = Some("new".into());
        new.status = None;
        assert_eq!(
            table(&[site, new]),
            "NAMESPACE   SITE   DOMAIN         REGISTERED   READY\n\
             acme        hq     hq.acme.test   12/20        True\n\
             acme        new    hq.acme.test   0/0          Unknown\n"
        );
    }
}
