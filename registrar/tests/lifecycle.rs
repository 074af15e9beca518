//! The registrar as a process: malformed input over the wire, config reload (file change and
//! SIGHUP) with bindings kept or dropped, IPv6, metrics and readiness, graceful shutdown.

mod common;

use common::{
    header_values, password, status_of, wait_until, Options, Registrar, UdpClient, DOMAIN,
};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const STANDALONE: &str = include_str!("../../examples/registrar/standalone.yaml");

fn options(call: &str, via_host: &str) -> String {
    format!(
        "OPTIONS sip:{DOMAIN} SIP/2.0\r\nVia: SIP/2.0/UDP {via_host};branch=z9hG4bK-{call}\r\n\
         From: <sip:ping@{DOMAIN}>;tag=p\r\nTo: <sip:{DOMAIN}>\r\nCall-ID: {call}\r\nCSeq: 1 OPTIONS\r\n\
         Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
}

#[test]
fn malformed_messages_are_answered_or_dropped_and_the_registrar_stays_up() {
    let r = Registrar::start("malformed", Options::default());
    let c = UdpClient::new(format!("127.0.0.1:{}", r.sip_port).parse().unwrap());
    // Garbage and truncated heads: nothing to answer with, dropped.
    for junk in [
        &b"\x00\x01\x02garbage"[..],
        b"REGISTER sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4",
        &[0xffu8; 3000][..],
    ] {
        c.send(junk);
    }
    assert!(c.recv(Duration::from_millis(300)).is_none());
    // Answerable: a Content-Length longer than the datagram → 400.
    let short = options("bad-cl", &c.local).replace("Content-Length: 0", "Content-Length: 50");
    let resp = c.exchange(&short);
    assert_eq!(status_of(&resp), 400, "{resp}");
    // Unknown method → 501; an INVITE goes to the proxy: 100 Trying, then a digest challenge.
    let resp = c.exchange(&options("foo", &c.local).replace("OPTIONS", "FOO"));
    assert_eq!(status_of(&resp), 501, "{resp}");
    assert_eq!(
        header_values(&resp, "Allow"),
        vec![switchboard_registrar::service::ALLOW]
    );
    let resp = c.exchange(&options("inv", &c.local).replace("OPTIONS", "INVITE"));
    assert_eq!(status_of(&resp), 100, "{resp}");
    let resp = c.recv(Duration::from_secs(5)).expect("a final response");
    assert_eq!(status_of(&resp), 407, "{resp}");
    assert!(
        !header_values(&resp, "Proxy-Authenticate").is_empty(),
        "{resp}"
    );
    c.send(
        options("inv", &c.local)
            .replace("OPTIONS sip", "ACK sip")
            .replace("1 OPTIONS", "1 ACK")
            .as_bytes(),
    );
    // Still alive: OPTIONS keepalive answered, with received= since the Via names a host that
    // is not the source address (the response goes to the source IP at the sent-by port).
    let port = c.local.rsplit(':').next().unwrap();
    let resp = c.exchange(&options("alive", &format!("phone.invalid:{port}")));
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert!(
        header_values(&resp, "Via")[0].contains("received=127.0.0.1"),
        "{resp}"
    );
    assert!(r.metric("sip_messages_dropped_total{reason=\"unparseable\"}") >= 2.0);

    // TCP: an endless head is cut off at the size limit; the next connection works.
    let mut t = TcpStream::connect(("127.0.0.1", r.sip_port)).unwrap();
    t.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = t.write_all(b"OPTIONS sip:x SIP/2.0\r\nX-Junk: ");
    let _ = t.write_all(&vec![b'a'; 70 * 1024]);
    let mut rest = Vec::new();
    let closed = t.read_to_end(&mut rest).is_ok();
    assert!(closed, "the oversized connection is closed");
    let mut t = TcpStream::connect(("127.0.0.1", r.sip_port)).unwrap();
    t.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    t.write_all(
        options("tcp", "127.0.0.1:1")
            .replace("UDP", "TCP")
            .as_bytes(),
    )
    .unwrap();
    let mut buf = [0u8; 2048];
    let n = t.read(&mut buf).unwrap();
    assert_eq!(status_of(&String::from_utf8_lossy(&buf[..n])), 200);
}

#[test]
fn config_reload_keeps_bindings_of_devices_that_stay() {
    let r = Registrar::start(
        "reload",
        Options {
            config: Some(STANDALONE),
            ..Default::default()
        },
    );
    let path = r.dir.join("config.yaml");
    let c = UdpClient::new(format!("127.0.0.1:{}", r.sip_port).parse().unwrap());
    for user in ["1001", "1002"] {
        let resp = c.register(user, &password(user), &format!("reload-{user}"), "");
        assert_eq!(status_of(&resp), 200, "{resp}");
    }
    r.wait_bindings("default/desk-1001", 1);
    r.wait_bindings("default/softphone-1002", 1);
    assert_eq!(r.metric("switchboard_config_generation"), 1.0);

    // Remove device 1002 (its three lines) by editing the file in place.
    let without_1002: String = {
        let lines: Vec<&str> = STANDALONE.lines().collect();
        let start = lines
            .iter()
            .position(|l| l.contains("id: default/softphone-1002"))
            .unwrap();
        let mut kept: Vec<&str> = lines[..start].to_vec();
        kept.extend(
            lines[start..]
                .iter()
                .skip_while(|l| !l.contains("extension: \"1002\""))
                .skip(1),
        );
        kept.join("\n") + "\n"
    };
    assert!(!without_1002.contains("softphone-1002"));
    std::fs::write(&path, &without_1002).unwrap();
    wait_until("the file change to be reloaded", || {
        (r.metric("switchboard_config_generation") == 2.0).then_some(())
    });
    r.wait_bindings("default/softphone-1002", 0);
    assert_eq!(
        r.wait_bindings("default/desk-1001", 1).len(),
        1,
        "1001 survives the reload"
    );
    wait_until("the device gauges to count the two devices left", || {
        let total = r.metric("sip_devices{state=\"registered\"}")
            + r.metric("sip_devices{state=\"unregistered\"}");
        (total == 2.0).then_some(())
    });

    // A broken file is refused; the config in force stays and still serves.
    std::fs::write(&path, "format: 1\ndomains: [ {").unwrap();
    wait_until("the broken file to be refused", || {
        (r.metric("switchboard_config_reload_errors_total") >= 1.0).then_some(())
    });
    assert_eq!(r.metric("switchboard_config_generation"), 2.0);
    let resp = c.register("1001", &password("1001"), "reload-again", "");
    assert_eq!(status_of(&resp), 200, "{resp}");

    // SIGHUP reloads as well (the watcher sees the write too; either way generation 3 follows).
    std::fs::write(&path, STANDALONE).unwrap();
    r.signal("HUP");
    wait_until("the repaired file to be loaded", || {
        (r.metric("switchboard_config_generation") >= 3.0).then_some(())
    });
    let resp = c.register("1002", &password("1002"), "reload-back", "");
    assert_eq!(status_of(&resp), 200, "{resp}");
}

#[test]
fn ipv6_loopback() {
    let port = common::free_port();
    let v6 = format!("[::1]:{port}");
    let args: &'static [&'static str] = Box::leak(
        vec![
            "--udp",
            Box::leak(v6.clone().into_boxed_str()),
            "--tcp",
            Box::leak(v6.clone().into_boxed_str()),
        ]
        .into_boxed_slice(),
    );
    let r = Registrar::start(
        "ipv6",
        Options {
            args,
            ..Default::default()
        },
    );
    let c = UdpClient::new(v6.parse().unwrap());
    let resp = c.register("1003", &password("1003"), "v6", "");
    assert_eq!(status_of(&resp), 200, "{resp}");
    let b = r.wait_bindings("default/lobby-1003", 1);
    assert!(
        b[0]["source"].as_str().unwrap().starts_with("[::1]:"),
        "{b:?}"
    );
}

#[test]
fn sigterm_exits_zero_and_readiness_reflects_state() {
    let mut r = Registrar::start("shutdown", Options::default());
    assert_eq!(r.get("/healthz").unwrap().0, 200);
    assert_eq!(r.get("/readyz").unwrap().0, 200);
    // An open, idle TCP connection does not hold shutdown up.
    let _idle = TcpStream::connect(("127.0.0.1", r.sip_port)).unwrap();
    let status = r.terminate();
    assert!(status.success(), "exit status {status}");
}

/// `/debug/*` (phone addresses, user agents) is served on the debug listener only; the public
/// one keeps `/metrics` and the probes and answers 404 under `/debug`.
#[test]
fn debug_endpoints_are_off_the_public_port() {
    let r = Registrar::start("debug-port", Options::default());
    let c = UdpClient::new(format!("127.0.0.1:{}", r.sip_port).parse().unwrap());
    assert_eq!(
        status_of(&c.register("1001", &password("1001"), "dbg", "")),
        200
    );
    r.wait_bindings("default/desk-1001", 1);
    for path in [
        "/debug/bindings",
        "/debug/bindings?device=default/desk-1001",
        "/debug/registrations",
        "/debug/cluster",
    ] {
        let (public, body) = r.get(path).expect("public port answers");
        assert_eq!(public, 404, "{path} on the public port: {body}");
        let (debug, body) = r.debug_get(path).expect("debug port answers");
        assert_eq!(debug, 200, "{path} on the debug port: {body}");
    }
    for path in ["/metrics", "/healthz", "/readyz"] {
        assert_eq!(r.get(path).map(|(s, _)| s), Some(200), "{path} public");
        assert_eq!(r.debug_get(path).map(|(s, _)| s), Some(404), "{path} debug");
    }
}

#[test]
fn ha1_subcommand_prints_both_digests() {
    use std::process::{Command, Stdio};
    let mut child = Command::new(common::BIN)
        .args(["ha1", "--user", "Mufasa", "--realm", "testrealm@host.com"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"Circle Of Life\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    // RFC 2617 §3.5's HA1, and the SHA-256 of the same input.
    assert!(
        text.contains("ha1Md5: 939e7578ed9e3c518a452acee763bce9"),
        "{text}"
    );
    let (_, sha) = switchboard_crds::config::ha1("Mufasa", "testrealm@host.com", "Circle Of Life");
    assert!(text.contains(&format!("ha1Sha256: {sha}")), "{text}");
    // And over the auth name with the realm as domain.
    let (md5, sha) = switchboard_crds::config::ha1(
        "Mufasa@testrealm@host.com",
        "testrealm@host.com",
        "Circle Of Life",
    );
    assert!(text.contains(&format!("ha1bMd5: {md5}")), "{text}");
    assert!(text.contains(&format!("ha1bSha256: {sha}")), "{text}");
}

/// A device's own `maxContacts` replaces its site's: two phones registering as 1002 (its limit
/// 1) leave one binding, the newer; two as 1001 (the demo site's 3) leave both.
#[test]
fn a_devices_own_limit_of_contacts_replaces_the_sites() {
    const LINE: &str = "        extension: \"1002\"\n";
    assert!(STANDALONE.contains(LINE));
    let config = STANDALONE.replace(LINE, &format!("{LINE}        maxContacts: 1\n"));
    let r = Registrar::start(
        "max-contacts",
        Options {
            config: Some(&config),
            ..Default::default()
        },
    );
    let mut last = None;
    for user in ["1001", "1002"] {
        for n in 0..2 {
            let phone = UdpClient::new(([127, 0, 0, 1], r.sip_port).into());
            let ok = phone.register(user, &password(user), &format!("mc-{user}-{n}"), "");
            assert_eq!(status_of(&ok), 200, "{ok}");
            last = Some(phone);
        }
    }
    assert_eq!(r.device_bindings("default/desk-1001").len(), 2);
    let kept = r.device_bindings("default/softphone-1002");
    assert_eq!(kept.len(), 1, "{kept:?}");
    let newest = last.unwrap();
    assert!(
        kept[0]["contact"].as_str().unwrap().contains(&newest.local),
        "the newer phone's binding stays: {kept:?}"
    );
}
