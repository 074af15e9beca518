//! One fetch, start to end: the path names vendor and MAC, the credentials must be those of
//! the device's site (failures limited as SIP authentication's are, by the same limiter), and
//! the file is rendered from the device's profile.

use crate::access::{self, Given, Verdict};
use crate::inventory::{self, Found, Source};
use crate::mac::Mac;
use crate::profile::{self, Profile, SipServer};
use crate::vendor::{File, Part, Vendor};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use switchboard_registrar::auth::limiter::{Limiter, PairKey};
use switchboard_registrar::auth::nonce::NonceKey;

/// What a phone sent.
#[derive(Clone, Debug)]
pub struct Request {
    /// The path segment after `/provisioning/`.
    pub vendor: String,
    /// The file name.
    pub file: String,
    /// Where the connection came from.
    pub source: SocketAddr,
    /// Its `User-Agent`.
    pub user_agent: Option<String>,
    /// Its `Authorization` header.
    pub authorization: Option<String>,
    /// The host it fetched from (`Host`, without the port).
    pub host: Option<String>,
}

/// A served file, as the device's status and Event record it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetch {
    /// The device's namespace.
    pub namespace: String,
    /// The device's name.
    pub name: String,
    /// The vendor's file served.
    pub vendor: Vendor,
    /// Where the fetch came from.
    pub source: SocketAddr,
    /// The phone's `User-Agent`.
    pub user_agent: Option<String>,
    /// When.
    pub at: SystemTime,
    /// Whether the file held an account (else the unassigned notice).
    pub assigned: bool,
}

/// The answer to a fetch.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// 200 with the file.
    Served(File, Fetch),
    /// 404: no such vendor, file name or MAC.
    NotFound,
    /// 401 with these `WWW-Authenticate` challenges: no credentials, or not those of the
    /// device's site.
    Unauthorized(Vec<String>),
    /// 429: too many failures from this source (and user), for this many seconds.
    Blocked(u64),
    /// 503: the source cannot answer now (still listing, a Secret not written yet).
    Unavailable(String),
}

impl Outcome {
    /// The metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Served(_, f) if f.assigned => "served",
            Outcome::Served(..) => "unassigned",
            Outcome::NotFound => "not_found",
            Outcome::Unauthorized(_) => "unauthorized",
            Outcome::Blocked(_) => "blocked",
            Outcome::Unavailable(_) => "unavailable",
        }
    }
}

/// Serves fetches.
pub struct Provisioner {
    source: Arc<dyn Source>,
    limiter: Limiter,
    server: SipServer,
    /// Signs digest nonces: random per process, so a nonce from another replica is answered
    /// with a fresh challenge.
    nonces: NonceKey,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Provisioner {
    /// A provisioner over a source, with a failure limiter and the registrar's address.
    pub fn new(source: Arc<dyn Source>, limiter: Limiter, server: SipServer) -> Provisioner {
        Provisioner {
            source,
            limiter,
            server,
            nonces: NonceKey::new(&rand::random::<[u8; 32]>()),
        }
    }

    /// The limiter (pruned by the server now and then).
    pub fn limiter(&self) -> &Limiter {
        &self.limiter
    }

    /// Answers one fetch.
    pub async fn fetch(&self, req: &Request) -> Outcome {
        let now = SystemTime::now();
        let Some((vendor, (mac, part))) =
            Vendor::from_name(&req.vendor).and_then(|v| Some((v, v.file_of(&req.file)?)))
        else {
            return Outcome::NotFound;
        };
        let Some(given) = req.authorization.as_deref().and_then(Given::parse) else {
            // Phones send credentials only once challenged: not a failure.
            return self.challenge(now, false);
        };
        let mut key = PairKey {
            source: req.source.ip(),
            user: given.user().to_string(),
            known: true,
        };
        if self.limiter.blocked(&key, unix_ms(now)).is_some() {
            return Outcome::Blocked(self.limiter.settings().cooldown.as_secs());
        }
        let candidates = match inventory::find(self.source.as_ref(), &mac).await {
            Ok(c) => c,
            Err(e) => return Outcome::Unavailable(format!("{e:#}")),
        };
        if candidates.is_empty() {
            // Counted, so that nobody can scan for MACs at leisure.
            key.known = false;
            self.limiter.fail(&key, unix_ms(now));
            return Outcome::NotFound;
        }
        let path = format!("/provisioning/{}/{}", req.vendor, req.file);
        let secs = unix_ms(now) / 1000;
        let mut stale = false;
        for found in candidates {
            match access::check(&found.logins, &given, &path, &self.nonces, secs) {
                Verdict::Admitted => return self.serve((vendor, part), &mac, found, req, now),
                Verdict::Stale => stale = true,
                Verdict::Refused => {}
            }
        }
        if !stale {
            let strike = self.limiter.fail(&key, unix_ms(now));
            tracing::info!(source = %req.source, user = %key.user, %mac, ?strike, "provisioning credentials refused");
        }
        self.challenge(now, stale)
    }

    fn challenge(&self, now: SystemTime, stale: bool) -> Outcome {
        let secs = unix_ms(now) / 1000;
        Outcome::Unauthorized(access::challenges(
            &self.nonces,
            secs,
            rand::random(),
            stale,
        ))
    }

    fn serve(
        &self,
        (vendor, part): (Vendor, Part),
        mac: &Mac,
        f: Found,
        req: &Request,
        now: SystemTime,
    ) -> Outcome {
        let password = f.password.clone().unwrap_or_default();
        let mut server = self.server.clone();
        if server.host.is_empty() {
            // No --sip-server: the registrar runs beside us, where the phone found us.
            server.host = req.host.clone().unwrap_or_else(|| "localhost".into());
        }
        let profile = profile::profile(&server, &f.device, f.site.as_ref(), &f.sip_user, &password);
        let assigned = matches!(profile, Profile::Account(_));
        if assigned && f.password.is_none() {
            return Outcome::Unavailable(format!(
                "the credentials Secret of SipDevice {}/{} holds no password yet",
                f.device.metadata.namespace.as_deref().unwrap_or_default(),
                f.device.metadata.name.as_deref().unwrap_or_default()
            ));
        }
        let fetch = Fetch {
            namespace: f.device.metadata.namespace.clone().unwrap_or_default(),
            name: f.device.metadata.name.clone().unwrap_or_default(),
            vendor,
            source: req.source,
            user_agent: req.user_agent.clone(),
            at: now,
            assigned,
        };
        Outcome::Served(vendor.render(mac, part, &profile), fetch)
    }
}
