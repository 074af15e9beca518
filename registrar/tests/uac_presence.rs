//! Presence/BLF (`subscribe: true`) against a real peer: sipp as the upstream presence server
//! (`sipp/presence_notifier.xml`), which registers the registration, challenges every new
//! SUBSCRIBE and checks the digest answer, and sends NOTIFYs with PIDF and dialog-info
//! bodies. The UAC runs through `uac::Manager`, timers shortened; each wait polls the
//! registration's live state (what `status.presence` is written from) under a deadline.
//! Debian's kamailio-presence-modules is not used: sipp is in the CI image already and scripts
//! the exact NOTIFY sequence (ringing, answered, terminated) a presence server would send.

mod common;

use common::sipp::{scenario_with, spawn_sipp, wait_listening};
use common::{free_port, header_values, sipp_logs, sipp_received, temp_dir, wait_async};
use std::collections::BTreeSet;
use std::time::Duration;
use switchboard_crds::config::OutboundRegistration;
use switchboard_crds::registration::{
    EntityState, PresenceStatus, RegistrationPhase, SubscriptionState,
};
use switchboard_registrar::uac::{Manager, UacIndex};

const ID: &str = "default/blf";

struct Notifier {
    port: u16,
    dir: std::path::PathBuf,
    child: std::process::Child,
}

impl Notifier {
    /// sipp's presence server; `dialog` is the scenario label dialog SUBSCRIBEs go to
    /// (`challenge`, or `bad_event` for 489).
    fn start(dialog: &str) -> Notifier {
        let port = free_port();
        let dir = temp_dir("presence-notifier");
        let path = scenario_with(&dir, "presence_notifier.xml", &[("@DIALOG@", dialog)]);
        let mut args = common::sipp::sipp_args("127.0.0.1:9", &path, "127.0.0.1", port, "u1");
        args.truncate(0);
        args.extend(
            [
                "-sf",
                &path.display().to_string(),
                "-i",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-t",
                "u1",
                "-nostdin",
                "-trace_msg",
                "-trace_err",
                "-timeout",
                "60",
            ]
            .map(String::from),
        );
        let child = spawn_sipp(&args, &dir);
        wait_listening("sipp's presence server to listen", port, false);
        Notifier { port, dir, child }
    }

    /// The SUBSCRIBEs it received for `event`, by Call-ID.
    fn subscribe_dialogs(&self, event: &str) -> BTreeSet<String> {
        sipp_received(&self.dir)
            .iter()
            .filter(|m| m.starts_with("SUBSCRIBE ") && m.contains(&format!("Event: {event}")))
            .filter_map(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("Call-ID: "))
                    .map(|c| c.trim().to_string())
            })
            .collect()
    }

    fn log(&self) -> String {
        sipp_logs(&self.dir)
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn registration(port: u16, password: &str) -> OutboundRegistration {
    OutboundRegistration {
        id: ID.into(),
        aor: "sip:blfuser@example.test".into(),
        username: "blfuser".into(),
        password: password.into(),
        host: "127.0.0.1".into(),
        port,
        expires: 3600,
        subscribe: true,
        ..Default::default()
    }
}

fn manager() -> (Manager, UacIndex) {
    common::uac_manager("127.0.0.1:15998")
}

fn presence(index: &UacIndex) -> PresenceStatus {
    index.get(ID).and_then(|v| v.presence).unwrap_or_default()
}

fn entity(index: &UacIndex, event: &str) -> Option<(String, EntityState, Option<String>)> {
    presence(index)
        .entities
        .into_iter()
        .find(|e| e.event == event)
        .map(|e| (e.entity, e.state, e.note))
}

fn subscription(index: &UacIndex, event: &str) -> Option<(SubscriptionState, Option<u16>)> {
    presence(index)
        .subscriptions
        .into_iter()
        .find(|s| s.event == event)
        .map(|s| (s.state, s.last_status_code))
}

async fn wait_for(index: &UacIndex, n: &Notifier, what: &str, cond: impl Fn() -> bool) {
    let ok = wait_async(Duration::from_secs(15), cond).await;
    assert!(
        ok,
        "{what}: presence {:?}\nsipp:\n{}",
        presence(index),
        n.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blf_follows_ringing_busy_and_resubscribes_after_termination() {
    let n = Notifier::start("challenge");
    let (mut m, index) = manager();
    m.apply(&[registration(n.port, "blfsecret")]);

    wait_for(&index, &n, "dialog: ringing", || {
        entity(&index, "dialog").is_some_and(|e| e.1 == EntityState::Ringing)
    })
    .await;
    assert_eq!(
        entity(&index, "dialog").unwrap().0,
        "sip:blfuser@upstream.test"
    );
    assert_eq!(index.get(ID).unwrap().phase, RegistrationPhase::Successful);
    assert_eq!(
        subscription(&index, "dialog"),
        Some((SubscriptionState::Active, Some(200)))
    );
    wait_for(&index, &n, "dialog: busy once answered", || {
        entity(&index, "dialog").is_some_and(|e| e.1 == EntityState::Busy)
    })
    .await;
    // The notifier ends the subscription (deactivated): a new SUBSCRIBE, in a new dialog,
    // challenged and answered again, rings the lamp again from its first NOTIFY.
    wait_for(&index, &n, "a second dialog subscription", || {
        n.subscribe_dialogs("dialog").len() >= 2
    })
    .await;
    wait_for(
        &index,
        &n,
        "dialog: active again after re-subscribing",
        || {
            subscription(&index, "dialog") == Some((SubscriptionState::Active, Some(200)))
                && entity(&index, "dialog").is_some()
        },
    )
    .await;

    // presence: busy (on-the-phone) from the first NOTIFY, offline from the one after the
    // in-dialog refresh (a new subscription would get the first again).
    wait_for(&index, &n, "presence: offline after the refresh", || {
        entity(&index, "presence").is_some_and(|e| e.1 == EntityState::Offline)
    })
    .await;
    assert_eq!(n.subscribe_dialogs("presence").len(), 1, "{}", n.log());
    // Every NOTIFY was answered 200 (sipp waits for each answer; a missing one is an error).
    assert!(!n.log().contains("Aborting call"), "{}", n.log());
    m.shutdown(Duration::from_secs(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_event_for_dialog_leaves_presence_working() {
    let n = Notifier::start("bad_event");
    let (mut m, index) = manager();
    m.apply(&[registration(n.port, "blfsecret")]);
    wait_for(&index, &n, "presence: busy with its note", || {
        entity(&index, "presence")
            .is_some_and(|e| e.1 == EntityState::Busy && e.2.as_deref() == Some("On the phone"))
    })
    .await;
    wait_for(&index, &n, "dialog: failed with 489", || {
        subscription(&index, "dialog") == Some((SubscriptionState::Failed, Some(489)))
    })
    .await;
    assert!(entity(&index, "dialog").is_none());
    let p = presence(&index);
    let reason = &p
        .subscriptions
        .iter()
        .find(|s| s.event == "dialog")
        .unwrap()
        .reason;
    assert_eq!(reason.as_deref(), Some("489 Bad Event"));
    // 489 is not retried soon: one dialog SUBSCRIBE so far.
    assert_eq!(n.subscribe_dialogs("dialog").len(), 1);
    m.shutdown(Duration::from_secs(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_fails_the_subscriptions() {
    let n = Notifier::start("challenge");
    let (mut m, index) = manager();
    // sipp accepts any REGISTER; the SUBSCRIBEs' digest is checked.
    m.apply(&[registration(n.port, "wrong")]);
    wait_for(&index, &n, "both subscriptions failed with 403", || {
        subscription(&index, "presence") == Some((SubscriptionState::Failed, Some(403)))
            && subscription(&index, "dialog") == Some((SubscriptionState::Failed, Some(403)))
    })
    .await;
    assert!(presence(&index).entities.is_empty());
    m.shutdown(Duration::from_secs(3)).await;
}

/// A hand-driven upstream on a UDP socket: answers the REGISTER and SUBSCRIBEs it receives
/// (presence 200, dialog 489) and sends the subscriber requests it must refuse or survive.
struct RawUpstream {
    sock: std::net::UdpSocket,
}

impl RawUpstream {
    fn bind() -> RawUpstream {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        RawUpstream { sock }
    }

    fn port(&self) -> u16 {
        self.sock.local_addr().unwrap().port()
    }

    /// A response to `req` copying its Via, From, To (tagged), Call-ID and CSeq.
    fn reply(req: &str, status: &str, extra: &str) -> String {
        let h = |n: &str| {
            header_values(req, n)
                .first()
                .copied()
                .unwrap_or("")
                .to_string()
        };
        let to = h("To");
        let to = if to.contains(";tag=") {
            to
        } else {
            format!("{to};tag=srv")
        };
        format!(
            "SIP/2.0 {status}\r\nVia: {}\r\nFrom: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\n{extra}Content-Length: 0\r\n\r\n",
            h("Via"),
            h("From"),
            h("Call-ID"),
            h("CSeq")
        )
    }

    /// Receives until `want` says yes, answering requests from the UAC on the way; returns
    /// the message and where it came from.
    fn next(&self, what: &str, want: impl Fn(&str) -> bool) -> (String, std::net::SocketAddr) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut buf = vec![0u8; 65536];
        while std::time::Instant::now() < deadline {
            let Ok((n, from)) = self.sock.recv_from(&mut buf) else {
                continue;
            };
            let msg = String::from_utf8_lossy(&buf[..n]).to_string();
            if want(&msg) {
                return (msg, from);
            }
            let answer = if msg.starts_with("REGISTER ") {
                let contact = header_values(&msg, "Contact")[0].to_string();
                Self::reply(
                    &msg,
                    "200 OK",
                    &format!("Contact: {contact};expires=600\r\n"),
                )
            } else if msg.starts_with("SUBSCRIBE ") && msg.contains("Event: dialog") {
                Self::reply(&msg, "489 Bad Event", "")
            } else if msg.starts_with("SUBSCRIBE ") {
                let contact = format!("<sip:notifier@{}>", self.sock.local_addr().unwrap());
                Self::reply(
                    &msg,
                    "200 OK",
                    &format!("Contact: {contact}\r\nExpires: 600\r\n"),
                )
            } else {
                continue;
            };
            self.sock.send_to(answer.as_bytes(), from).unwrap();
        }
        panic!("no {what} within 10 s");
    }

    /// Sends `request` to the subscriber and returns the status line of its answer.
    fn ask(&self, to: std::net::SocketAddr, request: &str) -> String {
        self.sock.send_to(request.as_bytes(), to).unwrap();
        let cseq = header_values(request, "CSeq")[0].to_string();
        let (answer, _) = self.next("an answer", |m| {
            m.starts_with("SIP/2.0 ") && header_values(m, "CSeq").first() == Some(&cseq.as_str())
        });
        answer.lines().next().unwrap().to_string()
    }
}

fn notify(call_id: &str, to_tag: &str, cseq: u32, event: &str, ctype: &str, body: &str) -> String {
    format!(
        "NOTIFY sip:blfuser@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKn{cseq}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:blfuser@example.test>;tag=srv\r\nTo: <sip:blfuser@example.test>;tag={to_tag}\r\n\
         Call-ID: {call_id}\r\nCSeq: {cseq} NOTIFY\r\nEvent: {event}\r\nSubscription-State: active;expires=600\r\n\
         Content-Type: {ctype}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Requests the subscriber must refuse (unknown dialog 481, another package 489, unknown method
/// 501), a keepalive it answers, garbage it drops and a body it cannot read: none of them stops
/// the subscription, whose next good NOTIFY is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_requests_are_answered_and_the_subscription_goes_on() {
    let up = RawUpstream::bind();
    let (mut m, index) = manager();
    m.apply(&[registration(up.port(), "blfsecret")]);
    let up = tokio::task::spawn_blocking(move || {
        let (sub, uac) = up.next("the presence SUBSCRIBE", |m| {
            m.starts_with("SUBSCRIBE ") && m.contains("Event: presence")
        });
        up.sock
            .send_to(RawUpstream::reply(&sub, "200 OK", "Expires: 600\r\n").as_bytes(), uac)
            .unwrap();
        let call_id = header_values(&sub, "Call-ID")[0].to_string();
        let tag = header_values(&sub, "From")[0].split("tag=").nth(1).unwrap().to_string();
        let pidf = "application/pidf+xml";
        let open = r#"<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:blfuser@example.test"><tuple id="t"><status><basic>open</basic></status></tuple></presence>"#;
        assert_eq!(
            up.ask(uac, &notify("no-such-dialog", &tag, 1, "presence", pidf, open)),
            "SIP/2.0 481 Subscription Does Not Exist"
        );
        assert_eq!(
            up.ask(uac, &notify(&call_id, &tag, 2, "dialog", pidf, open)),
            "SIP/2.0 489 Bad Event"
        );
        let options = notify(&call_id, &tag, 3, "presence", pidf, "").replace("NOTIFY", "OPTIONS");
        assert_eq!(up.ask(uac, &options), "SIP/2.0 200 OK");
        let info = notify(&call_id, &tag, 4, "presence", pidf, "").replace("NOTIFY", "INFO");
        assert_eq!(up.ask(uac, &info), "SIP/2.0 501 Not Implemented");
        up.sock.send_to(b"\x00\xffnot SIP at all\r\n\r\n", uac).unwrap();
        assert_eq!(
            up.ask(uac, &notify(&call_id, &tag, 5, "presence", pidf, "<presence><tuple>")),
            "SIP/2.0 200 OK"
        );
        assert_eq!(
            up.ask(uac, &notify(&call_id, &tag, 6, "presence", pidf, open)),
            "SIP/2.0 200 OK"
        );
        up
    })
    .await
    .unwrap();
    let ok = wait_async(Duration::from_secs(10), || {
        entity(&index, "presence").is_some_and(|e| e.1 == EntityState::Idle)
            && subscription(&index, "presence") == Some((SubscriptionState::Active, Some(200)))
    })
    .await;
    assert!(ok, "{:?}", presence(&index));
    drop(up);
    m.shutdown(Duration::from_secs(3)).await;
}
