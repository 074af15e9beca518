//! Calls through the proxy with real peers: sipp UAS processes registered as phones (by a real
//! REGISTER from the port they then listen on), sipp UAC callers that authenticate with 407,
//! and a sipp UAS as the upstream of a SipRegistration (trunk) that challenges the proxy. Each
//! test asserts the responses both ends saw and the Request-URI the far end got.

mod common;

use common::sipp::{
    answered, first_line, once_within, register_phone, requests, scenario, scenario_with,
    sipp_args, spawn_sipp, statuses, user_args, wait_exit, wait_listening,
};
use common::{free_port, run_tool, temp_dir, wait_until, Options, Registrar, DEADLINE};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};
use switchboard_crds::config::ha1;

const DOMAIN: &str = "switchboard.local";

fn device(id: &str, user: &str, assignment: &str, extension: Option<&str>, extra: &str) -> String {
    let (md5, sha) = ha1(user, DOMAIN, &format!("pw-{user}"));
    let ext = extension.map_or(String::new(), |e| format!("\n        extension: \"{e}\""));
    format!(
        "      - id: default/{id}\n        sipUser: \"{user}\"\n        ha1Md5: {md5}\n        ha1Sha256: {sha}\n        assignment: {assignment}{ext}{extra}\n"
    )
}

/// The test site: 1001 (caller, mobile pattern → trunk, 7809 blocked), 1002 (callee, two
/// contacts allowed), 1003 (unassigned), 1004 (never registers); a trunk to `upstream_port`.
fn config(upstream_port: u16) -> String {
    config_with(upstream_port, "[]")
}

/// [`config`] with the site's `trustedPeers` (a YAML list).
fn config_with(upstream_port: u16, trusted: &str) -> String {
    let caller_extra = "\n        callerId: \"+74950001001\"\n        patterns: [default/mobile]\n        restrictions:\n          countryCode: \"7\"\n          blockedPrefixes: [\"7809\"]";
    format!(
        "format: 1\nhash: \"\"\ndomains:\n  - domain: {DOMAIN}\n    site: default/hq\n    extensions: \"1000-1999\"\n    defaultCallerId: \"+74950000000\"\n    trustedPeers: {trusted}\n    users:\n      - name: alice\n        extension: \"1100\"\n    registration:\n      minExpires: 60\n      maxExpires: 3600\n      defaultExpires: 600\n      maxContacts: 2\n      transports: [UDP, TCP]\n      digestAlgorithms: [MD5]\n    devices:\n{}{}{}{}{}patterns:\n  - id: default/mobile\n    rules:\n      - match: \"[^+*#\\\\w]\"\n        with: \"\"\n      - match: \"^8\"\n        with: \"7\"\n      - match: \"^7\\\\d{{10}}$\"\n    route:\n      registration: carrier\nregistrations:\n  - id: default/carrier\n    aor: sip:trunkuser@upstream.test\n    realm: upstream.test\n    username: trunkuser\n    password: trunksecret\n    host: 127.0.0.1\n    port: {upstream_port}\n    transport: UDP\n    expires: 3600\n    target:\n      site: hq\n      extension: \"1002\"\n",
        device("desk-1001", "1001", "Site", Some("1001"), caller_extra),
        device("desk-1002", "1002", "Site", Some("1002"), ""),
        device("spare-1003", "1003", "Unassigned", None, ""),
        device("desk-1004", "1004", "Site", Some("1004"), ""),
        device(
            "alice-1005",
            "1005",
            "User",
            None,
            "\n        user: alice\n        receiveCalls: true"
        ),
    )
}

/// A phone: a UDP port registered as `user`, then a sipp UAS listening on it.
struct Phone {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Phone {
    /// Registers `user` from a fresh port with sipp's REGISTER scenario.
    fn register(r: &Registrar, user: &str) -> Phone {
        let port = free_port();
        let dir = temp_dir(&format!("phone-{user}"));
        register_phone(
            &format!("127.0.0.1:{}", r.sip_port),
            user,
            DOMAIN,
            &format!("pw-{user}"),
            ("127.0.0.1", port),
            &dir,
            20,
        );
        Phone {
            port,
            dir,
            child: None,
        }
    }

    /// Starts the phone's UAS scenario (one call).
    fn answer(&mut self, name: &str, subst: &[(&str, &str)]) {
        let path = scenario_with(&self.dir, name, subst);
        let mut args = sipp_args("127.0.0.1:9", &path, "127.0.0.1", self.port, "u1");
        args.extend(once_within(30));
        self.child = Some(spawn_sipp(&args, &self.dir));
        // Listening once its port is taken.
        wait_listening("the sipp UAS to listen", self.port, false);
    }

    /// Waits for the UAS to finish; asserts it succeeded.
    fn finish(&mut self) -> Vec<String> {
        let mut child = self.child.take().expect("answering");
        let Some(status) = wait_exit(&mut child, DEADLINE * 3) else {
            panic!(
                "the phone's sipp did not finish:\n{}",
                common::sipp_logs(&self.dir)
            );
        };
        assert!(
            status.success(),
            "the phone's scenario failed ({status}):\n{}",
            common::sipp_logs(&self.dir)
        );
        common::sipp_received(&self.dir)
    }
}

impl Drop for Phone {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A caller: runs a UAC scenario once as `user`, dialling `number`; asserts success.
fn call(
    r: &Registrar,
    user: &str,
    number: &str,
    name: &str,
    subst: &[(&str, &str)],
) -> Vec<String> {
    call_from(r, "127.0.0.1", user, number, name, subst)
}

/// [`call`] from another loopback address.
fn call_from(
    r: &Registrar,
    ip: &str,
    user: &str,
    number: &str,
    name: &str,
    subst: &[(&str, &str)],
) -> Vec<String> {
    call_with(r, ip, "u1", user, number, name, subst)
}

/// [`call`] from an address over a sipp transport (`u1`, `t1`).
fn call_with(
    r: &Registrar,
    ip: &str,
    transport: &str,
    user: &str,
    number: &str,
    name: &str,
    subst: &[(&str, &str)],
) -> Vec<String> {
    let dir = temp_dir(&format!("caller-{user}"));
    let path = scenario_with(&dir, name, subst);
    let mut args = sipp_args(
        &format!("127.0.0.1:{}", r.sip_port),
        &path,
        ip,
        free_port(),
        transport,
    );
    args.extend(once_within(30));
    args.extend(user_args(user, DOMAIN, Some(&format!("pw-{user}"))));
    args.extend(["-s", number].map(String::from));
    let out = run_tool("sipp", &args, &dir, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "the call from {user} to {number} failed:\n{}\n{}\nregistrar:\n{}",
        String::from_utf8_lossy(&out.stdout),
        common::sipp_logs(&dir),
        r.logs()
    );
    common::sipp_received(&dir)
}

fn start(name: &str, upstream_port: u16) -> Registrar {
    start_with(name, config(upstream_port))
}

fn start_with(name: &str, text: String) -> Registrar {
    let text: &'static str = Box::leak(text.into_boxed_str());
    Registrar::start(
        name,
        Options {
            config: Some(text),
            ..Default::default()
        },
    )
}

#[test]
fn extension_to_extension_answered_and_hung_up_by_the_caller() {
    let r = start("proxy-basic", free_port());
    let mut phone = Phone::register(&r, "1002");
    phone.answer("proxy_uas.xml", &[("ANSWER_DELAY", "100")]);
    let caller = call(&r, "1001", "1002", "proxy_uac.xml", &[]);
    let callee = phone.finish();
    let st = statuses(&caller);
    assert!(st.iter().any(|s| s.starts_with("SIP/2.0 407")), "{st:?}");
    assert!(st.iter().any(|s| s.starts_with("SIP/2.0 180")), "{st:?}");
    assert!(st.iter().any(|s| s.starts_with("SIP/2.0 200")), "{st:?}");
    let invite = requests(&callee, "INVITE");
    assert_eq!(invite.len(), 1);
    // The phone gets the call at its registered Contact, with the caller ID asserted.
    assert!(
        first_line(invite[0]).starts_with("INVITE sip:1002@127.0.0.1:"),
        "{}",
        invite[0]
    );
    assert!(
        invite[0].contains("P-Asserted-Identity: \"+74950001001\""),
        "{}",
        invite[0]
    );
    assert!(
        !invite[0].contains("Proxy-Authorization"),
        "credentials are consumed"
    );
    assert_eq!(
        requests(&callee, "ACK").len(),
        1,
        "the ACK for the 2xx came through"
    );
    assert_eq!(requests(&callee, "BYE").len(), 1, "the BYE came through");
    assert_eq!(r.metric("sip_calls_total{outcome=\"answered\"}"), 1.0);
    assert_call_logged(&r, &["1-", "extension:1002", "answered"]);
    // Nothing of the call is left once its branches ended; the transactions stay for
    // retransmissions (64·T1) and are counted meanwhile.
    wait_until("the call to be forgotten, its transactions counted", || {
        (r.metric("sip_proxy_calls") == 0.0
            && r.metric("sip_proxy_transactions{side=\"server\"}") >= 1.0)
            .then_some(())
    });
}

#[test]
fn callee_hangs_up_through_record_route() {
    let r = start("proxy-callee-bye", free_port());
    let mut phone = Phone::register(&r, "1002");
    phone.answer("proxy_uas_bye.xml", &[("ANSWER_DELAY", "50")]);
    let caller = call(&r, "1001", "1002", "proxy_uac_callee_bye.xml", &[]);
    let callee = phone.finish();
    assert_eq!(requests(&caller, "BYE").len(), 1, "{caller:?}");
    assert!(answered(&callee));
}

/// Asserts a call-log line holds every part.
fn assert_call_logged(r: &Registrar, parts: &[&str]) {
    let logs = r.logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("call_id") && parts.iter().all(|p| l.contains(p))),
        "no call log line with {parts:?}:\n{logs}"
    );
}

#[test]
fn forks_to_both_contacts_first_answer_wins_the_other_is_cancelled() {
    let r = start("proxy-fork", free_port());
    let mut ringing = Phone::register(&r, "1002");
    let mut answering = Phone::register(&r, "1002");
    r.wait_bindings("default/desk-1002", 2);
    ringing.answer("proxy_uas_ring.xml", &[]);
    answering.answer("proxy_uas.xml", &[("ANSWER_DELAY", "500")]);
    let caller = call(&r, "1001", "1002", "proxy_uac.xml", &[]);
    let rang = ringing.finish();
    let answered = answering.finish();
    assert_eq!(requests(&rang, "INVITE").len(), 1);
    assert_eq!(requests(&rang, "CANCEL").len(), 1, "{rang:?}");
    assert_eq!(requests(&answered, "INVITE").len(), 1);
    // Each contact got the call at its own registered Contact.
    let ruri = |msgs: &[String]| first_line(requests(msgs, "INVITE")[0]).to_string();
    assert!(ruri(&rang).starts_with(&format!("INVITE sip:1002@127.0.0.1:{};", ringing.port)));
    assert!(ruri(&answered).starts_with(&format!("INVITE sip:1002@127.0.0.1:{};", answering.port)));
    assert_eq!(requests(&answered, "BYE").len(), 1);
    let finals: Vec<String> = statuses(&caller)
        .into_iter()
        .filter(|s| !s.starts_with("SIP/2.0 1") && !s.starts_with("SIP/2.0 407"))
        .collect();
    assert!(
        finals.iter().all(|s| s.starts_with("SIP/2.0 200")),
        "the caller sees only the answer, never the 487: {finals:?}"
    );
}

#[test]
fn cancel_before_answer() {
    let r = start("proxy-cancel", free_port());
    let mut phone = Phone::register(&r, "1002");
    phone.answer("proxy_uas_ring.xml", &[]);
    let caller = call(&r, "1001", "1002", "proxy_uac_cancel.xml", &[]);
    let callee = phone.finish();
    assert_eq!(requests(&callee, "CANCEL").len(), 1);
    assert!(first_line(requests(&callee, "INVITE")[0]).starts_with("INVITE sip:1002@127.0.0.1:"));
    assert!(statuses(&caller)
        .iter()
        .any(|s| s.starts_with("SIP/2.0 487")));
    wait_until("the cancelled call to be counted", || {
        (r.metric("sip_calls_total{outcome=\"cancelled\"}") == 1.0).then_some(())
    });
}

#[test]
fn busy_is_relayed() {
    let r = start("proxy-busy", free_port());
    let mut phone = Phone::register(&r, "1002");
    phone.answer("proxy_uas_busy.xml", &[]);
    call(
        &r,
        "1001",
        "1002",
        "proxy_uac_refused.xml",
        &[("EXPECTED_STATUS", "486")],
    );
    let callee = phone.finish();
    assert!(first_line(requests(&callee, "INVITE")[0]).starts_with("INVITE sip:1002@127.0.0.1:"));
    assert_eq!(requests(&callee, "ACK").len(), 1, "the proxy ACKs the 486");
    assert_call_logged(&r, &["extension:1002", "486", "failed"]);
}

/// The final response line the caller got for its authenticated INVITE.
fn refused(r: &Registrar, user: &str, number: &str, status: &str) -> String {
    let caller = call(
        r,
        user,
        number,
        "proxy_uac_refused.xml",
        &[("EXPECTED_STATUS", status)],
    );
    statuses(&caller)
        .into_iter()
        .find(|s| s.starts_with(&format!("SIP/2.0 {status}")))
        .unwrap()
}

#[test]
fn refusals_say_why() {
    let r = start("proxy-refused", free_port());
    assert_eq!(
        refused(&r, "1003", "1002", "403"),
        "SIP/2.0 403 Device is unassigned"
    );
    assert_eq!(
        refused(&r, "1001", "8%20(809)%20123-45-67", "403"),
        "SIP/2.0 403 Restricted: prefix 7809 is blocked"
    );
    assert_eq!(
        refused(&r, "1001", "1003", "480"),
        "SIP/2.0 480 Device is unassigned"
    );
    assert_eq!(
        refused(&r, "1001", "1004", "480"),
        "SIP/2.0 480 Temporarily Unavailable",
        "registered nowhere"
    );
    assert_eq!(refused(&r, "1001", "4242", "404"), "SIP/2.0 404 Not Found");
    assert_eq!(r.metric("sip_calls_total{outcome=\"refused\"}"), 2.0);
    assert_eq!(r.metric("sip_calls_total{outcome=\"unavailable\"}"), 2.0);
    assert_eq!(r.metric("sip_calls_total{outcome=\"not_found\"}"), 1.0);
}

/// The upstream of the trunk: a sipp UAS that challenges, then answers.
struct Upstream {
    port: u16,
    dir: PathBuf,
    child: Child,
}

impl Upstream {
    fn start() -> Upstream {
        Upstream::start_over("u1")
    }

    /// Listening over a sipp transport (`u1`, or `t1` for TCP).
    fn start_over(transport: &str) -> Upstream {
        let port = free_port();
        let dir = temp_dir("upstream");
        let mut args = sipp_args(
            "127.0.0.1:9",
            &scenario("proxy_upstream.xml"),
            "127.0.0.1",
            port,
            transport,
        );
        args.extend(["-timeout", "40"].map(String::from));
        let child = spawn_sipp(&args, &dir);
        let tcp = transport.starts_with('t');
        wait_listening("the upstream sipp to listen", port, tcp);
        Upstream { port, dir, child }
    }

    /// What the upstream received; asserts its own check of the Request-URI (an ereg in its
    /// scenario) held.
    fn received(&self) -> Vec<String> {
        let upstream_log = common::sipp_logs(&self.dir);
        assert!(
            !upstream_log.contains("Failed regexp match"),
            "{upstream_log}"
        );
        common::sipp_received(&self.dir)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn pattern_transform_and_trunk_with_upstream_digest() {
    let upstream = Upstream::start();
    let r = start("proxy-trunk", upstream.port);
    let caller = call(&r, "1001", "8%20(926)%20123-45-67", "proxy_uac.xml", &[]);
    assert!(answered(&caller));
    let seen = upstream.received();
    let invites = requests(&seen, "INVITE");
    assert_eq!(invites.len(), 2, "challenged, then authenticated: {seen:?}");
    for i in &invites {
        assert!(
            first_line(i).starts_with("INVITE sip:79261234567@127.0.0.1:"),
            "the far end sees the transformed number: {i}"
        );
    }
    assert!(!invites[0].contains("Authorization"), "{}", invites[0]);
    assert!(
        invites[1].lines().any(|l| l
            .starts_with("Authorization: Digest username=\"trunkuser\", realm=\"upstream.test\"")),
        "answered with the registration's credentials: {}",
        invites[1]
    );
    assert_eq!(
        requests(&seen, "ACK").len(),
        2,
        "the 401's ACK and the 2xx's ACK"
    );
    assert_eq!(requests(&seen, "BYE").len(), 1);
    assert_call_logged(&r, &["trunk:default/carrier", "79261234567", "answered"]);
}

#[test]
fn trunk_over_tcp_is_connected_to_and_the_call_completes() {
    let upstream = Upstream::start_over("t1");
    let text = config(upstream.port).replace("    transport: UDP\n", "    transport: TCP\n");
    let r = start_with("proxy-trunk-tcp", text);
    let caller = call(&r, "1001", "89261234567", "proxy_uac.xml", &[]);
    assert!(answered(&caller));
    let seen = upstream.received();
    let invites = requests(&seen, "INVITE");
    assert_eq!(invites.len(), 2, "challenged, then authenticated: {seen:?}");
    let prefix = format!(
        "INVITE sip:79261234567@127.0.0.1:{};transport=tcp ",
        upstream.port
    );
    for i in &invites {
        assert!(first_line(i).starts_with(&prefix), "{i}");
        assert!(
            i.lines().any(|l| l.starts_with("Via: SIP/2.0/TCP ")),
            "sent over TCP: {i}"
        );
    }
    // Double Record-Route (RFC 5658): the trunk's side names our TCP listener.
    assert!(
        invites[1]
            .lines()
            .any(|l| l.starts_with("Record-Route: <sip:127.0.0.1:")
                && l.contains(";transport=tcp;lr;sbp=")),
        "{}",
        invites[1]
    );
    assert!(invites[1].contains("Authorization: Digest username=\"trunkuser\""));
    assert_eq!(requests(&seen, "ACK").len(), 2);
    assert_eq!(
        requests(&seen, "BYE").len(),
        1,
        "the BYE reaches the trunk over TCP"
    );
    assert_call_logged(&r, &["trunk:default/carrier", "79261234567", "answered"]);
}

/// A TLS upstream (sipp here has no TLS), on the registrar's own TLS acceptor: answers
/// REGISTER, INVITE and BYE with 200 (its Contact on TLS), takes ACK; keeps every request.
///
/// With `hangup_ca`, it hangs up itself after the ACK: a BYE over a new TLS connection (the
/// registrar's certificate checked against that CA) to the top Record-Route of the INVITE.
fn tls_upstream(
    cert: &Path,
    key: &Path,
    hangup_ca: Option<PathBuf>,
) -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let acceptor = switchboard_registrar::transport::tls::acceptor(cert, key).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, log, hangup_ca) = (acceptor.clone(), log.clone(), hangup_ca.clone());
                tokio::spawn(async move {
                    let mut invite: Option<String> = None;
                    let Ok(mut s) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut buf: Vec<u8> = Vec::new();
                    loop {
                        while buf.first().is_some_and(|b| *b == b'\r' || *b == b'\n') {
                            buf.remove(0);
                        }
                        let text = String::from_utf8_lossy(&buf).into_owned();
                        let whole = text.find("\r\n\r\n").and_then(|end| {
                            let len = text[..end]
                                .lines()
                                .find_map(|l| {
                                    let (n, v) = l.split_once(':')?;
                                    let n = n.trim().to_ascii_lowercase();
                                    (n == "content-length" || n == "l")
                                        .then(|| v.trim().parse::<usize>().ok())?
                                })
                                .unwrap_or(0);
                            (buf.len() >= end + 4 + len).then_some(end + 4 + len)
                        });
                        let Some(n) = whole else {
                            let mut chunk = [0u8; 4096];
                            match s.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(k) => buf.extend_from_slice(&chunk[..k]),
                            }
                            continue;
                        };
                        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                        buf.drain(..n);
                        log.lock().unwrap().push(msg.clone());
                        if msg.starts_with("ACK ") {
                            if let (Some(ca), Some(inv)) = (&hangup_ca, invite.take()) {
                                tokio::spawn(hang_up(ca.clone(), inv, port, log.clone()));
                            }
                            continue;
                        }
                        if msg.starts_with("SIP/2.0") {
                            continue;
                        }
                        if msg.starts_with("INVITE") {
                            invite = Some(msg.clone());
                        }
                        let mut out = String::from("SIP/2.0 200 OK\r\n");
                        for l in msg.lines() {
                            let lower = l.to_ascii_lowercase();
                            let copy = ["via:", "from:", "call-id:", "cseq:", "record-route:"]
                                .iter()
                                .any(|p| lower.starts_with(p));
                            if copy {
                                out.push_str(l);
                                out.push_str("\r\n");
                            } else if lower.starts_with("to:") {
                                out.push_str(l);
                                if !lower.contains("tag=") {
                                    out.push_str(";tag=tlsup");
                                }
                                out.push_str("\r\n");
                            } else if lower.starts_with("contact:") && msg.starts_with("REGISTER") {
                                out.push_str(l);
                                out.push_str(";expires=3600\r\n");
                            }
                        }
                        if msg.starts_with("INVITE") {
                            out.push_str(&format!(
                                "Contact: <sip:127.0.0.1:{port};transport=tls>\r\n"
                            ));
                        }
                        out.push_str("Content-Length: 0\r\n\r\n");
                        if s.write_all(out.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
    });
    (port, seen)
}

/// The TLS upstream's BYE for `invite`, over a new connection to its top Record-Route; the
/// response goes into `log`.
async fn hang_up(
    ca: PathBuf,
    invite: String,
    port: u16,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let header = |name: &str| -> Vec<String> {
        invite
            .lines()
            .filter_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
            .collect()
    };
    let rrs = header("Record-Route:");
    let top = rrs[0].trim_start_matches("<sip:").to_string();
    let hostport = top.split(';').next().unwrap().to_string();
    let contact = header("Contact:")[0]
        .trim_start_matches('<')
        .split('>')
        .next()
        .unwrap()
        .to_string();
    let mut bye = format!(
        "BYE {contact} SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:{port};branch=z9hG4bK-upbye\r\n"
    );
    for rr in &rrs {
        bye.push_str(&format!("Route: {rr}\r\n"));
    }
    bye.push_str(&format!(
        "Max-Forwards: 70\r\nFrom: {};tag=tlsup\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n",
        header("To:")[0],
        header("From:")[0],
        header("Call-ID:")[0]
    ));
    let config = switchboard_registrar::uac::flow::tls_client_config(&[&ca]).unwrap();
    let tcp = tokio::net::TcpStream::connect(hostport).await.unwrap();
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut s = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .unwrap();
    s.write_all(bye.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .map_or(0, |r| r.unwrap_or(0));
    log.lock()
        .unwrap()
        .push(String::from_utf8_lossy(&buf[..n]).into_owned());
}

#[test]
fn trunk_over_tls_is_connected_to_and_the_call_completes() {
    let dir = temp_dir("tls-upstream");
    let (ca, cert, key) = common::test_certificates(&dir);
    let (port, seen) = tls_upstream(&cert, &key, None);
    let text = config(port).replace("    transport: UDP\n", "    transport: TLS\n");
    let text: &'static str = Box::leak(text.into_boxed_str());
    let ca_arg: &'static str = Box::leak(ca.display().to_string().into_boxed_str());
    let r = Registrar::start(
        "proxy-trunk-tls",
        Options {
            config: Some(text),
            tls: Some((&cert, &key)),
            args: &["--uac-ca-file", ca_arg],
            ..Default::default()
        },
    );
    let caller = call(&r, "1001", "89261234567", "proxy_uac.xml", &[]);
    assert!(answered(&caller));
    let got = seen.lock().unwrap().clone();
    let invites = requests(&got, "INVITE");
    assert_eq!(invites.len(), 1, "{got:?}");
    let prefix = format!("INVITE sip:79261234567@127.0.0.1:{port};transport=tls ");
    assert!(
        first_line(invites[0]).starts_with(&prefix),
        "{}",
        invites[0]
    );
    assert!(
        invites[0]
            .lines()
            .any(|l| l.starts_with("Via: SIP/2.0/TLS ")),
        "{}",
        invites[0]
    );
    assert!(
        invites[0]
            .lines()
            .any(|l| l.starts_with("Record-Route: <sip:127.0.0.1:")
                && l.contains(";transport=tls;lr;sbp=")),
        "{}",
        invites[0]
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let all = seen.lock().unwrap().clone();
        if requests(&all, "ACK").len() == 1 && requests(&all, "BYE").len() == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the ACK and BYE over TLS: {all:?}\nregistrar:\n{}",
            r.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn tls_trunk_hangs_up_through_our_tls_record_route() {
    let dir = temp_dir("tls-upstream-bye");
    let (ca, cert, key) = common::test_certificates(&dir);
    let (port, seen) = tls_upstream(&cert, &key, Some(ca.clone()));
    let text = config(port).replace("    transport: UDP\n", "    transport: TLS\n");
    let text: &'static str = Box::leak(text.into_boxed_str());
    let ca_arg: &'static str = Box::leak(ca.display().to_string().into_boxed_str());
    let r = Registrar::start(
        "proxy-trunk-tls-bye",
        Options {
            config: Some(text),
            tls: Some((&cert, &key)),
            args: &["--uac-ca-file", ca_arg],
            ..Default::default()
        },
    );
    let caller = call(&r, "1001", "89261234567", "proxy_uac_callee_bye.xml", &[]);
    assert_eq!(requests(&caller, "BYE").len(), 1, "{caller:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let all = seen.lock().unwrap().clone();
        if all
            .iter()
            .any(|m| m.starts_with("SIP/2.0 200") && m.contains("BYE"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the BYE's 200 back over TLS: {all:?}\nregistrar:\n{}",
            r.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn trusted_peer_calls_without_authenticating() {
    let r = start_with(
        "proxy-trusted",
        config_with(free_port(), "[\"127.0.0.2/32\"]"),
    );
    let mut phone = Phone::register(&r, "1002");
    phone.answer("proxy_uas.xml", &[("ANSWER_DELAY", "0")]);
    let caller = call_from(&r, "127.0.0.2", "pbx", "1002", "proxy_uac_noauth.xml", &[]);
    let callee = phone.finish();
    assert!(
        !statuses(&caller)
            .iter()
            .any(|s| s.starts_with("SIP/2.0 407")),
        "not challenged: {caller:?}"
    );
    assert!(first_line(requests(&callee, "INVITE")[0]).starts_with("INVITE sip:1002@127.0.0.1:"));
    // The same call from an address that is not trusted is challenged.
    let caller = call(
        &r,
        "1001",
        "4242",
        "proxy_uac_refused.xml",
        &[("EXPECTED_STATUS", "404")],
    );
    assert!(statuses(&caller)
        .iter()
        .any(|s| s.starts_with("SIP/2.0 407")));
}

#[test]
fn calls_from_the_upstream_reach_the_registrations_target() {
    // Calls addressed to the registration's Contact user, from the upstream's address
    // (127.0.0.1), go to its target: extension 1002.
    let r = start("proxy-inbound", free_port());
    let mut phone = Phone::register(&r, "1002");
    phone.answer("proxy_uas.xml", &[("ANSWER_DELAY", "0")]);
    let caller = call(&r, "carrier", "trunkuser", "proxy_uac_noauth.xml", &[]);
    let callee = phone.finish();
    assert!(answered(&caller));
    assert!(first_line(requests(&callee, "INVITE")[0]).starts_with("INVITE sip:1002@127.0.0.1:"));
    assert_call_logged(&r, &["extension:1002", "trunkuser", "answered"]);
}

#[test]
fn nobody_answers_480_after_the_ring_timeout() {
    let text: &'static str = Box::leak(config(free_port()).into_boxed_str());
    let r = Registrar::start(
        "proxy-ring-timeout",
        Options {
            config: Some(text),
            args: &["--ring-timeout", "2"],
            ..Default::default()
        },
    );
    let mut phone = Phone::register(&r, "1002");
    phone.answer("proxy_uas_ring.xml", &[]);
    let started = Instant::now();
    let caller = call(
        &r,
        "1001",
        "1002",
        "proxy_uac_refused.xml",
        &[("EXPECTED_STATUS", "480")],
    );
    let callee = phone.finish();
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert_eq!(
        requests(&callee, "CANCEL").len(),
        1,
        "the ringing phone is cancelled"
    );
    assert!(
        statuses(&caller).contains(&"SIP/2.0 480 No Answer".to_string()),
        "{:?}",
        statuses(&caller)
    );
    assert_call_logged(&r, &["extension:1002", "480", "no_answer"]);
}

#[test]
fn a_users_name_or_extension_rings_their_companion_device() {
    let r = start("proxy-user", free_port());
    for dialled in ["alice", "1100"] {
        let mut phone = Phone::register(&r, "1005");
        phone.answer("proxy_uas.xml", &[("ANSWER_DELAY", "0")]);
        call(&r, "1001", dialled, "proxy_uac.xml", &[]);
        let callee = phone.finish();
        assert!(
            first_line(requests(&callee, "INVITE")[0]).starts_with("INVITE sip:1005@127.0.0.1:")
        );
    }
    assert_call_logged(&r, &["user:alice", "answered"]);
}

#[test]
fn message_is_authenticated_and_delivered() {
    let r = start("proxy-message", free_port());
    let mut phone = Phone::register(&r, "1002");
    phone.answer("proxy_uas_message.xml", &[]);
    let caller = call(&r, "1001", "1002", "proxy_uac_message.xml", &[]);
    let callee = phone.finish();
    assert!(statuses(&caller)
        .iter()
        .any(|s| s.starts_with("SIP/2.0 407")));
    let msg = requests(&callee, "MESSAGE");
    assert_eq!(msg.len(), 1);
    assert!(
        msg[0].ends_with("hello from 1001\n") || msg[0].contains("hello from 1001"),
        "{}",
        msg[0]
    );
    assert_eq!(
        r.metric("sip_calls_total{outcome=\"message_delivered\"}"),
        1.0
    );
}

#[test]
fn caller_over_tcp_reaches_a_phone_on_udp() {
    let r = start("proxy-tcp-caller", free_port());
    let mut phone = Phone::register(&r, "1002");
    phone.answer("proxy_uas.xml", &[("ANSWER_DELAY", "0")]);
    let caller = call_with(&r, "127.0.0.1", "t1", "1001", "1002", "proxy_uac.xml", &[]);
    let callee = phone.finish();
    let st = statuses(&caller);
    assert!(st.iter().any(|s| s.starts_with("SIP/2.0 407")), "{st:?}");
    assert!(st.iter().any(|s| s.starts_with("SIP/2.0 200")), "{st:?}");
    let invite = requests(&callee, "INVITE");
    // The phone sees our UDP Via on top of the caller's TCP one.
    assert!(invite[0].contains("Via: SIP/2.0/UDP"), "{}", invite[0]);
    assert!(
        invite[0].contains("SIP/2.0/TCP 127.0.0.1:"),
        "{}",
        invite[0]
    );
    assert_eq!(requests(&callee, "BYE").len(), 1);
}

/// A phone on TCP, by hand: one connection that registers and then takes a call on it, as
/// phones behind NAT do (sipp cannot register and answer on the same connection).
struct TcpPhone {
    stream: std::net::TcpStream,
    local: String,
    buf: Vec<u8>,
}

impl TcpPhone {
    fn register(r: &Registrar, user: &str) -> TcpPhone {
        let stream = std::net::TcpStream::connect(("127.0.0.1", r.sip_port)).unwrap();
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        let local = stream.local_addr().unwrap().to_string();
        let mut p = TcpPhone {
            stream,
            local,
            buf: Vec::new(),
        };
        let call_id = format!("tcp-reg-{user}");
        p.send(&common::register_request(
            "TCP", &p.local, user, 1, &call_id, "",
        ));
        let challenge = p.read();
        assert_eq!(common::status_of(&challenge), 401, "{challenge}");
        let ch = common::header_values(&challenge, "WWW-Authenticate")[0].to_string();
        let auth = common::authorization(
            &ch,
            user,
            &format!("pw-{user}"),
            &format!("sip:{DOMAIN}"),
            1,
        );
        p.send(&common::register_request(
            "TCP", &p.local, user, 2, &call_id, &auth,
        ));
        let ok = p.read();
        assert_eq!(common::status_of(&ok), 200, "{ok}");
        p
    }

    fn send(&mut self, msg: &str) {
        use std::io::Write;
        self.stream.write_all(msg.as_bytes()).unwrap();
    }

    /// The next whole message on the connection.
    fn read(&mut self) -> String {
        use std::io::Read;
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).to_string();
                let len: usize =
                    common::header_values(&format!("{head}\r\n\r\n"), "Content-Length")
                        .first()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                if self.buf.len() >= end + 4 + len {
                    let msg: Vec<u8> = self.buf.drain(..end + 4 + len).collect();
                    return String::from_utf8_lossy(&msg).to_string();
                }
            }
            let mut chunk = [0u8; 4096];
            let n = self
                .stream
                .read(&mut chunk)
                .expect("a message within the deadline");
            assert!(n > 0, "connection closed");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// A response to `req` with the headers RFC 3261 §8.2.6 copies.
    fn respond(&mut self, req: &str, status: &str, body: &str) {
        let head = req.split("\r\n\r\n").next().unwrap();
        let mut out = format!("SIP/2.0 {status}\r\n");
        for line in head.lines().skip(1) {
            let name = line
                .split(':')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            match name.as_str() {
                "via" | "v" | "record-route" | "from" | "f" | "call-id" | "i" | "cseq" => {
                    out.push_str(line);
                    out.push_str("\r\n");
                }
                "to" | "t" => {
                    out.push_str(line);
                    if !line.contains("tag=") {
                        out.push_str(";tag=tcpphone");
                    }
                    out.push_str("\r\n");
                }
                _ => {}
            }
        }
        let contact = format!("<sip:1002@{};transport=tcp>", self.local);
        out.push_str(&format!("Contact: {contact}\r\n"));
        if !body.is_empty() {
            out.push_str("Content-Type: application/sdp\r\n");
        }
        out.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        self.send(&out);
    }
}

#[test]
fn phone_on_tcp_is_rung_through_its_connection() {
    let r = start("proxy-tcp-phone", free_port());
    let mut phone = TcpPhone::register(&r, "1002");
    let b = r.wait_bindings("default/desk-1002", 1);
    assert_eq!(b[0]["transport"], "TCP");
    let invite = tcp_call(&r, &mut phone, "1002");
    assert!(
        invite.contains("Via: SIP/2.0/TCP"),
        "our Via names TCP: {invite}"
    );
}

/// 1001 calls `user` through `r`; `phone` (registered as `user`) rings, answers, gets the ACK and
/// the caller's BYE. Asserts the call was answered; returns the INVITE the phone got.
fn tcp_call(r: &Registrar, phone: &mut TcpPhone, user: &str) -> String {
    let (invite, caller) = std::thread::scope(|scope| {
        let caller = scope.spawn(|| call(r, "1001", user, "proxy_uac.xml", &[]));
        let invite = phone.read();
        assert!(
            invite.starts_with(&format!("INVITE sip:{user}@127.0.0.1:")),
            "{invite}"
        );
        phone.respond(&invite, "180 Ringing", "");
        let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 7000 RTP/AVP 0\r\n";
        phone.respond(&invite, "200 OK", sdp);
        let ack = phone.read();
        assert!(ack.starts_with("ACK "), "{ack}");
        let bye = phone.read();
        assert!(bye.starts_with("BYE "), "{bye}");
        phone.respond(&bye, "200 OK", "");
        (invite, caller.join().unwrap())
    });
    assert!(answered(&caller));
    invite
}

#[test]
fn in_dialog_requests_need_our_record_route_token() {
    // A request with a To tag is relayed only along a Record-Route this proxy issued for the
    // dialog: no open relay for anyone who writes a Route header.
    let r = start("proxy-forged", free_port());
    let c = common::UdpClient::new(format!("127.0.0.1:{}", r.sip_port).parse().unwrap());
    let bye = |route: &str| {
        format!(
            "BYE sip:victim@127.0.0.1:9 SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bK-f{};rport\r\n\
             {route}From: <sip:a@{DOMAIN}>;tag=a\r\nTo: <sip:b@{DOMAIN}>;tag=b\r\nCall-ID: forged\r\n\
             CSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            c.local,
            route.len()
        )
    };
    for route in [
        String::new(),
        format!("Route: <sip:127.0.0.1:{};lr>\r\n", r.sip_port),
        format!("Route: <sip:127.0.0.1:{};lr;sbp>\r\n", r.sip_port),
        format!(
            "Route: <sip:127.0.0.1:{};lr;sbp=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA>\r\n",
            r.sip_port
        ),
    ] {
        let resp = c.exchange(&bye(&route));
        assert_eq!(common::status_of(&resp), 403, "{route}: {resp}");
    }
}

// ------------------------------------------------------------------------------------------
// Across replicas: two registrar processes sharing one redis-server, each listing the other as
// a peer. A phone's binding records the replica holding its flow; a call placed on the other
// replica goes through that one (a Route to it carrying the flow), or straight to a UDP phone
// once that replica is dead.

/// Two replicas on one Redis, each knowing the other, both seeing the other live.
struct Pair {
    _redis: common::RedisServer,
    r1: common::Replica,
    r2: common::Replica,
}

impl Pair {
    fn start(name: &str) -> Pair {
        let redis = common::RedisServer::start(name);
        let mut s1 = common::ReplicaSpec::new(&format!("{name}-r1"), "127.0.0.1");
        let mut s2 = common::ReplicaSpec::new(&format!("{name}-r2"), "127.0.0.1");
        // Shared by the replicas, as the operator's config is: each accepts the other's
        // challenges, Record-Routes and Routes.
        let text = config(free_port()).replacen(
            "hash: \"\"\n",
            "hash: \"\"\nnonceKey: \"00112233445566778899aabbccddeeff\"\n",
            1,
        );
        let (p1, p2) = (s1.peer_arg(), s2.peer_arg());
        for (spec, other) in [(&mut s1, p2), (&mut s2, p1)] {
            spec.config = Some(text.clone());
            spec.args = vec!["--redis-url".into(), redis.url(), "--peer".into(), other];
        }
        let pair = Pair {
            _redis: redis,
            r1: common::Replica::start(s1),
            r2: common::Replica::start(s2),
        };
        for r in [&pair.r1, &pair.r2] {
            wait_live(&r.registrar, 2);
        }
        pair
    }
}

/// Waits until `r` sees `n` live replicas (itself included) in `/debug/cluster`.
fn wait_live(r: &Registrar, n: usize) -> serde_json::Value {
    wait_until(&format!("{n} live replicas"), || {
        let (_, body) = r.debug_get("/debug/cluster")?;
        let doc: serde_json::Value = serde_json::from_str(&body).ok()?;
        (doc["settled"] == true && doc["live"].as_array()?.len() == n).then_some(doc)
    })
}

/// The device's bindings as `r` sees them, with `reach`.
fn device_view(r: &Registrar, device: &str) -> Vec<serde_json::Value> {
    let (status, body) = r
        .debug_get(&format!("/debug/bindings?device={device}"))
        .expect("debug endpoint");
    assert_eq!(status, 200, "{body}");
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    doc["devices"][0]["bindings"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn via_tops(msg: &str) -> Vec<&str> {
    msg.lines().filter(|l| l.starts_with("Via: ")).collect()
}

#[test]
fn a_call_on_one_replica_rings_a_udp_phone_registered_on_the_other() {
    let p = Pair::start("across-udp");
    let mut phone = Phone::register(&p.r1.registrar, "1002");
    // Both replicas see the binding, held by r1: r2 reaches it through r1.
    let b = p.r2.registrar.wait_bindings("default/desk-1002", 1);
    assert_eq!(b[0]["replica"], p.r1.spec.name, "{b:?}");
    let view = device_view(&p.r2.registrar, "default/desk-1002");
    assert_eq!(view[0]["reach"], format!("through {}", p.r1.spec.name));
    assert_eq!(
        device_view(&p.r1.registrar, "default/desk-1002")[0]["reach"],
        "local"
    );

    phone.answer("proxy_uas.xml", &[("ANSWER_DELAY", "0")]);
    let caller = call(&p.r2.registrar, "1001", "1002", "proxy_uac.xml", &[]);
    let callee = phone.finish();
    assert!(answered(&caller));
    let invite = requests(&callee, "INVITE")[0];
    assert!(
        first_line(invite).starts_with("INVITE sip:1002@127.0.0.1:"),
        "{invite}"
    );
    // r1 sent it (its Via on top, r2's below), and both record-routed.
    let vias = via_tops(invite);
    assert!(
        vias[0].contains(&format!("127.0.0.1:{}", p.r1.spec.sip_port)),
        "{vias:?}"
    );
    assert!(
        vias[1].contains(&format!("127.0.0.1:{}", p.r2.spec.sip_port)),
        "{vias:?}"
    );
    let rr: Vec<&str> = invite
        .lines()
        .filter(|l| l.starts_with("Record-Route: "))
        .collect();
    assert_eq!(rr.len(), 2, "{invite}");
    assert!(
        rr[0].contains(&format!(":{};lr;sbp=", p.r1.spec.sip_port)),
        "{rr:?}"
    );
    assert!(
        rr[1].contains(&format!(":{};lr;sbp=", p.r2.spec.sip_port)),
        "{rr:?}"
    );
    assert!(
        !invite.contains(";sbf="),
        "the Route to r1 was consumed: {invite}"
    );
    // The ACK and the caller's BYE follow the route set through both replicas.
    assert_eq!(requests(&callee, "ACK").len(), 1);
    assert_eq!(requests(&callee, "BYE").len(), 1);
}

#[test]
fn across_replicas_a_call_is_cancelled_and_the_callee_hangs_up_through_both() {
    let p = Pair::start("across-cancel");
    let mut phone = Phone::register(&p.r1.registrar, "1002");
    p.r2.registrar.wait_bindings("default/desk-1002", 1);

    // The caller's CANCEL on r2 reaches the phone through r1.
    phone.answer("proxy_uas_ring.xml", &[]);
    let caller = call(&p.r2.registrar, "1001", "1002", "proxy_uac_cancel.xml", &[]);
    let callee = phone.finish();
    assert_eq!(requests(&callee, "CANCEL").len(), 1, "{callee:?}");
    assert!(statuses(&caller)
        .iter()
        .any(|s| s.starts_with("SIP/2.0 487")));

    // The phone's BYE follows the route set back through r1 and r2 to the caller.
    phone.answer("proxy_uas_bye.xml", &[("ANSWER_DELAY", "50")]);
    let caller = call(
        &p.r2.registrar,
        "1001",
        "1002",
        "proxy_uac_callee_bye.xml",
        &[],
    );
    let callee = phone.finish();
    let bye = requests(&caller, "BYE");
    assert_eq!(bye.len(), 1, "{caller:?}");
    let vias = via_tops(bye[0]);
    assert!(
        vias[0].contains(&format!("127.0.0.1:{}", p.r2.spec.sip_port))
            && vias[1].contains(&format!("127.0.0.1:{}", p.r1.spec.sip_port)),
        "through r1, then r2: {vias:?}"
    );
    assert!(answered(&callee));
}

#[test]
fn a_call_on_one_replica_rings_a_tcp_phone_through_the_replica_holding_its_connection() {
    let p = Pair::start("across-tcp");
    let mut phone = TcpPhone::register(&p.r1.registrar, "1002");
    let b = p.r2.registrar.wait_bindings("default/desk-1002", 1);
    assert_eq!(b[0]["transport"], "TCP");
    assert_eq!(b[0]["replica"], p.r1.spec.name);
    let invite = tcp_call(&p.r2.registrar, &mut phone, "1002");
    assert!(
        via_tops(&invite)[0].starts_with("Via: SIP/2.0/TCP"),
        "r1 sent it into the phone's connection: {invite}"
    );
    assert!(
        via_tops(&invite)[1].contains(&format!("127.0.0.1:{}", p.r2.spec.sip_port)),
        "through r2: {invite}"
    );
}

#[test]
fn a_dead_replicas_udp_phone_is_rung_directly_and_its_tcp_phone_after_it_re_registers() {
    let p = Pair::start("across-dead");
    let mut udp_phone = Phone::register(&p.r1.registrar, "1002");
    let tcp_phone = TcpPhone::register(&p.r1.registrar, "1004");
    p.r2.registrar.wait_bindings("default/desk-1002", 1);
    p.r2.registrar.wait_bindings("default/desk-1004", 1);

    p.r1.registrar.signal("KILL");
    let killed = Instant::now();
    wait_live(&p.r2.registrar, 1);
    assert!(killed.elapsed() < Duration::from_secs(10));
    // The bindings outlive r1 (they are in Redis); r2 says how it reaches each.
    assert_eq!(
        device_view(&p.r2.registrar, "default/desk-1002")[0]["reach"],
        "direct"
    );
    assert_eq!(
        device_view(&p.r2.registrar, "default/desk-1004")[0]["reach"],
        "stale"
    );

    // UDP: rung straight from r2.
    udp_phone.answer("proxy_uas.xml", &[("ANSWER_DELAY", "0")]);
    let caller = call(&p.r2.registrar, "1001", "1002", "proxy_uac.xml", &[]);
    let callee = udp_phone.finish();
    assert!(answered(&caller));
    let invite = requests(&callee, "INVITE")[0];
    assert!(
        via_tops(invite)[0].contains(&format!("127.0.0.1:{}", p.r2.spec.sip_port)),
        "{invite}"
    );

    // TCP: its connection died with r1, so the phone is unavailable…
    let refused = refused(&p.r2.registrar, "1001", "1004", "480");
    assert!(refused.contains("480"), "{refused}");
    drop(tcp_phone);
    // …until it re-registers over a connection to r2.
    let mut again = TcpPhone::register(&p.r2.registrar, "1004");
    wait_until("1004's binding to move to r2", || {
        let v = device_view(&p.r2.registrar, "default/desk-1004");
        v.iter().any(|b| b["reach"] == "local").then_some(())
    });
    tcp_call(&p.r2.registrar, &mut again, "1004");
}
