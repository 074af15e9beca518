//! Digest authentication both ways: a device's Proxy-Authorization checked with the
//! registrar's nonces (407), and a trunk's 401/407 answered with the registration's credentials.

use super::core::new_branch;
use super::driver::Inner;
use crate::auth::client::{authorization, Challenge, ClientCredentials};
use crate::auth::{Authenticator, Verdict};
use crate::message::owned::Name;
use crate::message::Msg;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};
use switchboard_crds::common::Transport;

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis().min(u64::MAX as u128) as u64)
}

impl Inner {
    /// Checks the Proxy-Authorization of a device's request; the authenticated SIP user, or
    /// the status, reason and headers to answer with.
    #[allow(clippy::type_complexity)]
    pub(super) async fn authenticate(
        &self,
        auth: &Authenticator,
        req: &Msg,
        realm: &str,
        source: SocketAddr,
    ) -> Result<String, ((u16, &'static str), Vec<(Name, String)>)> {
        let loaded = self
            .config
            .current()
            .ok_or(((503, "Service Unavailable"), Vec::new()))?;
        let domain = loaded
            .config
            .domain(realm)
            .ok_or(((403, "Domain Not Served"), Vec::new()))?;
        let now_ms = unix_ms();
        let now_secs = now_ms / 1000;
        let checked = auth
            .check(
                &loaded.nonce_key,
                &*loaded,
                domain,
                req.method().unwrap_or(""),
                req.headers
                    .iter()
                    .filter(|(n, _)| n == "Proxy-Authorization")
                    .map(|(_, v)| v.as_str()),
                source.ip(),
                now_ms,
            )
            .await;
        let (verdict, device) = (checked.verdict, checked.device);
        match verdict {
            Verdict::Authorized => device
                .map(|d| d.sip_user.clone())
                .ok_or(((403, "Forbidden"), Vec::new())),
            Verdict::Forbidden => Err(((403, "Forbidden"), Vec::new())),
            Verdict::Unavailable => Err((
                (503, "Service Unavailable"),
                vec![("Retry-After".into(), "5".to_string())],
            )),
            Verdict::Challenge { stale } => {
                let challenges = auth
                    .challenges(
                        &loaded.nonce_key,
                        realm,
                        &domain.registration.digest_algorithms,
                        now_secs,
                        stale,
                    )
                    .into_iter()
                    .map(|c| ("Proxy-Authenticate".into(), c))
                    .collect();
                Err(((407, "Proxy Authentication Required"), challenges))
            }
        }
    }

    pub(super) fn authenticated_retry(
        &self,
        req: &Msg,
        resp: &Msg,
        reg_id: &str,
        transport: Transport,
    ) -> Option<Msg> {
        let loaded = self.config.current()?;
        let reg = loaded
            .config
            .registrations
            .iter()
            .find(|r| r.id == reg_id)?;
        let (header, answer) = match resp.status()? {
            401 => ("WWW-Authenticate", "Authorization"),
            _ => ("Proxy-Authenticate", "Proxy-Authorization"),
        };
        let challenge = Challenge::pick(resp.headers_raw(header)).ok()?;
        if let Some(realm) = &reg.realm {
            if !challenge.realm.eq_ignore_ascii_case(realm) {
                tracing::warn!(registration = %reg.id, realm = %challenge.realm, "trunk challenged with an unexpected realm");
                return None;
            }
        }
        let creds = ClientCredentials {
            username: reg.auth_username.as_deref().unwrap_or(&reg.username),
            password: &reg.password,
        };
        let uri = req.uri()?.to_string();
        let cnonce = format!("{:016x}", rand::random::<u64>());
        let value = authorization(&challenge, &creds, req.method()?, &uri, 1, &cnonce);
        let mut retry = req.clone();
        retry.pop_first("Via");
        retry.push_front("Via", self.via(&new_branch(), transport));
        retry.push_front(answer, value);
        Some(retry)
    }
}
