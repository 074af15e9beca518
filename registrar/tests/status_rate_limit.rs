//! The status writer under a burst: 1 000 devices register at once (each also refreshes, and
//! some add a second contact before their write), drained at the configured rate with tokio's
//! paused clock — no real sleeping. Asserts that the API calls (status writes and Events) never
//! outrun the token bucket, that steady refreshes write nothing, and that every device's final
//! state is the one written.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use switchboard_crds::common::Transport;
use switchboard_crds::device::{ContactStatus, RegistrationState};
use switchboard_registrar::status::{self, Desired, Key, StatusSettings, StatusSink, WriteError};
use tokio::time::Instant;

#[derive(Clone, Default)]
struct FakeApi {
    /// (when, API calls made) per write.
    calls: Arc<Mutex<Vec<(Instant, u32)>>>,
    last: Arc<Mutex<HashMap<Key, Desired>>>,
}

impl StatusSink for FakeApi {
    async fn write(
        &self,
        key: &Key,
        desired: &Desired,
        previous: Option<&Desired>,
    ) -> Result<u32, WriteError> {
        let n = 1 + u32::from(desired.flip_from(previous).is_some());
        self.calls.lock().push((Instant::now(), n));
        self.last.lock().insert(key.clone(), desired.clone());
        Ok(n)
    }
}

fn contact(dev: usize, n: usize, expires: i64) -> ContactStatus {
    ContactStatus {
        uri: format!("sip:dev{dev}@10.0.{}.{}:{}", dev / 250, dev % 250, 5060 + n),
        transport: Transport::Udp,
        source_address: format!("10.0.{}.{}:{}", dev / 250, dev % 250, 5060 + n),
        user_agent: None,
        expires: Time(Timestamp::from_second(1_800_000_000 + expires).unwrap()),
        replica: None,
    }
}

#[tokio::test(start_paused = true)]
async fn burst_of_1000_registrations_respects_the_rate() {
    const DEVICES: usize = 1000;
    const RATE: f64 = 20.0;
    const BURST: u32 = 50;
    let api = FakeApi::default();
    let (handle, reporter) = status::reporter(StatusSettings {
        rate: RATE,
        burst: BURST,
        ..Default::default()
    });
    let task = tokio::spawn(reporter.run(api.clone()));
    let t0 = Instant::now();

    for d in 0..DEVICES {
        handle.device_bindings(&format!("default/dev{d}"), vec![contact(d, 0, 3600)]);
    }
    // Refreshes while queued: nothing new.
    for d in 0..DEVICES {
        handle.device_bindings(&format!("default/dev{d}"), vec![contact(d, 0, 7200)]);
    }
    // A tenth add a second contact before their write: coalesced into the same write.
    for d in (0..DEVICES).step_by(10) {
        handle.device_bindings(
            &format!("default/dev{d}"),
            vec![contact(d, 0, 7200), contact(d, 1, 7200)],
        );
    }

    // Each first registration is a status write plus a Registered event: 2 calls, at 20/s.
    let expected_secs = (2.0 * DEVICES as f64 - f64::from(BURST)) / RATE;
    let deadline = t0 + Duration::from_secs_f64(expected_secs * 1.5 + 10.0);
    while handle.pending() > 0 || api.calls.lock().len() < DEVICES {
        assert!(
            Instant::now() < deadline,
            "still {} pending",
            handle.pending()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let done = Instant::now() - t0;

    let calls = api.calls.lock().clone();
    assert_eq!(calls.len(), DEVICES, "one write per device");
    // In every window [t, t+w], calls ≤ burst + rate·w (+1 for the write that may overdraw
    // the bucket with its event).
    let total: u32 = calls.iter().map(|c| c.1).sum();
    assert_eq!(total, 2 * DEVICES as u32);
    for (i, (start, _)) in calls.iter().enumerate() {
        let mut n = 0u32;
        for (t, c) in &calls[i..] {
            n += c;
            let w = (*t - *start).as_secs_f64();
            assert!(
                f64::from(n) <= f64::from(BURST) + RATE * w + 2.0,
                "{n} calls in {w:.3} s from write {i}"
            );
        }
    }
    assert!(
        done.as_secs_f64() >= expected_secs * 0.95,
        "drained in {done:?}, faster than the rate allows"
    );
    assert!(
        done.as_secs_f64() <= expected_secs * 1.1 + 1.0,
        "drained in {done:?}, expected ~{expected_secs:.0} s"
    );

    // Final state of every device is what was written.
    {
        let last = api.last.lock();
        for d in 0..DEVICES {
            let key = Key::parse(status::Kind::Device, &format!("default/dev{d}")).unwrap();
            let Desired::Device(dev) = &last[&key] else {
                panic!()
            };
            let reg = &dev.registration;
            assert_eq!(reg.state, RegistrationState::Registered);
            assert_eq!(
                reg.contacts.len(),
                if d % 10 == 0 { 2 } else { 1 },
                "dev{d}"
            );
        }
    }

    // Steady refreshes afterwards: zero writes.
    let before = api.calls.lock().len();
    for d in 0..DEVICES {
        let mut cs = vec![contact(d, 0, 10_800)];
        if d % 10 == 0 {
            cs.push(contact(d, 1, 10_800));
        }
        handle.device_bindings(&format!("default/dev{d}"), cs);
    }
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(api.calls.lock().len(), before);
    let c = handle.counters();
    assert_eq!(c.written, DEVICES as u64);
    assert_eq!(c.unchanged, 2 * DEVICES as u64);
    task.abort();
}
