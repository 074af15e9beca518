//! The liveness probe: a SIP OPTIONS to every member every [`super::PROBE_INTERVAL`] from a
//! socket of its own; any response from a member's address counts as alive. SIP rather than
//! the HTTP health port because it proves the very path calls take between replicas.

use super::Cluster;
use std::net::SocketAddr;
use std::time::Instant;
use tokio::net::UdpSocket;
use tokio::sync::watch;

/// The OPTIONS sent to `to`.
fn options(me: &str, local: SocketAddr, to: SocketAddr, seq: u64) -> String {
    let branch = format!("z9hG4bK-sbprobe-{seq:x}-{:08x}", rand::random::<u32>());
    format!(
        "OPTIONS sip:{to} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch={branch};rport\r\n\
         Max-Forwards: 1\r\n\
         From: <sip:switchboard-probe@{local}>;tag={me}\r\n\
         To: <sip:{to}>\r\n\
         Call-ID: sbprobe-{seq:x}-{me}\r\n\
         CSeq: {seq} OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// Probes the cluster's members until `shutdown` turns true. `bind` is the local address of
/// the probe socket (port 0); the cluster is settled once the first round had its chance to
/// be answered.
pub async fn run(cluster: Cluster, bind: SocketAddr, mut shutdown: watch::Receiver<bool>) {
    let socket = match UdpSocket::bind(bind).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(%bind, error = %e, "cannot bind the cluster probe socket: siblings will look dead");
            cluster.settle();
            return;
        }
    };
    let local = socket.local_addr().unwrap_or(bind);
    let mut tick = tokio::time::interval(super::PROBE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq: u64 = 0;
    let mut buf = vec![0u8; 4096];
    loop {
        tokio::select! {
            _ = crate::transport::shutdown_requested(&mut shutdown) => return,
            _ = tick.tick() => {
                let now = Instant::now();
                cluster.refresh(now);
                // The first round was sent one interval ago and had that long to be answered.
                if seq > 0 && !cluster.is_settled() {
                    cluster.settle();
                    tracing::info!(live = ?cluster.live_replicas(), "cluster membership settled");
                }
                seq += 1;
                for to in cluster.addresses() {
                    let msg = options(cluster.me(), local, to, seq);
                    if let Err(e) = socket.send_to(msg.as_bytes(), to).await {
                        tracing::debug!(%to, error = %e, "cluster probe not sent");
                    }
                }
            }
            r = socket.recv_from(&mut buf) => {
                if let Ok((n, from)) = r {
                    if buf[..n].starts_with(b"SIP/2.0 ") {
                        cluster.answered(crate::transport::nat::canonical(from), Instant::now());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_is_a_request_the_registrar_parses() {
        let msg = options(
            "r1",
            "127.0.0.1:40000".parse().unwrap(),
            "127.0.0.2:5060".parse().unwrap(),
            3,
        );
        match crate::message::parse(msg.as_bytes()) {
            Ok(crate::message::Parsed::Request(r)) => {
                assert_eq!(r.method, crate::message::Method::Options);
                assert_eq!(r.cseq().unwrap().0, 3);
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_member_that_answers_is_live_and_one_that_stops_is_not() {
        // A fake member that answers every request with a 200.
        let member = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = member.local_addr().unwrap();
        let (stop_member, mut stopped) = watch::channel(false);
        let answering = tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            loop {
                tokio::select! {
                    _ = crate::transport::shutdown_requested(&mut stopped) => return,
                    r = member.recv_from(&mut buf) => {
                        let (_, from) = r.unwrap();
                        member.send_to(b"SIP/2.0 200 OK\r\n\r\n", from).await.unwrap();
                    }
                }
            }
        });
        let cluster = Cluster::new("r1");
        cluster.set_members(&[("r2".into(), addr)]);
        let (tx, rx) = watch::channel(false);
        let prober = tokio::spawn(run(cluster.clone(), "127.0.0.1:0".parse().unwrap(), rx));
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        while !(cluster.is_settled() && cluster.peer("r2").is_some_and(|p| p.1)) {
            assert!(Instant::now() < deadline, "r2 never became live");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        stop_member.send(true).unwrap();
        answering.await.unwrap();
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        while cluster.peer("r2").is_some_and(|p| p.1) {
            assert!(Instant::now() < deadline, "r2 never became dead");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        tx.send(true).unwrap();
        prober.await.unwrap();
    }
}
