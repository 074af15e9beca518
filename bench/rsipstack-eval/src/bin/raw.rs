//! `raw`: hand-written UDP REGISTER server on tokio + rsip 0.4.
//!
//! WORKERS tasks share one UDP socket (sipp sends from a single socket, so
//! SO_REUSEPORT groups would not spread its load); each task parses with
//! rsip, answers 401/200 with a hand-built response, and keeps a tiny
//! non-INVITE server-transaction cache (branch -> last response, 32 s,
//! Timer J) so UDP retransmissions are absorbed like rsipstack does.

use rsip::prelude::*;
use rsipstack_eval::*;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::UdpSocket;

const SHARDS: usize = 16;

/// Two-generation cache: entries live 16-32 s (Timer J = 64*T1 = 32 s).
struct TxCache {
    shards: Vec<Mutex<(HashMap<String, Arc<Vec<u8>>>, HashMap<String, Arc<Vec<u8>>>)>>,
}

impl TxCache {
    fn new() -> Self {
        TxCache {
            shards: (0..SHARDS).map(|_| Mutex::new(Default::default())).collect(),
        }
    }
    fn shard(&self, k: &str) -> usize {
        k.bytes().fold(0usize, |a, b| a.wrapping_mul(31).wrapping_add(b as usize)) % SHARDS
    }
    fn get(&self, k: &str) -> Option<Arc<Vec<u8>>> {
        let g = self.shards[self.shard(k)].lock().unwrap();
        g.0.get(k).or_else(|| g.1.get(k)).cloned()
    }
    fn put(&self, k: String, v: Arc<Vec<u8>>) {
        let i = self.shard(&k);
        self.shards[i].lock().unwrap().0.insert(k, v);
    }
    fn rotate(&self) {
        for s in &self.shards {
            let mut g = s.lock().unwrap();
            let cur = std::mem::take(&mut g.0);
            g.1 = cur;
        }
    }
}

struct State {
    users: Users,
    location: Location,
    cache: TxCache,
    ok: AtomicU64,
    challenged: AtomicU64,
}

fn bind(port: u16) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_recv_buffer_size(8 << 20).ok();
    s.set_send_buffer_size(8 << 20).ok();
    s.set_nonblocking(true)?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    s.bind(&addr.into())?;
    UdpSocket::from_std(s.into())
}

/// Returns the response bytes to send (None = drop silently).
fn handle(st: &State, buf: &[u8], src: SocketAddr) -> Option<Arc<Vec<u8>>> {
    let msg = rsip::SipMessage::try_from(buf).ok()?;
    let req = match msg {
        rsip::SipMessage::Request(r) => r,
        rsip::SipMessage::Response(_) => return None,
    };
    if req.method == rsip::Method::Ack {
        return None;
    }
    let mut vias: Vec<&str> = Vec::with_capacity(2);
    let (mut from, mut to, mut call_id, mut cseq) = (None, None, None, None);
    let (mut auth, mut contact, mut expires) = (None, None, None);
    for h in req.headers.iter() {
        match h {
            rsip::Header::Via(v) => vias.push(v.value()),
            rsip::Header::From(v) => from = Some(v.value()),
            rsip::Header::To(v) => to = Some(v.value()),
            rsip::Header::CallId(v) => call_id = Some(v.value()),
            rsip::Header::CSeq(v) => cseq = Some(v.value()),
            rsip::Header::Authorization(v) => auth = Some(v.value()),
            rsip::Header::Contact(v) => contact = Some(v.value()),
            rsip::Header::Expires(v) => expires = Some(v.value()),
            _ => {}
        }
    }
    let (top_via, from, to, call_id, cseq) = (*vias.first()?, from?, to?, call_id?, cseq?);
    let branch = top_via
        .split(';')
        .find_map(|p| p.trim().strip_prefix("branch="))
        .unwrap_or("");
    let key = format!("{branch}|{}", req.method);
    if let Some(cached) = st.cache.get(&key) {
        return Some(cached); // retransmission: replay the final response
    }

    let (status, extra) = if req.method != rsip::Method::Register {
        ("405 Method Not Allowed", "Allow: REGISTER\r\n".to_string())
    } else {
        match check_auth(&st.users, "REGISTER", auth) {
            AuthResult::Challenge => {
                st.challenged.fetch_add(1, Ordering::Relaxed);
                (
                    "401 Unauthorized",
                    format!("WWW-Authenticate: {}\r\n", www_authenticate_value()),
                )
            }
            AuthResult::Forbidden => ("403 Forbidden", String::new()),
            AuthResult::Ok(_user) => {
                let aor = aor_of(to);
                let exp_hdr: u32 = expires.and_then(|e| e.trim().parse().ok()).unwrap_or(3600);
                let mut extra = String::new();
                if let Some(c) = contact {
                    let exp = contact_expires_param(c).unwrap_or(exp_hdr).min(3600);
                    let uri = contact_uri(c).to_string();
                    extra = format!("Contact: <{uri}>;expires={exp}\r\n");
                    st.location.store(aor, uri, src, exp);
                }
                st.ok.fetch_add(1, Ordering::Relaxed);
                ("200 OK", extra)
            }
        }
    };

    let mut out = String::with_capacity(512);
    out.push_str("SIP/2.0 ");
    out.push_str(status);
    out.push_str("\r\n");
    for (i, v) in vias.iter().enumerate() {
        out.push_str("Via: ");
        if i == 0 {
            out.push_str(&via_with_received(v, src));
        } else {
            out.push_str(v);
        }
        out.push_str("\r\n");
    }
    out.push_str("From: ");
    out.push_str(from);
    out.push_str("\r\nTo: ");
    out.push_str(to);
    if !to.contains(";tag=") {
        out.push_str(";tag=");
        out.push_str(&format!("{:016x}", fastrand_u64()));
    }
    out.push_str("\r\nCall-ID: ");
    out.push_str(call_id);
    out.push_str("\r\nCSeq: ");
    out.push_str(cseq);
    out.push_str("\r\n");
    out.push_str(&extra);
    out.push_str("Server: switchboard-eval-raw\r\nContent-Length: 0\r\n\r\n");
    let bytes = Arc::new(out.into_bytes());
    st.cache.put(key, bytes.clone());
    Some(bytes)
}

fn fastrand_u64() -> u64 {
    use std::cell::Cell;
    thread_local!(static S: Cell<u64> = Cell::new(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
            ^ (&S as *const _ as u64)));
    S.with(|s| {
        let mut x = s.get() | 1;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        x
    })
}

fn main() -> std::io::Result<()> {
    let workers = workers_from_env();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let port = port_from_env(5060);
        let sock = Arc::new(bind(port)?);
        let st = Arc::new(State {
            users: Users::new(),
            location: Location::default(),
            cache: TxCache::new(),
            ok: AtomicU64::new(0),
            challenged: AtomicU64::new(0),
        });
        eprintln!("raw: listening on udp 127.0.0.1:{port}, {workers} workers");
        for _ in 0..workers {
            let (sock, st) = (sock.clone(), st.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                loop {
                    let Ok((n, src)) = sock.recv_from(&mut buf).await else {
                        continue;
                    };
                    if let Some(resp) = handle(&st, &buf[..n], src) {
                        let _ = sock.send_to(&resp, src).await;
                    }
                }
            });
        }
        let st2 = st.clone();
        tokio::spawn(async move {
            let mut iv = tokio::time::interval(Duration::from_secs(16));
            iv.tick().await;
            loop {
                iv.tick().await;
                st2.cache.rotate();
            }
        });
        tokio::signal::ctrl_c().await.ok();
        eprintln!(
            "raw: exit: 200s={} 401s={} bindings={}",
            st.ok.load(Ordering::Relaxed),
            st.challenged.load(Ordering::Relaxed),
            st.location.len()
        );
        Ok(())
    })
}
