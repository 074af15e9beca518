//! The location store: the one place bindings live.
//!
//! Bindings are kept per AOR, the device id (`namespace/name` of the SipDevice), so a device's
//! bindings follow the device through config reloads and are dropped when it is removed.
//!
//! **Two stores.** [`MemoryStore`] keeps bindings in this process (one replica, or replicas
//! that do not share registrations). [`RedisStore`] keeps them in one Redis so several replicas
//! share bindings: any replica can answer a REGISTER or route a call to a phone registered
//! through another, and a restarted replica loses nothing. Its data model is in
//! [`redis`](self::redis).
//!
//! **Why boxed futures.** The Redis store's methods are network round trips, so they are async.
//! The registrar holds the store as `Arc<dyn LocationStore>` (picked at start-up from the
//! options), and `async fn` in traits is not object-safe, so each method returns a
//! [`StoreFuture`] — a boxed future, the same shape `async-trait` generates, without the macro.
//! The allocation per call is noise next to a network round trip, and the in-memory store's
//! futures are ready at once.
//!
//! **Atomic updates.** A REGISTER is decided from the AOR's current bindings, so the store takes
//! the decision as a closure ([`LocationStore::update`]) and runs it under the AOR's lock (memory)
//! or in an optimistic decide-write loop (Redis): the closure decides from the AOR's value as
//! the replica last saw it, and the write is a Lua compare-and-set that applies only if the
//! value is still that one, otherwise it answers the current value and the closure is called
//! again. (`WATCH`/`MULTI` is connection state, unusable on the pipelined connection every
//! caller on a runtime shares.) The closure is therefore `FnMut` and must be a pure function of
//! the bindings it is given.

pub mod memory;
pub mod redis;

use serde::Serialize;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use switchboard_crds::common::Transport;

pub use self::redis::{Connections, Guard, RedisStore, Refusal};
pub use memory::MemoryStore;

/// A future returned by the store.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A store failure (the memory store never fails; a networked one can).
#[derive(Debug, thiserror::Error)]
#[error("location store: {0}")]
pub struct StoreError(pub String);

/// One registered contact of an AOR.
#[derive(Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Binding {
    /// The contact URI.
    pub contact: String,
    /// q-value in thousandths, if the phone gave one.
    pub q: Option<u16>,
    /// When the binding lapses.
    #[serde(serialize_with = "unix_secs")]
    pub expires_at: SystemTime,
    /// When this contact was first bound.
    #[serde(serialize_with = "unix_secs")]
    pub registered_at: SystemTime,
    /// When this contact was last refreshed.
    #[serde(serialize_with = "unix_secs")]
    pub updated_at: SystemTime,
    /// Call-ID of the REGISTER that last wrote it.
    pub call_id: String,
    /// CSeq of the REGISTER that last wrote it.
    pub cseq: u32,
    /// Where that REGISTER came from (after NAT: the packet's source).
    pub source: SocketAddr,
    /// Transport it came over.
    pub transport: Transport,
    /// The phone's User-Agent.
    pub user_agent: Option<String>,
    /// The registrar replica holding the flow (its connection or NAT pinhole).
    pub replica: String,
}

fn unix_secs<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()))
}

impl Clone for Binding {
    fn clone(&self) -> Self {
        Binding {
            contact: self.contact.clone(),
            q: self.q,
            expires_at: self.expires_at,
            registered_at: self.registered_at,
            updated_at: self.updated_at,
            call_id: self.call_id.clone(),
            cseq: self.cseq,
            source: self.source,
            transport: self.transport,
            user_agent: self.user_agent.clone(),
            replica: self.replica.clone(),
        }
    }

    /// Field by field, so a stored binding refreshed in place (`MemoryStore`'s
    /// `clone_from`) keeps its strings' buffers: the derived one allocated every string
    /// afresh and freed the stored ones, blocks long out of the cache.
    /// `from` is taken apart whole, so a field added to `Binding` cannot be left out here.
    fn clone_from(&mut self, from: &Self) {
        let Binding {
            contact,
            q,
            expires_at,
            registered_at,
            updated_at,
            call_id,
            cseq,
            source,
            transport,
            user_agent,
            replica,
        } = from;
        self.contact.clone_from(contact);
        self.q = *q;
        self.expires_at = *expires_at;
        self.registered_at = *registered_at;
        self.updated_at = *updated_at;
        self.call_id.clone_from(call_id);
        self.cseq = *cseq;
        self.source = *source;
        self.transport = *transport;
        self.user_agent.clone_from(user_agent);
        self.replica.clone_from(replica);
    }
}

impl Binding {
    /// Whether the binding is still live at `now`.
    pub fn is_live(&self, now: SystemTime) -> bool {
        self.expires_at > now
    }

    /// Seconds left at `now`, rounded down (0 when lapsed).
    pub fn remaining(&self, now: SystemTime) -> u32 {
        self.expires_at
            .duration_since(now)
            .unwrap_or(Duration::ZERO)
            .as_secs()
            .min(u32::MAX as u64) as u32
    }
}

/// An AOR's bindings before and after an update.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Update {
    /// Live bindings before.
    pub before: Vec<Binding>,
    /// Live bindings after (the same as `before` when the closure changed nothing).
    pub after: Vec<Binding>,
}

/// Bindings that lapsed in a sweep.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expired {
    /// The AOR.
    pub aor: String,
    /// The bindings that lapsed.
    pub expired: Vec<Binding>,
    /// The AOR's bindings still live.
    pub remaining: Vec<Binding>,
}

/// Counts for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// AORs with at least one live binding.
    pub aors: usize,
    /// Live bindings.
    pub bindings: usize,
}

/// The decision run by [`LocationStore::update`]: given the live bindings, the new set, or
/// `None` to leave them as they are.
pub type Decide<'a> = dyn FnMut(&[Binding]) -> Option<Vec<Binding>> + Send + 'a;

/// What [`LocationStore::update_guarded`] did.
#[derive(Debug)]
pub enum Guarded {
    /// The guard passed and the decision was written, the guard's count with it.
    Applied(Update),
    /// The decision wrote nothing, so the guard was not run: the caller still has to check it.
    Unwritten(Update),
    /// The guard refused: nothing written.
    Refused(Refusal),
    /// The store failed before the guard answered (nothing written, unless a write that timed
    /// out was applied after all).
    Unreached(StoreError),
    /// The store does not run guards: nothing decided or written.
    Skipped,
}

/// Where bindings live.
pub trait LocationStore: Send + Sync + 'static {
    /// The live bindings of an AOR.
    fn lookup<'a>(&'a self, aor: &'a str, now: SystemTime) -> StoreFuture<'a, Vec<Binding>>;

    /// Atomically replaces an AOR's bindings with what `decide` returns for the live ones.
    fn update<'a>(
        &'a self,
        aor: &'a str,
        now: SystemTime,
        decide: &'a mut Decide<'_>,
    ) -> StoreFuture<'a, Update>;

    /// [`LocationStore::update`] with `guard` checked in the same atomic write and its count
    /// recorded with it: one round trip where the store is remote. A store that cannot (the
    /// memory one, whose caller keeps the authentication state in memory too) answers
    /// [`Guarded::Skipped`] without deciding or writing.
    fn update_guarded<'a>(
        &'a self,
        aor: &'a str,
        now: SystemTime,
        guard: &'a Guard,
        decide: &'a mut Decide<'_>,
    ) -> StoreFuture<'a, Guarded> {
        let _ = (aor, now, guard, decide);
        Box::pin(std::future::ready(Ok(Guarded::Skipped)))
    }

    /// Removes lapsed bindings and says which went.
    fn expire(&self, now: SystemTime) -> StoreFuture<'_, Vec<Expired>>;

    /// Drops every AOR for which `keep` is false (devices removed from the config); returns how
    /// many AORs went.
    fn retain<'a>(
        &'a self,
        keep: &'a (dyn Fn(&str) -> bool + Send + Sync),
    ) -> StoreFuture<'a, usize>;

    /// All live bindings, by AOR, sorted by AOR.
    fn snapshot(&self, now: SystemTime) -> StoreFuture<'_, Vec<(String, Vec<Binding>)>>;

    /// Counts.
    fn stats(&self, now: SystemTime) -> StoreFuture<'_, StoreStats>;

    /// The Contact this cluster last registered upstream for an outbound registration (a
    /// `SipRegistration`, by `namespace/name`), so a replica taking the registration over can
    /// remove the previous owner's Contact in its first REGISTER.
    fn upstream_contact<'a>(&'a self, registration: &'a str) -> StoreFuture<'a, Option<String>>;

    /// Records (`Some`) or forgets (`None`) that Contact.
    fn set_upstream_contact<'a>(
        &'a self,
        registration: &'a str,
        contact: Option<&'a str>,
    ) -> StoreFuture<'a, ()>;
}
