//! The authentication state shared through Redis: the Redis state against the same
//! conformance suite as the memory one, then two registrar replicas on one `redis-server`
//! where a REGISTER captured on its way to one replica is refused when replayed to the other,
//! and a (source, user) blocked by one replica is blocked on the other.
//!
//! `redis-server` must be installed (`scripts/install-test-deps.sh`); a missing one fails.

mod common;

use common::bindings::{add, contacts};
use common::{
    authorization, header_values, password, register_request, status_of, wait_until, RedisServer,
    Replica, ReplicaSpec, UdpClient, DEMO_CONFIG, DOMAIN,
};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use switchboard_registrar::auth::limiter::LimiterSettings;
use switchboard_registrar::auth::limiter::{PairKey, Scope};
use switchboard_registrar::auth::nonce::NonceKey;
use switchboard_registrar::auth::redis::RedisAuthState;
use switchboard_registrar::auth::state::conformance;
use switchboard_registrar::auth::state::{Admission, AuthState};
use switchboard_registrar::location::{Guard, Guarded, LocationStore, RedisStore};

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
    let a = RedisAuthState::new(store.connections(), "conform", limits, ttl);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    conformance(&a, &limits, now).await;
    // Another replica's state on the same Redis sees the same records.
    let b = RedisAuthState::new(store.connections(), "conform", limits, ttl);
    let pair = switchboard_registrar::auth::limiter::PairKey {
        source: "192.0.2.7".parse().unwrap(),
        user: "alice".into(),
        known: true,
    };
    use switchboard_registrar::auth::state::{Admission, AuthState};
    let nonce = NonceKey::from_config(NONCE_KEY).issue("a.test", now / 1000, a.salt());
    assert_eq!(
        b.admit(&pair, &nonce, 1, now + 1).await.unwrap(),
        Admission::Blocked(switchboard_registrar::auth::limiter::Scope::Pair)
    );
    assert_eq!(
        a.admit(&pair, &nonce, 1, now + 20_000).await.unwrap(),
        Admission::Admitted
    );
    assert_eq!(
        b.admit(&pair, &nonce, 1, now + 20_000).await.unwrap(),
        Admission::Replay,
        "nc 1 on the nonce was recorded through the other state"
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

/// User 1001's REGISTER (Call-ID `call_id`, CSeq 2) answering the challenge its first one got.
fn answered_register(phone: &UdpClient, call_id: &str) -> String {
    let first = phone.exchange(&register_request(
        "UDP",
        &phone.local,
        "1001",
        1,
        call_id,
        "",
    ));
    assert_eq!(status_of(&first), 401, "{first}");
    let challenge = header_values(&first, "WWW-Authenticate")[0].to_string();
    let auth = authorization(
        &challenge,
        "1001",
        &password("1001"),
        &format!("sip:{DOMAIN}"),
        1,
    );
    register_request("UDP", &phone.local, "1001", 2, call_id, &auth)
}

#[test]
fn a_captured_register_replayed_to_another_replica_is_refused() {
    let redis = RedisServer::start("redis-auth-replay");
    let (a, b) = two_replicas(&redis);
    let phone = UdpClient::new(a.spec.sip_addr());
    let register = answered_register(&phone, "cap");
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
fn a_retransmitted_register_is_answered_from_the_bindings_in_redis() {
    let redis = RedisServer::start("redis-auth-retransmit");
    let (a, _b) = two_replicas(&redis);
    let phone = UdpClient::new(a.spec.sip_addr());
    let register = answered_register(&phone, "rt");
    let ok = phone.exchange(&register);
    assert_eq!(status_of(&ok), 200, "{ok}");
    // The 200 was lost: the phone sends the same request again. The transaction cache keeps
    // no copy of a 200; the answer lists the bindings read back from Redis, and the nonce-count
    // is not taken for a replay.
    let again = phone.exchange(&register);
    assert_eq!(status_of(&again), 200, "{again}");
    let contacts = header_values(&again, "Contact");
    assert_eq!(contacts.len(), 1, "{again}");
    assert!(contacts[0].contains(&phone.local), "{again}");
    assert_eq!(header_values(&again, "To"), header_values(&ok, "To"));
    assert_eq!(a.registrar.metric("sip_retransmissions_total"), 1.0);
    assert_eq!(
        a.registrar
            .metric("sip_auth_failures_total{reason=\"replay\"}"),
        0.0
    );
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

/// `store` adds `contact` to `ns/x` behind `guard`.
async fn guarded(store: &RedisStore, guard: &Guard, contact: &str, now: SystemTime) -> Guarded {
    store
        .update_guarded("ns/x", now, guard, &mut add(contact, now))
        .await
        .unwrap()
}

/// The nonce-count recorded for `nonce` under the prefix `sb`.
fn nc_of(redis: &RedisServer, nonce: &str) -> u64 {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_connection().unwrap();
    redis::cmd("GET")
        .arg(format!("sb:nc:{nonce}"))
        .query(&mut conn)
        .unwrap()
}

/// The admission of a REGISTER rides in its bindings write: one `EVALSHA` for a refresh; a
/// replayed nonce-count or a blocked pair refused with nothing written; a compare-and-set
/// conflict retried without taking its own nonce-count for a replay.
#[tokio::test]
async fn the_admission_guards_the_bindings_write() {
    let redis = RedisServer::start("redis-auth-guard");
    let a = RedisStore::connect(&redis.url(), "sb").await.unwrap();
    let b = RedisStore::connect(&redis.url(), "sb").await.unwrap();
    let limits = LimiterSettings {
        pair_failures: 3,
        cooldown: Duration::from_secs(10),
        ..Default::default()
    };
    let state = RedisAuthState::new(a.connections(), "sb", limits, Duration::from_secs(300));
    let pair = PairKey {
        source: "192.0.2.7".parse().unwrap(),
        user: "alice".into(),
        known: true,
    };
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let now = UNIX_EPOCH + Duration::from_millis(now_ms);
    let guard = |nc| {
        state
            .guard(&pair, "n1", nc, now_ms)
            .expect("a Redis state guards")
    };
    let applied = |g: Guarded| match g {
        Guarded::Applied(u) => contacts(&u.after)
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>(),
        other => panic!("not applied: {other:?}"),
    };

    assert_eq!(
        applied(guarded(&a, &guard(1), "sip:x@1", now).await),
        ["sip:x@1"]
    );
    assert_eq!(redis.command("CONFIG RESETSTAT").unwrap(), "+OK");
    assert_eq!(
        applied(guarded(&a, &guard(2), "sip:x@1", now).await),
        ["sip:x@1"]
    );
    let calls = redis.command_calls().await;
    // One EVALSHA: the admission's GET of the nonce-count and the bindings' GET inside it.
    assert_eq!(calls.get("evalsha"), Some(&1), "{calls:?}");
    assert_eq!(calls.get("get"), Some(&2), "{calls:?}");
    assert_eq!(nc_of(&redis, "n1"), 2);

    // The same nonce-count again: refused, nothing written.
    match guarded(&a, &guard(2), "sip:x@9", now).await {
        Guarded::Refused(r) => assert_eq!(Admission::from(r), Admission::Replay),
        other => panic!("a replay was let through: {other:?}"),
    }
    assert_eq!(contacts(&b.lookup("ns/x", now).await.unwrap()), ["sip:x@1"]);

    // Another replica writes the AOR: a's guess conflicts, the retry runs the guard again
    // and is not refused as a replay of its own count.
    let mut other = add("sip:x@2", now);
    b.update("ns/x", now, &mut other).await.unwrap();
    assert_eq!(
        applied(guarded(&a, &guard(3), "sip:x@3", now).await),
        ["sip:x@1", "sip:x@2", "sip:x@3"]
    );
    assert_eq!(nc_of(&redis, "n1"), 3);

    // A blocked pair: refused, the count not recorded.
    for _ in 0..3 {
        state.fail(&pair, now_ms).await.unwrap();
    }
    match guarded(&a, &guard(4), "sip:x@4", now).await {
        Guarded::Refused(r) => assert_eq!(Admission::from(r), Admission::Blocked(Scope::Pair)),
        other => panic!("a blocked pair was let through: {other:?}"),
    }
    assert_eq!(nc_of(&redis, "n1"), 3);
    assert_eq!(contacts(&b.lookup("ns/x", now).await.unwrap()).len(), 3);
}

/// Through a registrar: a REGISTER refreshing its binding on the nonce it already holds costs
/// one round trip to Redis (one `EVALSHA`: admission and bindings together), and replaying it
/// is still re-challenged.
#[test]
fn a_refresh_register_is_one_round_trip() {
    let redis = RedisServer::start("redis-auth-one-trip");
    let (a, _b) = two_replicas(&redis);
    let phone = UdpClient::new(a.spec.sip_addr());
    let first = phone.exchange(&register_request(
        "UDP",
        &phone.local,
        "1001",
        1,
        "trip",
        "",
    ));
    assert_eq!(status_of(&first), 401, "{first}");
    let challenge = header_values(&first, "WWW-Authenticate")[0].to_string();
    let uri = format!("sip:{DOMAIN}");
    let signed = |nc: u32, cseq: u32| {
        let auth = authorization(&challenge, "1001", &password("1001"), &uri, nc);
        register_request("UDP", &phone.local, "1001", cseq, "trip", &auth)
    };
    assert_eq!(status_of(&phone.exchange(&signed(1, 2))), 200);

    let rt = tokio::runtime::Runtime::new().unwrap();
    assert_eq!(redis.command("CONFIG RESETSTAT").unwrap(), "+OK");
    let refresh = signed(2, 3);
    let answer = phone.exchange(&refresh);
    assert_eq!(status_of(&answer), 200, "{answer}");
    // The sweepers' reads run meanwhile; none of them is a script call.
    let calls = rt.block_on(redis.command_calls());
    assert_eq!(calls.get("evalsha"), Some(&1), "{calls:?}");
    assert_eq!(calls.get("eval"), None, "{calls:?}");

    let replay = refresh.replace("z9hG4bK-trip-3", "z9hG4bK-trip-replayed");
    assert_ne!(replay, refresh, "a new branch");
    let answer = phone.exchange(&replay);
    assert_eq!(status_of(&answer), 401, "{answer}");
    assert_eq!(
        a.registrar
            .metric("sip_auth_failures_total{reason=\"replay\"}"),
        1.0
    );
}
