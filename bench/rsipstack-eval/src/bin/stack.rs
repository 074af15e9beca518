//! `stack`: the same REGISTER + digest logic on rsipstack 0.7's endpoint /
//! server-transaction API over its UDP transport. rsipstack's transport adds
//! `received`/`rport` to the top Via, its endpoint matches retransmissions
//! and keeps the final response for 64*T1 after the transaction is dropped.

use rsipstack::sip::{Header, Method, StatusCode};
use rsipstack::transaction::transaction::Transaction;
use rsipstack::transport::{udp::UdpConnection, TransportLayer};
use rsipstack::EndpointBuilder;
use rsipstack_eval::*;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

struct State {
    users: Users,
    location: Location,
    ok: AtomicU64,
    challenged: AtomicU64,
}

async fn handle(st: Arc<State>, mut tx: Transaction) {
    if tx.original.method != Method::Register {
        tx.reply(StatusCode::MethodNotAllowed).await.ok();
        return;
    }
    let (mut auth, mut to, mut contact, mut expires) = (None, None, None, None);
    for h in tx.original.headers.iter() {
        match h {
            Header::Authorization(v) => auth = Some(v.value().to_string()),
            Header::To(v) => to = Some(v.value().to_string()),
            Header::Contact(v) => contact = Some(v.value().to_string()),
            Header::Expires(v) => expires = Some(v.value().to_string()),
            _ => {}
        }
    }
    // Source address of the request (for the binding / NAT handling).
    let src: SocketAddr = tx
        .connection
        .as_ref()
        .and_then(|c| c.get_remote_addr())
        .and_then(|a| a.get_socketaddr().ok())
        .unwrap_or_else(|| ([0, 0, 0, 0], 0).into());

    match check_auth(&st.users, "REGISTER", auth.as_deref()) {
        AuthResult::Challenge => {
            st.challenged.fetch_add(1, Ordering::Relaxed);
            let h = Header::WwwAuthenticate(www_authenticate_value().into());
            tx.reply_with(StatusCode::Unauthorized, vec![h], None).await.ok();
        }
        AuthResult::Forbidden => {
            tx.reply(StatusCode::Forbidden).await.ok();
        }
        AuthResult::Ok(_user) => {
            let aor = aor_of(to.as_deref().unwrap_or(""));
            let exp_hdr: u32 = expires.and_then(|e| e.trim().parse().ok()).unwrap_or(3600);
            let mut headers = vec![];
            if let Some(c) = contact {
                let exp = contact_expires_param(&c).unwrap_or(exp_hdr).min(3600);
                let uri = contact_uri(&c).to_string();
                headers.push(Header::Contact(format!("<{uri}>;expires={exp}").into()));
                st.location.store(aor, uri, src, exp);
            }
            st.ok.fetch_add(1, Ordering::Relaxed);
            tx.reply_with(StatusCode::OK, headers, None).await.ok();
        }
    }
    // Dropping the transaction detaches it; the endpoint keeps the last
    // response for 64*T1 to answer retransmissions.
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let workers = workers_from_env();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let port = port_from_env(5060);
        let token = CancellationToken::new();
        let transport_layer = TransportLayer::new(token.child_token());
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        // Same socket buffers as `raw`, then hand the socket to rsipstack.
        let sock = {
            use socket2::{Domain, Protocol, Socket, Type};
            let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
            s.set_recv_buffer_size(8 << 20).ok();
            s.set_send_buffer_size(8 << 20).ok();
            s.set_nonblocking(true)?;
            s.bind(&addr.into())?;
            tokio::net::UdpSocket::from_std(s.into())?
        };
        let conn: Arc<dyn rsipstack::platform::net::UdpSocket> = Arc::new(sock);
        // READERS>1 registers the same socket several times so that several
        // rsipstack UDP serve loops read it (an experiment: the endpoint's
        // dispatch loop stays a single task either way).
        let readers: usize = std::env::var("READERS").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
        for _ in 0..readers {
            let udp = UdpConnection::from_socket(conn.clone(), None, Some(token.child_token())).await?;
            transport_layer.add_transport(udp.into());
        }

        let endpoint = EndpointBuilder::new()
            .with_user_agent("switchboard-eval-stack")
            .with_cancel_token(token.clone())
            .with_transport_layer(transport_layer)
            .build();
        let mut incoming = endpoint.incoming_transactions()?;
        let st = Arc::new(State {
            users: Users::new(),
            location: Location::default(),
            ok: AtomicU64::new(0),
            challenged: AtomicU64::new(0),
        });
        eprintln!("stack: listening on udp 127.0.0.1:{port}, {workers} workers");
        let inner = endpoint.inner.clone();
        tokio::spawn(async move { inner.serve().await });
        let st2 = st.clone();
        tokio::spawn(async move {
            while let Some(tx) = incoming.recv().await {
                tokio::spawn(handle(st2.clone(), tx));
            }
        });
        tokio::signal::ctrl_c().await.ok();
        let stats = endpoint.inner.get_stats();
        eprintln!(
            "stack: exit: 200s={} 401s={} bindings={} running_tx={} finished_tx={}",
            st.ok.load(Ordering::Relaxed),
            st.challenged.load(Ordering::Relaxed),
            st.location.len(),
            stats.running_transactions,
            stats.finished_transactions
        );
        token.cancel();
        Ok(())
    })
}
