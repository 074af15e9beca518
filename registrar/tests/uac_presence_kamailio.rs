//! Presence/BLF against a real presence server: Debian's kamailio with its presence modules
//! (`uac_presence_kamailio.cfg`: presence, presence_xml, presence_dialoginfo; installed by
//! scripts/install-test-deps.sh as `kamailio-presence-modules`). The registrar's UAC registers
//! and SUBSCRIBEs to `presence` and `dialog` (challenged, digest checked); the test PUBLISHes
//! the watched user's state as a phone would (PIDF, then dialog-info ringing, answered, hung
//! up), and Kamailio's NOTIFYs must show up as the entity's state. With the dialog package
//! refused (489), presence keeps working. Every wait polls under a deadline.

mod common;

use common::kamailio::{Kamailio, IP};
use common::wait_async;
use std::net::UdpSocket;
use std::path::PathBuf;
use std::time::Duration;
use switchboard_crds::config::OutboundRegistration;
use switchboard_crds::registration::{EntityState, PresenceStatus, SubscriptionState};
use switchboard_registrar::uac::{Manager, UacIndex};

const CONFIG: &str = include_str!("uac_presence_kamailio.cfg");
const ID: &str = "default/blf";
const AOR: &str = "sip:blf@example.test";

/// Kamailio's presence server, its db_text tables copied from Debian's empty ones.
fn presence_server(name: &str, dialog_event: bool) -> (Kamailio, PathBuf) {
    let db = common::temp_dir(&format!("presence-db-{name}"));
    for table in [
        "version",
        "presentity",
        "active_watchers",
        "watchers",
        "xcap",
    ] {
        let from = PathBuf::from("/usr/share/kamailio/dbtext/kamailio").join(table);
        std::fs::copy(&from, db.join(table)).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (Debian's kamailio ships the db_text tables)",
                from.display()
            )
        });
    }
    let kam = Kamailio::start(
        &format!("presence-{name}"),
        CONFIG,
        &[("blf", "blf-secret")],
        &[
            ("@DB@", db.to_str().unwrap()),
            ("@DIALOG_EVENT@", if dialog_event { "1" } else { "0" }),
        ],
    );
    (kam, db)
}

/// PUBLISHes `body` of `event` for the AOR, as the watched user's phone (modifying the
/// publication `etag` when given, RFC 3903 §4.4); asserts a 2xx and returns its `SIP-ETag`.
fn publish(
    kam: &Kamailio,
    n: u32,
    etag: Option<&str>,
    event: &str,
    content_type: &str,
    body: &str,
) -> String {
    let if_match = etag.map_or(String::new(), |e| format!("SIP-If-Match: {e}\r\n"));
    let sock = UdpSocket::bind((IP, 0)).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let me = sock.local_addr().unwrap();
    let msg = format!(
        "PUBLISH {AOR} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKpub{n}\r\nMax-Forwards: 70\r\n\
         From: <{AOR}>;tag=pub{n}\r\nTo: <{AOR}>\r\nCall-ID: publish-{n}@test\r\nCSeq: 1 PUBLISH\r\n\
         Event: {event}\r\n{if_match}Expires: 600\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut buf = [0u8; 4096];
    for _ in 0..10 {
        sock.send_to(msg.as_bytes(), (IP, kam.port)).unwrap();
        if let Ok(len) = sock.recv(&mut buf) {
            let answer = String::from_utf8_lossy(&buf[..len]).to_string();
            assert!(
                answer.starts_with("SIP/2.0 2"),
                "PUBLISH {n}: {answer}\n{}",
                kam.log()
            );
            return answer
                .lines()
                .find_map(|l| l.strip_prefix("SIP-ETag:"))
                .map(|e| e.trim().to_string())
                .unwrap_or_else(|| panic!("no SIP-ETag: {answer}"));
        }
    }
    panic!("no answer to PUBLISH {n}:\n{}", kam.log());
}

fn pidf(activity: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="{AOR}">
<tuple id="phone"><status><basic>open</basic></status></tuple>
<dm:person id="p"><rpid:activities>{activity}</rpid:activities></dm:person>
</presence>"#
    )
}

fn dialog_info(version: u32, state: &str) -> String {
    format!(
        r#"<?xml version="1.0"?>
<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="{version}" state="full" entity="{AOR}">
<dialog id="call-1" call-id="c1" local-tag="l1" remote-tag="r1" direction="recipient"><state>{state}</state></dialog>
</dialog-info>"#
    )
}

fn registration(port: u16) -> OutboundRegistration {
    OutboundRegistration {
        id: ID.into(),
        aor: AOR.into(),
        username: "blf".into(),
        password: "blf-secret".into(),
        host: IP.into(),
        port,
        expires: 600,
        subscribe: true,
        ..Default::default()
    }
}

fn manager() -> (Manager, UacIndex) {
    common::uac_manager("127.0.0.1:15996")
}

fn presence(index: &UacIndex) -> PresenceStatus {
    index.get(ID).and_then(|v| v.presence).unwrap_or_default()
}

fn state(index: &UacIndex, event: &str) -> Option<EntityState> {
    presence(index)
        .entities
        .into_iter()
        .find(|e| e.event == event && e.entity == AOR)
        .map(|e| e.state)
}

fn subscription(index: &UacIndex, event: &str) -> Option<(SubscriptionState, Option<u16>)> {
    presence(index)
        .subscriptions
        .into_iter()
        .find(|s| s.event == event)
        .map(|s| (s.state, s.last_status_code))
}

async fn wait_for(index: &UacIndex, kam: &Kamailio, what: &str, cond: impl Fn() -> bool) {
    let ok = wait_async(Duration::from_secs(15), cond).await;
    assert!(ok, "{what}: {:?}\n{}", presence(index), kam.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kamailio_notifies_presence_and_the_busy_lamp() {
    let (kam, _db) = presence_server("blf", true);
    let (mut m, index) = manager();
    m.apply(&[registration(kam.port)]);
    wait_for(&index, &kam, "both subscriptions active", || {
        subscription(&index, "presence") == Some((SubscriptionState::Active, Some(200)))
            && subscription(&index, "dialog") == Some((SubscriptionState::Active, Some(200)))
    })
    .await;

    let pidf_type = "application/pidf+xml";
    let etag = publish(
        &kam,
        1,
        None,
        "presence",
        pidf_type,
        &pidf("<rpid:on-the-phone/>"),
    );
    wait_for(&index, &kam, "presence: busy (on the phone)", || {
        state(&index, "presence") == Some(EntityState::Busy)
    })
    .await;
    publish(&kam, 2, Some(&etag), "presence", pidf_type, &pidf(""));
    wait_for(&index, &kam, "presence: idle (open)", || {
        state(&index, "presence") == Some(EntityState::Idle)
    })
    .await;

    let dialog = "application/dialog-info+xml";
    let etag = publish(&kam, 3, None, "dialog", dialog, &dialog_info(1, "early"));
    wait_for(&index, &kam, "dialog: ringing", || {
        state(&index, "dialog") == Some(EntityState::Ringing)
    })
    .await;
    let etag = publish(
        &kam,
        4,
        Some(&etag),
        "dialog",
        dialog,
        &dialog_info(2, "confirmed"),
    );
    wait_for(&index, &kam, "dialog: busy", || {
        state(&index, "dialog") == Some(EntityState::Busy)
    })
    .await;
    publish(
        &kam,
        5,
        Some(&etag),
        "dialog",
        dialog,
        &dialog_info(3, "terminated"),
    );
    wait_for(&index, &kam, "dialog: idle", || {
        state(&index, "dialog") == Some(EntityState::Idle)
    })
    .await;
    m.shutdown(Duration::from_secs(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_dialog_package_presence_still_works() {
    let (kam, _db) = presence_server("nodialog", false);
    let (mut m, index) = manager();
    m.apply(&[registration(kam.port)]);
    wait_for(
        &index,
        &kam,
        "dialog refused with 489, presence active",
        || {
            subscription(&index, "dialog") == Some((SubscriptionState::Failed, Some(489)))
                && subscription(&index, "presence") == Some((SubscriptionState::Active, Some(200)))
        },
    )
    .await;
    publish(
        &kam,
        1,
        None,
        "presence",
        "application/pidf+xml",
        &pidf("<rpid:busy/>"),
    );
    wait_for(&index, &kam, "presence: busy", || {
        state(&index, "presence") == Some(EntityState::Busy)
    })
    .await;
    assert_eq!(state(&index, "dialog"), None);
    m.shutdown(Duration::from_secs(3)).await;
}
