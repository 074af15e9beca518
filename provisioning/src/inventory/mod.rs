//! Where devices, sites and their Secrets come from: the Kubernetes API ([`kube`]) or, for a
//! cluster-less setup, a manifest file ([`file`]). [`find`] turns what a source holds into
//! what one fetch needs, the same for both.

pub mod file;
pub mod kube;

use crate::mac::Mac;
use futures::future::BoxFuture;
use std::collections::BTreeMap;
use switchboard_crds::common::{SecretRef, USERNAME_KEY};
use switchboard_crds::{SipDevice, Site};

/// A Secret's data as text.
pub type SecretData = BTreeMap<String, String>;

/// Devices with the Sites of each one's namespace.
pub type DevicesWithSites = Vec<(SipDevice, Vec<Site>)>;

/// What a source holds.
pub trait Source: Send + Sync {
    /// The devices with this MAC (one per namespace at most) and the Sites of each one's
    /// namespace.
    fn devices(&self, mac: &Mac) -> BoxFuture<'_, anyhow::Result<DevicesWithSites>>;
    /// Whether it has everything listed (a file: always).
    fn listed(&self) -> bool {
        true
    }
    /// A Secret's data, `None` when it does not exist.
    fn secret<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<Option<SecretData>>>;
}

/// Provisioning credentials a site's phones send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiteLogin {
    /// The site.
    pub site: String,
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

/// Everything one fetch needs.
#[derive(Clone, Debug)]
pub struct Found {
    /// The device.
    pub device: SipDevice,
    /// Its site, when assigned and the site exists.
    pub site: Option<Site>,
    /// The credentials that may fetch it: its site's, or, for an unassigned device (whose
    /// file holds no secret), any site's of its namespace.
    pub logins: Vec<SiteLogin>,
    /// Its full SIP user.
    pub sip_user: String,
    /// Its SIP password, `None` while its Secret does not hold one yet.
    pub password: Option<String>,
}

/// The devices with `mac` (a MAC is unique in a namespace, not across them), each with its
/// site, the logins that may fetch it and its credentials.
pub async fn find(source: &dyn Source, mac: &Mac) -> anyhow::Result<Vec<Found>> {
    let mut out = Vec::new();
    for (device, sites) in source.devices(mac).await? {
        out.push(resolve(source, device, sites).await?);
    }
    Ok(out)
}

async fn resolve(
    source: &dyn Source,
    device: SipDevice,
    sites: Vec<Site>,
) -> anyhow::Result<Found> {
    let ns = device.metadata.namespace.clone().unwrap_or_default();
    let site = device
        .spec
        .site_name()
        .and_then(|n| sites.iter().find(|s| s.metadata.name.as_deref() == Some(n)))
        .cloned();
    let fetchers: Vec<&Site> = match (&site, device.spec.site_name()) {
        (Some(s), _) => vec![s],
        (None, None) => sites.iter().collect(),
        // Assigned to a site that does not exist (yet): nobody may fetch it.
        (None, Some(_)) => vec![],
    };
    let mut logins = Vec::new();
    for s in fetchers {
        if let Some(login) = site_login(source, &ns, s).await? {
            logins.push(login);
        }
    }
    let name = device.metadata.name.clone().unwrap_or_default();
    let secret_ref = device.spec.credentials.as_ref().map(|c| &c.secret_ref);
    let secret_name = device
        .status
        .as_ref()
        .and_then(|s| s.credentials_secret.clone())
        .or_else(|| secret_ref.map(|r| r.name.clone()))
        .unwrap_or_else(|| format!("{name}-sip-credentials"));
    let key = secret_ref.map_or(
        switchboard_crds::common::DEFAULT_PASSWORD_KEY,
        SecretRef::password_key,
    );
    let data = source.secret(&ns, &secret_name).await?.unwrap_or_default();
    let sip_user = sip_user(&device, &data);
    Ok(Found {
        password: data.get(key).cloned(),
        device,
        site,
        logins,
        sip_user,
    })
}

/// The full SIP user: the user part of `status.sipUri` (the operator's, prefix included),
/// else the credentials Secret's `username`, else the spec's (a standalone file).
fn sip_user(device: &SipDevice, data: &SecretData) -> String {
    let from_uri = device
        .status
        .as_ref()
        .and_then(|s| s.sip_uri.as_deref())
        .and_then(|u| u.strip_prefix("sip:"))
        .and_then(|u| u.split_once('@'))
        .map(|(user, _)| user.to_string());
    from_uri
        .or_else(|| data.get(USERNAME_KEY).cloned())
        .unwrap_or_else(|| device.spec.sip_user.clone())
}

async fn site_login(
    source: &dyn Source,
    ns: &str,
    site: &Site,
) -> anyhow::Result<Option<SiteLogin>> {
    let Some(p) = &site.spec.provisioning else {
        return Ok(None);
    };
    let r = &p.credentials_secret_ref;
    let Some(data) = source.secret(ns, &r.name).await? else {
        return Ok(None);
    };
    Ok(match (data.get(USERNAME_KEY), data.get(r.password_key())) {
        (Some(u), Some(pw)) if !u.is_empty() && !pw.is_empty() => Some(SiteLogin {
            site: site.metadata.name.clone().unwrap_or_default(),
            username: u.clone(),
            password: pw.clone(),
        }),
        _ => None,
    })
}

/// A Secret's `data` (base64 bytes) and `stringData` as text; values that are not UTF-8 are
/// left out.
pub fn secret_text(secret: &k8s_openapi::api::core::v1::Secret) -> SecretData {
    let mut out: SecretData = secret
        .data
        .iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), String::from_utf8(v.0.clone()).ok()?)))
        .collect();
    out.extend(secret.string_data.clone().unwrap_or_default());
    out
}

#[cfg(test)]
mod tests {
    use super::file::FileSource;
    use super::*;

    /// Two sites of `acme` (hq with a login, lab without), one of `other`, and devices: one at
    /// hq, one unassigned, one at a missing site, one at hq with an operator-written status.
    const MANIFEST: &str = r#"
kind: Site
metadata: {name: hq, namespace: acme}
spec: {domain: hq.test, extensions: "1000-1999", provisioning: {credentialsSecretRef: {name: hq-login}}}
---
kind: Site
metadata: {name: lab, namespace: acme}
spec: {domain: lab.test, extensions: "2000-2999"}
---
kind: Site
metadata: {name: far, namespace: other}
spec: {domain: far.test, extensions: "1000-1999", provisioning: {credentialsSecretRef: {name: far-login}}}
---
kind: Secret
metadata: {name: hq-login, namespace: acme}
stringData: {username: hq, password: hq-pw}
---
kind: Secret
metadata: {name: far-login, namespace: other}
stringData: {username: far, password: far-pw}
---
kind: SipDevice
metadata: {name: desk, namespace: acme}
spec: {macAddress: "00:00:00:00:00:01", sipUser: desk, assignment: {site: {site: hq, extension: "1000"}}}
---
kind: Secret
metadata: {name: desk-sip-credentials, namespace: acme}
stringData: {username: ab12cd-desk, password: desk-pw}
---
kind: SipDevice
metadata: {name: spare, namespace: acme}
spec: {macAddress: "00:00:00:00:00:02", sipUser: spare}
---
kind: SipDevice
metadata: {name: lost, namespace: acme}
spec: {macAddress: "00:00:00:00:00:03", sipUser: lost, assignment: {site: {site: gone, extension: "1"}}}
---
kind: SipDevice
metadata: {name: twin, namespace: other}
spec: {macAddress: "00:00:00:00:00:01", sipUser: twin, credentials: {secretRef: {name: twin-creds, passwordKey: pin}}, assignment: {site: {site: far, extension: "1001"}}}
status: {sipUri: "sip:zz99yy-twin@far.test"}
---
kind: Secret
metadata: {name: twin-creds, namespace: other}
stringData: {pin: "4711"}
"#;

    async fn found(mac: &str) -> Vec<Found> {
        let source = FileSource::text(MANIFEST).unwrap();
        find(&source, &Mac::parse(mac).unwrap()).await.unwrap()
    }

    fn logins(f: &Found) -> Vec<&str> {
        f.logins.iter().map(|l| l.username.as_str()).collect()
    }

    #[tokio::test]
    async fn a_mac_in_two_namespaces_gives_each_device_its_own_site_login_and_credentials() {
        let f = found("00:00:00:00:00:01").await;
        assert_eq!(f.len(), 2);
        let desk = f
            .iter()
            .find(|f| f.device.metadata.name.as_deref() == Some("desk"))
            .unwrap();
        assert_eq!(logins(desk), ["hq"]);
        // The generated Secret's username carries the operator's prefix.
        assert_eq!(
            (desk.sip_user.as_str(), desk.password.as_deref()),
            ("ab12cd-desk", Some("desk-pw"))
        );
        let twin = f
            .iter()
            .find(|f| f.device.metadata.name.as_deref() == Some("twin"))
            .unwrap();
        assert_eq!(logins(twin), ["far"]);
        // status.sipUri wins; the password comes from the referenced key.
        assert_eq!(
            (twin.sip_user.as_str(), twin.password.as_deref()),
            ("zz99yy-twin", Some("4711"))
        );
    }

    #[tokio::test]
    async fn unassigned_takes_any_login_of_its_namespace_and_a_missing_site_none() {
        let spare = &found("000000000002").await[0];
        assert!(spare.site.is_none());
        assert_eq!(
            logins(spare),
            ["hq"],
            "lab has no login, far is another namespace"
        );
        assert_eq!(spare.password, None);
        let lost = &found("000000000003").await[0];
        assert!(lost.logins.is_empty());
        assert!(found("000000000009").await.is_empty());
    }
}
