//! One Redis connection per tokio runtime.
//!
//! A connection ([`Pipe`]) runs its task on the runtime that made it, and every command
//! crosses to that task and back. With Redis, each UDP socket is served on a runtime of its
//! own (a thread, see `transport::udp_thread`): with the connection on the caller's runtime, a
//! REGISTER's datagram, its script call and Redis's answer stay on that thread instead of
//! crossing to another and back (`bench/scale`, "A runtime per UDP socket").

use super::pipe::{Pipe, Timing};
use super::StoreError;
use ::redis::ConnectionInfo;
use std::sync::{Arc, Mutex};
use tokio::runtime::{Handle, Id};

/// Connections to one Redis, one per runtime that uses it, made lazily on first use (cheap to
/// clone: the clones share them).
#[derive(Clone)]
pub struct Connections {
    inner: Arc<Inner>,
}

struct Inner {
    info: ConnectionInfo,
    timing: Timing,
    /// A handful of runtimes at most: the main one and one per UDP socket.
    by_runtime: Mutex<Vec<(Id, Pipe)>>,
}

impl Connections {
    /// Connections to `info`'s Redis; the current runtime's is made now (lazily: this fails
    /// only on an address that cannot be spoken to, never because Redis is down).
    pub(super) fn new(info: ConnectionInfo, timing: Timing) -> Result<Connections, StoreError> {
        let connections = Connections {
            inner: Arc::new(Inner {
                info,
                timing,
                by_runtime: Mutex::new(Vec::new()),
            }),
        };
        connections.get()?;
        Ok(connections)
    }

    /// The connection of the current runtime (made now if it has none).
    pub fn get(&self) -> Result<Pipe, StoreError> {
        let runtime = Handle::try_current()
            .map_err(|e| StoreError(format!("redis: used outside a tokio runtime: {e}")))?
            .id();
        let mut all = self
            .inner
            .by_runtime
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((_, conn)) = all.iter().find(|(id, _)| *id == runtime) {
            return Ok(conn.clone());
        }
        let conn = Pipe::new(self.inner.info.clone(), self.inner.timing)
            .map_err(|e| StoreError(format!("redis: {e}")))?;
        all.push((runtime, conn.clone()));
        Ok(conn)
    }
}
