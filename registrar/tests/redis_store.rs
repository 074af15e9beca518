//! The location stores against one conformance suite, and the Redis store against a real
//! `redis-server` (the harness's [`RedisServer`], on a free port, killed on drop): two replicas contending for one
//! AOR, concurrent sweeps, a restarted replica, and Redis going away and coming back.
//!
//! `redis-server` must be installed (`scripts/install-test-deps.sh`); a missing one fails.

mod common;

use common::bindings::{add, binding, contacts};
use common::RedisServer;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use switchboard_registrar::location::{
    Binding, Expired, LocationStore, MemoryStore, RedisStore, StoreStats,
};

/// A fixed, whole-second instant: stored times keep milliseconds only.
fn epoch() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

/// The current time in whole milliseconds (the precision the Redis store keeps).
fn now_ms() -> SystemTime {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    UNIX_EPOCH + Duration::from_millis(d.as_millis() as u64)
}

/// What every store must do.
async fn conformance(s: &dyn LocationStore) {
    let t = epoch();
    let secs = |n| t + Duration::from_secs(n);
    assert!(s.lookup("ns/a", t).await.unwrap().is_empty());

    let a = vec![binding("sip:a@1", t, 10), binding("sip:a@2", t, 100)];
    let u = s
        .update("ns/a", t, &mut |cur: &[Binding]| {
            assert!(cur.is_empty());
            Some(a.clone())
        })
        .await
        .unwrap();
    assert!(u.before.is_empty());
    assert_eq!(u.after, a);
    assert_eq!(s.lookup("ns/a", t).await.unwrap(), a);
    // A lapsed binding is never returned, even before a sweep.
    assert_eq!(
        contacts(&s.lookup("ns/a", secs(10)).await.unwrap()),
        ["sip:a@2"]
    );
    assert_eq!(
        s.stats(t).await.unwrap(),
        StoreStats {
            aors: 1,
            bindings: 2
        }
    );

    // No change.
    let u = s
        .update("ns/a", t, &mut |_: &[Binding]| None)
        .await
        .unwrap();
    assert_eq!(u.before, a);
    assert_eq!(u.after, a);

    let b = vec![binding("sip:b@1", t, 10)];
    let c = vec![binding("sip:c@1", t, 100)];
    s.update("ns/c", t, &mut |_: &[Binding]| Some(c.clone()))
        .await
        .unwrap();
    s.update("ns/b", t, &mut |_: &[Binding]| Some(b.clone()))
        .await
        .unwrap();
    let snap = s.snapshot(t).await.unwrap();
    let aors: Vec<&str> = snap.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(aors, ["ns/a", "ns/b", "ns/c"]);
    assert_eq!(snap[0].1, a);
    let snap = s.snapshot(secs(50)).await.unwrap();
    assert_eq!(
        snap,
        vec![
            ("ns/a".to_string(), vec![a[1].clone()]),
            ("ns/c".to_string(), c.clone())
        ]
    );

    // The sweep reports lapsed and remaining bindings, once.
    let gone = s.expire(secs(50)).await.unwrap();
    assert_eq!(
        gone,
        vec![
            Expired {
                aor: "ns/a".into(),
                expired: vec![a[0].clone()],
                remaining: vec![a[1].clone()],
            },
            Expired {
                aor: "ns/b".into(),
                expired: b.clone(),
                remaining: vec![],
            },
        ]
    );
    assert!(s.expire(secs(50)).await.unwrap().is_empty());
    assert_eq!(
        s.stats(secs(50)).await.unwrap(),
        StoreStats {
            aors: 2,
            bindings: 2
        }
    );

    // Removing the last binding removes the AOR.
    let u = s
        .update("ns/c", secs(50), &mut |_: &[Binding]| Some(vec![]))
        .await
        .unwrap();
    assert_eq!(u.before, c);
    assert!(u.after.is_empty());
    assert!(s.lookup("ns/c", secs(50)).await.unwrap().is_empty());
    assert_eq!(
        s.stats(secs(50)).await.unwrap(),
        StoreStats {
            aors: 1,
            bindings: 1
        }
    );

    // Retain drops AORs of removed devices.
    s.update("ns/d", secs(50), &mut |_: &[Binding]| {
        Some(vec![binding("sip:d@1", secs(50), 100)])
    })
    .await
    .unwrap();
    assert_eq!(s.retain(&|aor: &str| aor != "ns/d").await.unwrap(), 1);
    let snap = s.snapshot(secs(50)).await.unwrap();
    assert_eq!(snap, vec![("ns/a".to_string(), vec![a[1].clone()])]);
    assert_eq!(
        s.stats(secs(50)).await.unwrap(),
        StoreStats {
            aors: 1,
            bindings: 1
        }
    );

    // The upstream Contact of an outbound registration.
    assert_eq!(s.upstream_contact("ns/trunk").await.unwrap(), None);
    s.set_upstream_contact("ns/trunk", Some("<sip:sb@10.0.0.1>"))
        .await
        .unwrap();
    assert_eq!(
        s.upstream_contact("ns/trunk").await.unwrap().as_deref(),
        Some("<sip:sb@10.0.0.1>")
    );
    s.set_upstream_contact("ns/trunk", None).await.unwrap();
    assert_eq!(s.upstream_contact("ns/trunk").await.unwrap(), None);
}

#[tokio::test]
async fn memory_store_conforms() {
    conformance(&MemoryStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_conforms() {
    let redis = RedisServer::start("redis-conform");
    let s = RedisStore::connect(&redis.url(), "conform").await.unwrap();
    conformance(&s).await;

    // A key that outlived its TTL (no sweeper ran in time): the sweep drops its expiry entry
    // and count, reporting nothing (the bindings are gone).
    let t = epoch();
    s.update("ns/z", t, &mut |_: &[Binding]| {
        Some(vec![binding("sip:z@1", t, 10)])
    })
    .await
    .unwrap();
    assert_eq!(s.stats(t).await.unwrap().aors, 2);
    assert_eq!(redis.command("DEL conform:aor:ns/z").unwrap(), ":1");
    assert!(s
        .expire(t + Duration::from_secs(60))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        s.stats(t).await.unwrap(),
        StoreStats {
            aors: 1,
            bindings: 1
        }
    );
    assert_eq!(redis.command("ZCARD conform:expiry").unwrap(), ":1");

    // A second prefix on the same server is a separate store.
    let other = RedisStore::connect(&redis.url(), "other").await.unwrap();
    assert!(other.snapshot(epoch()).await.unwrap().is_empty());
}

/// A replica decides from the value it last saw and writes it with one script call; a value
/// another replica wrote meanwhile comes back with the failed compare-and-set and is decided
/// from, and a decision that writes nothing reads first.
#[tokio::test]
async fn one_round_trip_per_refresh_and_stale_guesses_corrected() {
    let redis = RedisServer::start("redis-guess");
    let a = RedisStore::connect(&redis.url(), "sb").await.unwrap();
    let b = RedisStore::connect(&redis.url(), "sb").await.unwrap();
    let now = now_ms();
    a.update("ns/x", now, &mut add("sip:x@1", now))
        .await
        .unwrap();

    assert_eq!(redis.command("CONFIG RESETSTAT").unwrap(), "+OK");
    let u = a
        .update("ns/x", now, &mut add("sip:x@1", now))
        .await
        .unwrap();
    assert_eq!(contacts(&u.before), ["sip:x@1"]);
    let calls = redis.command_calls().await;
    // One EVALSHA; its script's own GET is the only read.
    assert_eq!(calls.get("evalsha"), Some(&1), "{calls:?}");
    assert_eq!(calls.get("get"), Some(&1), "{calls:?}");

    b.update("ns/x", now, &mut add("sip:x@2", now))
        .await
        .unwrap();
    let q = a
        .update("ns/x", now, &mut |_: &[Binding]| None)
        .await
        .unwrap();
    assert_eq!(contacts(&q.after), ["sip:x@1", "sip:x@2"]);
    b.update("ns/x", now, &mut add("sip:x@3", now))
        .await
        .unwrap();
    let u = a
        .update("ns/x", now, &mut add("sip:x@4", now))
        .await
        .unwrap();
    assert_eq!(contacts(&u.before), ["sip:x@1", "sip:x@2", "sip:x@3"]);
    assert_eq!(
        contacts(&u.after),
        ["sip:x@1", "sip:x@2", "sip:x@3", "sip:x@4"]
    );
    assert_eq!(
        b.stats(now).await.unwrap(),
        StoreStats {
            aors: 1,
            bindings: 4
        }
    );

    // Emptied elsewhere: a's guess still has bindings.
    b.update("ns/x", now, &mut |_: &[Binding]| Some(Vec::new()))
        .await
        .unwrap();
    let u = a
        .update("ns/x", now, &mut add("sip:x@5", now))
        .await
        .unwrap();
    assert!(u.before.is_empty(), "{:?}", u.before);
    assert_eq!(contacts(&b.lookup("ns/x", now).await.unwrap()), ["sip:x@5"]);
    assert_eq!(
        a.stats(now).await.unwrap(),
        StoreStats {
            aors: 1,
            bindings: 1
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_bindings() {
    let redis = RedisServer::start("redis-replicas");
    let a = Arc::new(RedisStore::connect(&redis.url(), "sb").await.unwrap());
    let b = Arc::new(RedisStore::connect(&redis.url(), "sb").await.unwrap());
    let now = now_ms();

    // 50 concurrent updates from each replica, each adding its own contact to one AOR.
    let mut tasks = Vec::new();
    for i in 0..100 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let mine = binding(&format!("sip:phone@10.0.0.{i}"), now, 3600);
            store
                .update("ns/shared", now, &mut |cur: &[Binding]| {
                    let mut next = cur.to_vec();
                    next.push(mine.clone());
                    Some(next)
                })
                .await
                .unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let all = a.lookup("ns/shared", now).await.unwrap();
    let distinct: HashSet<&str> = contacts(&all).into_iter().collect();
    assert_eq!((all.len(), distinct.len()), (100, 100));
    assert_eq!(
        b.stats(now).await.unwrap(),
        StoreStats {
            aors: 1,
            bindings: 100
        }
    );

    // A fresh replica (a restart) sees everything.
    let c = RedisStore::connect(&redis.url(), "sb").await.unwrap();
    assert_eq!(c.lookup("ns/shared", now).await.unwrap(), all);
    assert_eq!(c.snapshot(now).await.unwrap().len(), 1);

    // Both replicas sweep at once: each lapsed binding is reported exactly once.
    let t = epoch();
    let mut lapsing = HashSet::new();
    for n in 0..40 {
        let aor = format!("ns/dev{n}");
        let bindings = vec![
            binding(&format!("sip:{n}@short1"), t, 10),
            binding(&format!("sip:{n}@short2"), t, 20),
            binding(&format!("sip:{n}@long"), t, 1000),
        ];
        lapsing.insert(format!("sip:{n}@short1"));
        lapsing.insert(format!("sip:{n}@short2"));
        a.update(&aor, t, &mut |_: &[Binding]| Some(bindings.clone()))
            .await
            .unwrap();
    }
    let sweep_at = t + Duration::from_secs(30);
    let (ea, eb) = tokio::join!(
        {
            let a = a.clone();
            tokio::spawn(async move { a.expire(sweep_at).await.unwrap() })
        },
        {
            let b = b.clone();
            tokio::spawn(async move { b.expire(sweep_at).await.unwrap() })
        }
    );
    let mut reported = Vec::new();
    for e in ea.unwrap().into_iter().chain(eb.unwrap()) {
        assert_eq!(contacts(&e.remaining).len(), 1, "{e:?}");
        reported.extend(e.expired.into_iter().map(|b| b.contact));
    }
    let unique: HashSet<String> = reported.iter().cloned().collect();
    assert_eq!(reported.len(), unique.len(), "reported twice: {reported:?}");
    assert_eq!(unique, lapsing);
    assert!(a.expire(sweep_at).await.unwrap().is_empty());
    assert_eq!(
        c.stats(sweep_at).await.unwrap(),
        StoreStats {
            aors: 41,
            bindings: 140
        }
    );
}

/// A Redis of its own (`name`), and a store on it holding one binding for `ns/x`: the store,
/// the time it was written, the binding.
async fn store_holding_one(name: &str) -> (RedisServer, RedisStore, SystemTime, Vec<Binding>) {
    let redis = RedisServer::start(name);
    let s = RedisStore::connect(&redis.url(), "sb").await.unwrap();
    let now = now_ms();
    let one = vec![binding("sip:x@1", now, 3600)];
    s.update("ns/x", now, &mut |_: &[Binding]| Some(one.clone()))
        .await
        .unwrap();
    (redis, s, now, one)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_redis_fails_each_call_within_its_wait_and_the_connection_recovers() {
    let (redis, s, now, one) = store_holding_one("redis-silent").await;
    redis.freeze(true);
    let start = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(5), s.lookup("ns/x", now))
        .await
        .expect("lookup hung while redis is silent");
    let e = r.expect_err("lookup answered by a stopped redis");
    assert!(e.0.contains("no answer within"), "{e:?}");
    assert!(
        start.elapsed() < Duration::from_millis(2500),
        "lookup took {:?}",
        start.elapsed()
    );
    redis.freeze(false);
    // The late reply is dropped, not taken for the next caller's.
    let found = until_ok("the store after redis resumed", || s.lookup("ns/x", now)).await;
    assert_eq!(found, one);
}

/// Calls `op` every 100 ms until it succeeds (its value), failing the test after 15 s with
/// what it is waiting for and the last error.
async fn until_ok<T, E: std::fmt::Debug, F: std::future::Future<Output = Result<T, E>>>(
    what: &str,
    mut op: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match op().await {
            Ok(value) => return value,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{what}: still failing after 15 s: {e:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_fails_fast_and_recovers() {
    let (mut redis, s, now, one) = store_holding_one("redis-down").await;
    assert_eq!(s.lookup("ns/x", now).await.unwrap(), one);

    redis.kill();
    // Every operation fails, quickly: a REGISTER must not hang on a dead Redis.
    for _ in 0..3 {
        let start = Instant::now();
        let r = tokio::time::timeout(Duration::from_secs(5), s.lookup("ns/x", now))
            .await
            .expect("lookup hung while redis is down");
        assert!(r.is_err(), "lookup succeeded with redis down: {r:?}");
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "lookup took {:?}",
            start.elapsed()
        );
        let start = Instant::now();
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            s.update("ns/x", now, &mut |_: &[Binding]| Some(vec![])),
        )
        .await
        .expect("update hung while redis is down");
        assert!(r.is_err(), "update succeeded with redis down: {r:?}");
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "update took {:?}",
            start.elapsed()
        );
    }
    // Start-up does not need Redis: the connection is made on first use.
    let late = RedisStore::connect(&redis.url(), "sb")
        .await
        .expect("connect fails while redis is down");
    let start = Instant::now();
    assert!(late.lookup("ns/x", now).await.is_err());
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "took {:?}",
        start.elapsed()
    );

    let start = Instant::now();
    assert!(s.stats(now).await.is_err());
    assert!(s.expire(now).await.is_err());
    assert!(s.upstream_contact("ns/trunk").await.is_err());
    assert!(
        start.elapsed() < Duration::from_secs(6),
        "took {:?}",
        start.elapsed()
    );

    // Back on the same port (empty: no persistence): the same store works again.
    redis.restart();
    until_ok("the store after redis came back", || async {
        s.update("ns/x", now, &mut |_: &[Binding]| Some(one.clone()))
            .await
    })
    .await;
    assert_eq!(s.lookup("ns/x", now).await.unwrap(), one);
    until_ok("the late store connecting", || late.lookup("ns/x", now)).await;
    assert_eq!(late.lookup("ns/x", now).await.unwrap(), one);
}
