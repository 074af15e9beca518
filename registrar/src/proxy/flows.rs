//! The open TCP/TLS connections ("flows") by peer address, so the proxy can send into a
//! connection another task reads: each connection task registers a channel here and writes
//! whatever arrives on it; the [`FlowGuard`] removes the entry when the connection ends.

use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use switchboard_crds::common::Transport;
use tokio::sync::mpsc;

/// Messages a connection may have queued before sends to it fail.
pub const FLOW_QUEUE: usize = 256;

struct Flow {
    id: u64,
    transport: Transport,
    tx: mpsc::Sender<Bytes>,
}

#[derive(Default)]
struct Table {
    map: Mutex<HashMap<SocketAddr, Flow>>,
    next: AtomicU64,
}

/// The flow table; cheap to clone.
#[derive(Clone, Default)]
pub struct Flows {
    table: Arc<Table>,
}

/// Keeps a flow registered; dropping it removes the flow (unless a newer connection from the
/// same address replaced it).
pub struct FlowGuard {
    table: Arc<Table>,
    peer: SocketAddr,
    id: u64,
}

impl Drop for FlowGuard {
    fn drop(&mut self) {
        let mut map = self.table.map.lock();
        if map.get(&self.peer).is_some_and(|f| f.id == self.id) {
            map.remove(&self.peer);
        }
    }
}

impl Flows {
    /// Registers a connection from `peer`; returns the guard and the channel of messages to
    /// write into it.
    pub fn open(
        &self,
        peer: SocketAddr,
        transport: Transport,
    ) -> (FlowGuard, mpsc::Receiver<Bytes>) {
        let peer = crate::transport::nat::canonical(peer);
        let (tx, rx) = mpsc::channel(FLOW_QUEUE);
        let id = self.table.next.fetch_add(1, Ordering::Relaxed);
        self.table
            .map
            .lock()
            .insert(peer, Flow { id, transport, tx });
        (
            FlowGuard {
                table: self.table.clone(),
                peer,
                id,
            },
            rx,
        )
    }

    /// The transport of the open flow to `peer`, if any.
    pub fn transport_of(&self, peer: SocketAddr) -> Option<Transport> {
        self.table.map.lock().get(&peer).map(|f| f.transport)
    }

    /// Queues `data` for the flow to `peer`; false when there is none or it is full.
    pub fn send(&self, peer: SocketAddr, data: Bytes) -> bool {
        let tx = self.table.map.lock().get(&peer).map(|f| f.tx.clone());
        tx.is_some_and(|tx| tx.try_send(data).is_ok())
    }

    /// Number of open flows.
    pub fn len(&self) -> usize {
        self.table.map.lock().len()
    }

    /// Whether no flow is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn send_reaches_the_registered_flow_until_it_closes() {
        let flows = Flows::default();
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let (guard, mut rx) = flows.open(peer, Transport::Tcp);
        assert_eq!(flows.transport_of(peer), Some(Transport::Tcp));
        assert!(flows.send(peer, Bytes::from_static(b"x")));
        assert_eq!(rx.recv().await.unwrap(), Bytes::from_static(b"x"));
        // A newer connection from the same address replaces it; the old guard leaves it be.
        let (newer, _rx2) = flows.open(peer, Transport::Tls);
        drop(guard);
        assert_eq!(flows.transport_of(peer), Some(Transport::Tls));
        drop(newer);
        assert!(flows.is_empty());
        assert!(!flows.send(peer, Bytes::new()));
    }
}
