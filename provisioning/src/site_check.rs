//! Whether a Site's provisioning login is usable, as the condition `ProvisioningReady` on the
//! Site says it: the Secret `spec.provisioning.credentialsSecretRef` names exists and holds a
//! user name and a password. Pure.

use crate::inventory::SecretData;
use switchboard_crds::common::USERNAME_KEY;
use switchboard_crds::Site;

/// The condition type the provisioning service owns on Sites.
pub const CONDITION: &str = "ProvisioningReady";

/// The condition's content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the site's phones can fetch their files.
    pub ready: bool,
    /// CamelCase reason.
    pub reason: &'static str,
    /// What is wrong, where, and how to fix it (or what is right).
    pub message: String,
}

/// The verdict for `site` given its login Secret's data (`None`: not found); `None` when the
/// site does not use provisioning.
pub fn verdict(site: &Site, secret: Option<&SecretData>) -> Option<Verdict> {
    let r = &site.spec.provisioning.as_ref()?.credentials_secret_ref;
    let ns = site.metadata.namespace.as_deref().unwrap_or_default();
    let field = "spec.provisioning.credentialsSecretRef";
    let Some(data) = secret else {
        return Some(Verdict {
            ready: false,
            reason: "SecretNotFound",
            message: format!(
                "{field}: Secret {ns}/{} not found; create it with keys {USERNAME_KEY} and {}: \
                 kubectl -n {ns} create secret generic {} --from-literal={USERNAME_KEY}=USER --from-literal={}=PASSWORD",
                r.name,
                r.password_key(),
                r.name,
                r.password_key()
            ),
        });
    };
    let missing: Vec<&str> = [USERNAME_KEY, r.password_key()]
        .into_iter()
        .filter(|k| data.get(*k).is_none_or(|v| v.is_empty()))
        .collect();
    if !missing.is_empty() {
        return Some(Verdict {
            ready: false,
            reason: "SecretIncomplete",
            message: format!(
                "{field}: Secret {ns}/{} has no non-empty {}; add it",
                r.name,
                missing.join(" or ")
            ),
        });
    }
    Some(Verdict {
        ready: true,
        reason: "CredentialsFound",
        message: format!(
            "phones of this site fetch their files with the login in Secret {}",
            r.name
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(provisioning: &str) -> Site {
        serde_yaml::from_str(&format!(
            "apiVersion: sip.switchboard.dev/v1alpha1\nkind: Site\nmetadata: {{name: hq, namespace: acme}}\nspec: {{domain: hq.test, extensions: '1-9'{provisioning}}}\n"
        ))
        .unwrap()
    }

    #[test]
    fn missing_secret_missing_keys_and_a_good_login() {
        assert_eq!(
            verdict(&site(""), None),
            None,
            "no provisioning, no condition"
        );
        let s = site(", provisioning: {credentialsSecretRef: {name: hq-login, passwordKey: pin}}");
        let v = verdict(&s, None).unwrap();
        assert_eq!((v.ready, v.reason), (false, "SecretNotFound"));
        assert!(
            v.message.starts_with(
                "spec.provisioning.credentialsSecretRef: Secret acme/hq-login not found"
            ),
            "{}",
            v.message
        );
        assert!(v.message.contains("kubectl -n acme create secret generic hq-login --from-literal=username=USER --from-literal=pin=PASSWORD"), "{}", v.message);
        let partial: SecretData = [
            ("username".to_string(), "hq".to_string()),
            ("pin".into(), "".into()),
        ]
        .into();
        let v = verdict(&s, Some(&partial)).unwrap();
        assert_eq!((v.ready, v.reason), (false, "SecretIncomplete"));
        assert!(v.message.contains("has no non-empty pin"), "{}", v.message);
        let good: SecretData = [
            ("username".to_string(), "hq".to_string()),
            ("pin".into(), "1".into()),
        ]
        .into();
        assert!(verdict(&s, Some(&good)).unwrap().ready);
    }
}
