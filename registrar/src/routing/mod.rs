//! Call routing, pure: who is calling, what they dialled and the config in force → where the
//! call goes ([`Route`]). No network, no location store: the proxy looks the chosen devices'
//! bindings up afterwards (a device with none gives 480 there).
//!
//! [`RoutingTable`] is built once per config generation: every `CallPattern` is compiled into a
//! [`DialPlan`] once, devices and users are indexed per domain, trusted peers parsed. The proxy
//! keeps the table of the generation in force and rebuilds it only when the generation changes.
//!
//! **Order of decisions for a device's call.**
//! 1. An `Unassigned` caller is refused (403 "Device is unassigned").
//! 2. A number that names something in the caller's site as dialled (an extension, a user's
//!    name or extension, a device's SIP user) rings it; restrictions are not applied to
//!    calls inside the site.
//! 3. Otherwise the caller's effective patterns are tried in order; the first whose rules accept
//!    the number wins. Its transformed number is checked against the caller's restrictions
//!    (403 with the reason), then goes where the pattern's route says: an extension, a user,
//!    a `SipRegistration` (trunk); without a route the transformed number is looked up in the
//!    site as in 2.
//! 4. Anything else is 404.

use std::collections::HashMap;
use std::net::IpAddr;
use switchboard_crds::config::{DeviceConfig, DomainConfig, RegistrarConfig};
use switchboard_crds::device::AssignmentKind;
use switchboard_crds::dialrules::DialPlan;
use switchboard_crds::pattern::PatternRoute;
use switchboard_crds::registration::RegistrationTarget;
use switchboard_crds::restrictions;
use switchboard_crds::validation::parse_cidr;

/// Where a call goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// Ring a site extension: these devices (one, normally), every binding in parallel.
    Extension {
        /// The extension.
        extension: String,
        /// Device ids.
        devices: Vec<String>,
    },
    /// Ring a user's companion-mode devices that receive calls.
    User {
        /// The user's name.
        user: String,
        /// Device ids.
        devices: Vec<String>,
    },
    /// Out through a `SipRegistration` (trunk), with the transformed number.
    Trunk {
        /// The registration's id.
        registration: String,
        /// The number to put in the Request-URI.
        number: String,
    },
    /// Refused with this status (403, 480) and a reason phrase that says why.
    Refused {
        /// SIP status.
        status: u16,
        /// Reason phrase.
        reason: String,
    },
    /// Nothing by that number (404).
    NotFound,
}

impl Route {
    /// A short label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Route::Extension { .. } => "extension",
            Route::User { .. } => "user",
            Route::Trunk { .. } => "trunk",
            Route::Refused { .. } => "refused",
            Route::NotFound => "not_found",
        }
    }

    fn refused(status: u16, reason: impl Into<String>) -> Route {
        Route::Refused {
            status,
            reason: reason.into(),
        }
    }
}

/// A routing decision with what the proxy writes into the forwarded request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Where it goes.
    pub route: Route,
    /// The number after the dial rules (what the far end sees in the Request-URI).
    pub number: String,
    /// The caller ID to present (From display, P-Asserted-Identity), when there is one.
    pub caller_id: Option<String>,
    /// The pattern that matched, if any.
    pub pattern: Option<String>,
}

/// Who is calling.
#[derive(Clone, Copy, Debug)]
pub enum Caller<'a> {
    /// An authenticated device of a domain.
    Device {
        /// Its domain.
        domain: &'a str,
        /// Its SIP user.
        sip_user: &'a str,
    },
    /// A trusted peer (by source address) calling into a domain.
    Peer {
        /// The domain named in the Request-URI.
        domain: &'a str,
    },
    /// An upstream server calling through one of our registrations.
    Upstream {
        /// The registration's id.
        registration: &'a str,
    },
}

struct CompiledPattern {
    plan: Option<DialPlan>,
    route: Option<PatternRoute>,
}

#[derive(Default)]
struct DomainIndex {
    /// Extension → device index.
    extensions: HashMap<String, usize>,
    /// User name → indices of its companion devices that receive calls.
    users: HashMap<String, Vec<usize>>,
    /// User extension → user name.
    user_extensions: HashMap<String, String>,
    trusted: Vec<(IpAddr, u8)>,
}

/// The config compiled for routing; build once per config generation.
pub struct RoutingTable {
    config: std::sync::Arc<RegistrarConfig>,
    generation: u64,
    patterns: HashMap<String, CompiledPattern>,
    domains: Vec<DomainIndex>,
}

/// Percent-decodes a Request-URI user part (`8%20(926)` → `8 (926)`); invalid escapes stay.
pub fn unescape(user: &str) -> String {
    let bytes = user.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn in_cidr(ip: IpAddr, (net, len): (IpAddr, u8)) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(len))
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(len))
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V4(_)) => a
            .to_ipv4_mapped()
            .is_some_and(|v4| in_cidr(IpAddr::V4(v4), (net, len))),
        _ => false,
    }
}

impl RoutingTable {
    /// Compiles a config (generation `generation`). A pattern whose rules do not compile (the
    /// operator refuses those, a hand-written file might not) never matches.
    pub fn new(config: std::sync::Arc<RegistrarConfig>, generation: u64) -> RoutingTable {
        let patterns = config
            .patterns
            .iter()
            .map(|p| {
                let plan = match DialPlan::compile(&p.rules) {
                    Ok(plan) => Some(plan),
                    Err(e) => {
                        tracing::warn!(pattern = %p.id, error = %e, "call pattern does not compile; it matches nothing");
                        None
                    }
                };
                (
                    p.id.clone(),
                    CompiledPattern {
                        plan,
                        route: p.route.clone(),
                    },
                )
            })
            .collect();
        let domains = config.domains.iter().map(index_domain).collect();
        RoutingTable {
            config,
            generation,
            patterns,
            domains,
        }
    }

    /// The generation this table was built from.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The config this table was built from.
    pub fn config(&self) -> &RegistrarConfig {
        &self.config
    }

    fn domain_at(&self, domain: &str) -> Option<(usize, &DomainConfig)> {
        let i = self
            .config
            .domains
            .binary_search_by(|d| d.domain.as_str().cmp(domain))
            .ok()?;
        Some((i, &self.config.domains[i]))
    }

    /// The domain a trusted peer at `ip` may call into: the one named, if `ip` is in its
    /// `trustedPeers`.
    pub fn trusted_domain(&self, ip: IpAddr, domain: &str) -> bool {
        self.domain_at(domain)
            .is_some_and(|(i, _)| self.domains[i].trusted.iter().any(|&c| in_cidr(ip, c)))
    }

    /// Any domain that trusts `ip` (for a peer whose Request-URI names an address, not a
    /// domain).
    pub fn any_trusting_domain(&self, ip: IpAddr) -> Option<&str> {
        self.domains
            .iter()
            .zip(&self.config.domains)
            .find(|(ix, _)| ix.trusted.iter().any(|&c| in_cidr(ip, c)))
            .map(|(_, d)| d.domain.as_str())
    }

    /// The registration whose Contact user is `user`.
    pub fn registration_for_user(&self, user: &str) -> Option<&str> {
        self.config
            .registrations
            .iter()
            .find(|r| r.username == user)
            .map(|r| r.id.as_str())
    }

    /// Routes a call; `dialled` is the Request-URI's user part as received (escaped or not).
    pub fn route(&self, caller: Caller<'_>, dialled: &str) -> Decision {
        let dialled = unescape(dialled);
        let plain = |route: Route, caller_id: Option<String>| Decision {
            route,
            number: dialled.clone(),
            caller_id,
            pattern: None,
        };
        match caller {
            Caller::Upstream { registration } => plain(self.upstream(registration), None),
            Caller::Peer { domain } => match self.domain_at(domain) {
                Some((i, d)) => plain(self.local(i, d, &dialled).unwrap_or(Route::NotFound), None),
                None => plain(Route::NotFound, None),
            },
            Caller::Device { domain, sip_user } => {
                let Some((i, d)) = self.domain_at(domain) else {
                    return plain(Route::refused(403, "Unknown Domain"), None);
                };
                let Ok(k) = d
                    .devices
                    .binary_search_by(|dev| dev.sip_user.as_str().cmp(sip_user))
                else {
                    return plain(Route::refused(403, "Unknown Device"), None);
                };
                let device = &d.devices[k];
                let caller_id = device
                    .caller_id
                    .clone()
                    .or_else(|| d.default_caller_id.clone());
                if device.assignment == AssignmentKind::Unassigned {
                    return plain(Route::refused(403, "Device is unassigned"), caller_id);
                }
                self.for_device(i, d, device, &dialled, caller_id)
            }
        }
    }

    fn for_device(
        &self,
        i: usize,
        d: &DomainConfig,
        device: &DeviceConfig,
        dialled: &str,
        caller_id: Option<String>,
    ) -> Decision {
        if let Some(route) = self.local(i, d, dialled) {
            return Decision {
                route,
                number: dialled.to_string(),
                caller_id,
                pattern: None,
            };
        }
        for id in &device.patterns {
            let Some(p) = self.patterns.get(id) else {
                continue;
            };
            let Some(plan) = &p.plan else { continue };
            let Ok(number) = plan.apply(dialled) else {
                continue;
            };
            let decided = |route: Route, number: String| Decision {
                route,
                number,
                caller_id: caller_id.clone(),
                pattern: Some(id.clone()),
            };
            if let Err(why) = restrictions::check(&device.restrictions, &number) {
                let reason = format!("Restricted: {why}");
                return decided(Route::refused(403, reason), number);
            }
            let route = match &p.route {
                Some(PatternRoute {
                    registration: Some(reg),
                    ..
                }) => match self.registration_id(reg, &d.site) {
                    Some(registration) => Route::Trunk {
                        registration,
                        number: number.clone(),
                    },
                    None => Route::refused(503, "Trunk Not Configured"),
                },
                Some(PatternRoute {
                    extension: Some(ext),
                    ..
                }) => self.local(i, d, ext).unwrap_or(Route::NotFound),
                Some(PatternRoute { user: Some(u), .. }) => {
                    self.user(i, d, u).unwrap_or(Route::NotFound)
                }
                _ => self.local(i, d, &number).unwrap_or(Route::NotFound),
            };
            return decided(route, number);
        }
        Decision {
            route: Route::NotFound,
            number: dialled.to_string(),
            caller_id,
            pattern: None,
        }
    }

    /// A registration named in a pattern: `namespace/name`, or a bare name in the site's
    /// namespace.
    fn registration_id(&self, name: &str, site: &str) -> Option<String> {
        let candidates = [
            name.to_string(),
            match site.split_once('/') {
                Some((ns, _)) => format!("{ns}/{name}"),
                None => name.to_string(),
            },
        ];
        candidates.into_iter().find(|c| {
            self.config
                .registrations
                .binary_search_by(|r| r.id.as_str().cmp(c))
                .is_ok()
        })
    }

    /// What a number names inside a site: an extension, a user (by name or extension) or a
    /// device (by SIP user).
    fn local(&self, i: usize, d: &DomainConfig, number: &str) -> Option<Route> {
        let ix = &self.domains[i];
        if let Some(&k) = ix.extensions.get(number) {
            return Some(Route::Extension {
                extension: number.to_string(),
                devices: vec![d.devices[k].id.clone()],
            });
        }
        if let Some(name) = ix.user_extensions.get(number) {
            return self.user(i, d, name);
        }
        if let Some(r) = self.user(i, d, number) {
            return Some(r);
        }
        let k = d
            .devices
            .binary_search_by(|dev| dev.sip_user.as_str().cmp(number))
            .ok()?;
        let dev = &d.devices[k];
        Some(match dev.assignment {
            AssignmentKind::Unassigned => Route::refused(480, "Device is unassigned"),
            AssignmentKind::Site => Route::Extension {
                extension: dev.extension.clone().unwrap_or_else(|| number.to_string()),
                devices: vec![dev.id.clone()],
            },
            AssignmentKind::User if dev.receive_calls => Route::User {
                user: dev.user.clone().unwrap_or_default(),
                devices: vec![dev.id.clone()],
            },
            AssignmentKind::User => Route::refused(480, "Device does not receive calls"),
        })
    }

    fn user(&self, i: usize, d: &DomainConfig, name: &str) -> Option<Route> {
        d.users
            .binary_search_by(|u| u.name.as_str().cmp(name))
            .ok()?;
        let devices: Vec<String> = self.domains[i]
            .users
            .get(name)
            .map(|v| v.iter().map(|&k| d.devices[k].id.clone()).collect())
            .unwrap_or_default();
        Some(if devices.is_empty() {
            Route::refused(480, "User has no device receiving calls")
        } else {
            Route::User {
                user: name.to_string(),
                devices,
            }
        })
    }

    fn upstream(&self, registration: &str) -> Route {
        let Some(reg) = self
            .config
            .registrations
            .iter()
            .find(|r| r.id == registration)
        else {
            return Route::NotFound;
        };
        let Some(target) = &reg.target else {
            return Route::refused(480, "Registration has no target");
        };
        let namespace = reg.id.split_once('/').map_or("", |(ns, _)| ns);
        let qualify = |name: &str| {
            if name.contains('/') || namespace.is_empty() {
                name.to_string()
            } else {
                format!("{namespace}/{name}")
            }
        };
        match target {
            RegistrationTarget {
                device: Some(dev), ..
            } => {
                let id = qualify(dev);
                for (i, d) in self.config.domains.iter().enumerate() {
                    if let Some(dc) = d.devices.iter().find(|x| x.id == id) {
                        return self.local(i, d, &dc.sip_user).unwrap_or(Route::NotFound);
                    }
                }
                Route::NotFound
            }
            RegistrationTarget {
                site: Some(site),
                extension,
                user,
                ..
            } => {
                let site = qualify(site);
                let Some((i, d)) = self
                    .config
                    .domains
                    .iter()
                    .enumerate()
                    .find(|(_, d)| d.site == site)
                else {
                    return Route::NotFound;
                };
                match (extension, user) {
                    (Some(ext), _) => self.local(i, d, ext).unwrap_or(Route::NotFound),
                    (None, Some(u)) => self.user(i, d, u).unwrap_or(Route::NotFound),
                    _ => Route::NotFound,
                }
            }
            _ => Route::NotFound,
        }
    }
}

fn index_domain(d: &DomainConfig) -> DomainIndex {
    let mut ix = DomainIndex::default();
    for (k, dev) in d.devices.iter().enumerate() {
        match dev.assignment {
            AssignmentKind::Site => {
                if let Some(ext) = &dev.extension {
                    ix.extensions.insert(ext.clone(), k);
                }
            }
            AssignmentKind::User if dev.receive_calls => {
                if let Some(u) = &dev.user {
                    ix.users.entry(u.clone()).or_default().push(k);
                }
            }
            _ => {}
        }
    }
    for u in &d.users {
        if let Some(ext) = &u.extension {
            ix.user_extensions.insert(ext.clone(), u.name.clone());
        }
    }
    ix.trusted = d
        .trusted_peers
        .iter()
        .filter_map(|c| parse_cidr(c))
        .collect();
    ix
}

#[cfg(test)]
mod tests;
