//! The authentication state shared through Redis: the Redis state against the same
//! conformance suite as the memory one, then two registrar replicas on one `redis-server`
//! where a REGISTER captured on its way to one replica is refused when replayed to the other,
//! and a (source, user) blocked by one replica is blocked on the other.
//!
//! `redis-server` must be installed (`scripts/install-test-deps.sh`); a missing one fails.

mod common;

use common::{
    authorization, header_values, password, register_request, status_of, wait_until, RedisServer,
    Replica, ReplicaSpec, UdpClient, DEMO_CONFIG, DOMAIN,
};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use switchboard_registrar::auth::limiter::LimiterSettings;
use switchboard_registrar::auth::redis::RedisAuthState;
use switchboard_registrar::auth::state::conformance;
use switchboard_registrar::location::RedisStore;

const NONCE_KEY: &str = "00112233445566778899aabbccddeeff";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_auth_state_conforms_and_is_shared() {
    let redis = RedisServer::start("redis-auth-conform");
    let store = RedisStore::connect(&redis.url(), "conform").await.unwrap();
    let limits = LimiterSettings {
        pair_failures: 3,
        cooldown: Duration::from_secs(10),
        ..Default::default()
    };
    let ttl = Duration::from_secs(300);
    let a = RedisAuthState::new(store.connection(), "conform", limits, ttl);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    conformance(&a, &limits, now).await;
    // Another replica's state on the same Redis sees the same records.
    let b = RedisAuthState::new(store.connection(), "conform", limits, ttl);
    let pair = switchboard_registrar::auth::limiter::PairKey {
        source: "192.0.2.7".parse().unwrap(),
        user: "alice".into(),
        known: true,
    };
    use switchboard_registrar::auth::state::{Admission, AuthState};
    assert_eq!(
        b.admit(&pair, "n1", 2, now + 1).await.unwrap(),
        Admission::Blocked(switchboard_registrar::auth::limiter::Scope::Pair)
    );
    assert_eq!(
        b.admit(&pair, "n1", 2, now + 20_000).await.unwrap(),
        Admission::Replay,
        "nc 2 on n1 was recorded through the other state"
    );
    // Records expire with the keys: nothing outlives its use by more than the limits say.
    let ttl_ms: i64 = redis
        .command("PTTL conform:auth:src:192.0.2.7")
        .and_then(|r| r.trim_start_matches(':').parse().ok())
        .unwrap();
    assert!(ttl_ms > 0, "the source record has a TTL");
}

/// Two replicas on one Redis, sharing the demo config and its nonce key.
fn two_replicas(redis: &RedisServer) -> (Replica, Replica) {
    let config = DEMO_CONFIG.replacen(
        "hash: \"\"\n",
        &format!("hash: \"\"\nnonceKey: \"{NONCE_KEY}\"\n"),
        1,
    );
    let spec = |name: &str, ip: &str| {
        let mut s = ReplicaSpec::new(name, ip);
        s.config = Some(config.clone());
        s.args = vec![
            "--redis-url".into(),
            redis.url(),
            "--auth-failure-limit".into(),
            "3".into(),
        ];
        s
    };
    (
        Replica::start(spec("a", "127.0.0.2")),
        Replica::start(spec("b", "127.0.0.3")),
    )
}

#[test]
fn a_captured_register_replayed_to_another_replica_is_refused() {
    let redis = RedisServer::start("redis-auth-replay");
    let (a, b) = two_replicas(&redis);
    let phone = UdpClient::new(a.spec.sip_addr());
    let first = phone.exchange(&register_request("UDP", &phone.local, "1001", 1, "cap", ""));
    assert_eq!(status_of(&first), 401, "{first}");
    let challenge = header_values(&first, "WWW-Authenticate")[0].to_string();
    let auth = authorization(
        &challenge,
        "1001",
        &password("1001"),
        &format!("sip:{DOMAIN}"),
        1,
    );
    let register = register_request("UDP", &phone.local, "1001", 2, "cap", &auth);
    assert_eq!(status_of(&phone.exchange(&register)), 200);

    // An attacker who captured it sends it to the other replica (from its own address; the
    // branch changed so that no transaction cache could answer it from memory).
    let attacker = UdpClient::new(b.spec.sip_addr());
    let replay = register.replace("z9hG4bK-cap-2", "z9hG4bK-replayed");
    let answer = attacker.exchange(&replay);
    assert_eq!(
        status_of(&answer),
        401,
        "replay must be re-challenged: {answer}"
    );
    assert_eq!(
        b.registrar
            .metric("sip_auth_failures_total{reason=\"replay\"}"),
        1.0
    );
    // And the same to the first replica.
    let again = UdpClient::new(a.spec.sip_addr()).exchange(&replay.replace("replayed", "again"));
    assert_eq!(status_of(&again), 401, "{again}");
}

#[test]
fn a_pair_blocked_through_one_replica_is_blocked_on_the_other() {
    let redis = RedisServer::start("redis-auth-block");
    let (a, b) = two_replicas(&redis);
    for i in 0..3 {
        let client = UdpClient::new(a.spec.sip_addr());
        let answer = client.register("1001", "wrong", &format!("guess-{i}"), "");
        assert_eq!(status_of(&answer), 403, "{answer}");
    }
    // The right password, through the other replica: still blocked.
    let client = UdpClient::new(b.spec.sip_addr());
    let answer = client.register("1001", &password("1001"), "right", "");
    assert_eq!(status_of(&answer), 403, "{answer}");
    // Its neighbour on the same address is not.
    let answer = client.register("1002", &password("1002"), "neighbour", "");
    assert_eq!(status_of(&answer), 200, "{answer}");
    // Both replicas count the block (the gauge reads Redis).
    for r in [&a, &b] {
        wait_until("the blocked pair in the gauge", || {
            (r.registrar.metric("sip_auth_blocked{scope=\"pair\"}") == 1.0).then_some(())
        });
    }
}
