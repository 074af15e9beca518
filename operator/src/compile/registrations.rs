//! Outbound registrations: an accepted SipRegistration with its credentials becomes an entry
//! the owning replica registers upstream with (password included: outbound digest needs it).

use super::credentials_not_ready;
use super::outcome::{Compiled, NotReady};
use crate::index::Index;
use crate::validate::Verdicts;
use switchboard_crds::config::OutboundRegistration;

/// The entries of the ready registrations; each one's readiness goes into `out`.
pub(super) fn outbound(
    index: &Index,
    verdicts: &Verdicts,
    out: &mut Compiled,
) -> Vec<OutboundRegistration> {
    let mut registrations = Vec::new();
    for (key, reg) in &index.registrations {
        let creds = verdicts.registration_credentials.get(key);
        let upstream = reg.spec.upstream();
        let ready = match (verdicts.registration_ok(key), creds, upstream) {
            (true, Some(c), Ok(up)) => {
                registrations.push(OutboundRegistration {
                    id: key.to_string(),
                    aor: reg.spec.aor.clone(),
                    realm: reg.spec.realm.clone(),
                    username: reg.spec.username.clone(),
                    auth_username: reg.spec.auth_username.clone(),
                    password: c.password.clone(),
                    host: up.host,
                    port: up.port,
                    transport: up.transport,
                    expires: reg.spec.expires,
                    subscribe: reg.spec.subscribe,
                    outbound_proxy: reg.spec.outbound_proxy.clone(),
                    target: reg.spec.target.clone(),
                    callback: verdicts.registration_callbacks.get(key).cloned(),
                });
                Ok(())
            }
            (true, None, _) => Err(credentials_not_ready(index, key)),
            _ => Err(NotReady::new(
                "NotAccepted",
                "the SipRegistration is not accepted",
            )),
        };
        out.registrations.insert(key.clone(), ready);
    }
    registrations
}
