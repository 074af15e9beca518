//! SIP over WebSocket (RFC 7118) against the built registrar: the handshake's rules (the `sip`
//! subprotocol, the Origin allow-list), a REGISTER with digest over WS and over WSS (a rustls
//! client verifying the test CA), the RFC 5626 keepalive, and calls in both directions between
//! a phone on a WebSocket (written here, as a browser's JsSIP would talk: a `*.invalid`
//! Contact and Via host, everything over its one connection) and a sipp phone on UDP. The
//! browser itself is in `tests/tests/browser_phone.rs`.

mod common;

use common::sipp::{
    answered, once_within, register_phone, requests, scenario_with, sipp_args, spawn_sipp,
    statuses, user_args, wait_exit, wait_listening,
};
use common::{
    free_port, header_values, password, run_tool, status_of, temp_dir, test_certificates, Options,
    Registrar, DEADLINE, DOMAIN,
};
use rustls::pki_types::ServerName;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message, WebSocket};

/// A byte stream: TCP, or TLS over it.
trait Io: Read + Write {}
impl<T: Read + Write> Io for T {}

/// A phone on a WebSocket, as a browser softphone talks.
struct WsPhone {
    ws: WebSocket<Box<dyn Io>>,
    /// The `.invalid` host of its Via and Contact (RFC 7118 §5).
    host: String,
    /// `WS` or `WSS`.
    transport: &'static str,
    /// Its connection's local address (what the registrar sees as the source).
    local: String,
}

/// Opens a WebSocket to `port`, over TLS verified against `ca` when given, offering `protocol`
/// from `origin`; the handshake's error when refused.
fn connect(
    port: u16,
    ca: Option<&Path>,
    protocol: &str,
    origin: Option<&str>,
) -> Result<WsPhone, tungstenite::Error> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(DEADLINE)).unwrap();
    let local = tcp.local_addr().unwrap().to_string();
    let (scheme, stream): (_, Box<dyn Io>) = match ca {
        None => ("ws", Box::new(tcp)),
        Some(ca) => {
            let config = common::tls_client_config(ca);
            let name = ServerName::try_from("localhost").unwrap();
            let conn = rustls::ClientConnection::new(config, name).unwrap();
            ("wss", Box::new(rustls::StreamOwned::new(conn, tcp)))
        }
    };
    let mut req = format!("{scheme}://localhost:{port}/")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", protocol.parse().unwrap());
    if let Some(o) = origin {
        req.headers_mut().insert("Origin", o.parse().unwrap());
    }
    let (ws, resp) = tungstenite::client::client(req, stream).map_err(|e| match e {
        tungstenite::HandshakeError::Failure(e) => e,
        tungstenite::HandshakeError::Interrupted(_) => panic!("blocking handshake interrupted"),
    })?;
    assert_eq!(resp.headers()["Sec-WebSocket-Protocol"], "sip");
    let host = format!("{:08x}.invalid", rand::random::<u32>());
    let transport = if ca.is_some() { "WSS" } else { "WS" };
    Ok(WsPhone {
        ws,
        host,
        transport,
        local,
    })
}

impl WsPhone {
    /// Connects to `r`'s WS (or WSS, verified against `ca`) listener offering `sip`.
    fn open(r: &Registrar, ca: Option<&Path>) -> WsPhone {
        let port = match ca {
            None => r.ws_port.expect("started with --ws"),
            Some(_) => r.wss_port.expect("started with --wss"),
        };
        connect(port, ca, "sip", Some("https://phone.example.com")).expect("handshake")
    }

    fn send(&mut self, msg: &str) {
        self.ws.send(Message::text(msg)).unwrap();
    }

    /// The next SIP message (each WebSocket message is one, RFC 7118 §5.1).
    fn read(&mut self) -> String {
        loop {
            match self.ws.read().expect("a message within the deadline") {
                Message::Text(t) => return t.to_string(),
                Message::Binary(b) => return String::from_utf8_lossy(&b).to_string(),
                _ => continue,
            }
        }
    }

    /// The next message that is not a 100 Trying.
    fn read_final_or_request(&mut self) -> String {
        loop {
            let m = self.read();
            if !m.starts_with("SIP/2.0 100") {
                return m;
            }
        }
    }

    /// REGISTER as demo user `user` with digest; returns the 200.
    fn register(&mut self, user: &str) -> String {
        let call_id = format!("ws-reg-{}", self.host);
        let (transport, host) = (self.transport, self.host.clone());
        let req = |cseq, extra: &str| {
            common::register_request(transport, &host, user, cseq, &call_id, extra)
        };
        let first = req(1, "");
        self.send(&first);
        let challenge = self.read();
        assert_eq!(status_of(&challenge), 401, "{challenge}");
        let ch = header_values(&challenge, "WWW-Authenticate")[0].to_string();
        let auth = common::authorization(&ch, user, &password(user), &format!("sip:{DOMAIN}"), 1);
        let second = req(2, &auth);
        self.send(&second);
        let ok = self.read();
        assert_eq!(status_of(&ok), 200, "{ok}");
        ok
    }

    /// A response to `req` echoing its Via, Record-Route, From, To (tagged), Call-ID, CSeq.
    fn respond(&mut self, req: &str, status: &str, body: &str) {
        let head = req.split("\r\n\r\n").next().unwrap();
        let mut out = format!("SIP/2.0 {status}\r\n");
        for line in head.lines().skip(1) {
            let name = line.split(':').next().unwrap_or("").trim();
            match name.to_ascii_lowercase().as_str() {
                "via" | "record-route" | "from" | "call-id" | "cseq" => {
                    out.push_str(&format!("{line}\r\n"));
                }
                "to" if !line.contains("tag=") => out.push_str(&format!("{line};tag=ws\r\n")),
                "to" => out.push_str(&format!("{line}\r\n")),
                _ => {}
            }
        }
        out.push_str(&self.contact_header("1002"));
        out.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        self.send(&out);
    }

    fn contact_header(&self, user: &str) -> String {
        let t = self.transport.to_ascii_lowercase();
        format!("Contact: <sip:{user}@{};transport={t}>\r\n", self.host)
    }

    /// A request of this phone's: `method` to `uri` with `extra` headers.
    fn request(&self, method: &str, uri: &str, cseq: u32, dialog: &Dialog, extra: &str) -> String {
        let branch = format!("z9hG4bK-{}-{cseq}-{method}", dialog.call_id);
        format!(
            "{method} {uri} SIP/2.0\r\n\
             Via: SIP/2.0/{} {};branch={branch}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:1001@{DOMAIN}>;tag=ws-caller\r\n\
             To: <sip:1002@{DOMAIN}>{}\r\n\
             Call-ID: {}\r\n\
             CSeq: {cseq} {}\r\n\
             {}{extra}Content-Length: 0\r\n\r\n",
            self.transport,
            self.host,
            dialog
                .to_tag
                .as_deref()
                .map_or(String::new(), |t| format!(";tag={t}")),
            dialog.call_id,
            if method == "ACK" { "INVITE" } else { method },
            self.contact_header("1001"),
        )
    }
}

/// What a caller on a WebSocket knows of its call.
struct Dialog {
    call_id: String,
    to_tag: Option<String>,
}

fn start(name: &str, extra: &[&'static str]) -> (Registrar, std::path::PathBuf) {
    let dir = temp_dir(&format!("{name}-certs"));
    let (ca, cert, key) = test_certificates(&dir);
    let args: &'static [&'static str] = Box::leak(extra.to_vec().into_boxed_slice());
    let r = Registrar::start(
        name,
        Options {
            tls: Some((&cert, &key)),
            websocket: true,
            args,
            ..Default::default()
        },
    );
    (r, ca)
}

#[test]
fn registers_with_digest_over_ws_and_wss() {
    let (r, ca) = start("ws-register", &[]);
    let mut ws = WsPhone::open(&r, None);
    ws.register("1001");
    let mut wss = WsPhone::open(&r, Some(&ca));
    wss.register("1003");
    for (phone, device) in [(&ws, "default/desk-1001"), (&wss, "default/lobby-1003")] {
        let b = r.wait_bindings(device, 1);
        assert_eq!(b[0]["transport"], phone.transport, "{b:?}");
        // The binding points at the connection; its Contact names no reachable host.
        assert_eq!(b[0]["source"], phone.local.as_str(), "{b:?}");
        let contact = b[0]["contact"].as_str().unwrap();
        assert!(contact.contains(&phone.host), "{contact}");
    }
    assert_eq!(r.metric("sip_connections{transport=\"ws\"}"), 1.0);
    assert_eq!(r.metric("sip_connections{transport=\"wss\"}"), 1.0);

    // RFC 5626 keepalive inside a WebSocket message: a double CRLF gets a CRLF.
    wss.send("\r\n\r\n");
    assert_eq!(wss.read(), "\r\n");

    // A closed connection is counted out.
    drop(ws);
    common::wait_until("the WS connection to be counted closed", || {
        (r.metric("sip_connections{transport=\"ws\"}") == 0.0).then_some(())
    });
}

#[test]
fn garbage_is_dropped_and_an_oversized_message_closes_only_its_connection() {
    let (r, _ca) = start("ws-garbage", &[]);
    let mut phone = WsPhone::open(&r, None);
    phone
        .ws
        .send(Message::binary(&b"\x00\x01\xffnot sip"[..]))
        .unwrap();
    phone.send("INVITE nonsense\r\n\r\n");
    // The connection is still served: a REGISTER with digest goes through on it.
    phone.register("1001");
    // A message over the size limit (64 KiB) ends the connection, and nothing else.
    let mut big = WsPhone::open(&r, None);
    big.send(&format!(
        "OPTIONS sip:{DOMAIN} SIP/2.0\r\nX: {}\r\n\r\n",
        "a".repeat(70_000)
    ));
    loop {
        match big.ws.read() {
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                panic!("the oversized message's connection stayed open")
            }
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => continue,
        }
    }
    let mut again = WsPhone::open(&r, None);
    again.register("1002");
}

#[test]
fn handshakes_must_offer_sip_and_come_from_an_allowed_origin() {
    let (r, _ca) = start(
        "ws-handshake",
        &["--ws-allowed-origin", "https://phone.example.com"],
    );
    let port = r.ws_port.unwrap();
    let status = |protocol: &str, origin: Option<&str>| match connect(port, None, protocol, origin)
    {
        Ok(_) => 101,
        Err(tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("unexpected handshake error {e}"),
    };
    assert_eq!(status("chat", Some("https://phone.example.com")), 400);
    assert_eq!(status("sip", Some("https://elsewhere.example.org")), 403);
    assert_eq!(status("sip", Some("https://phone.example.com")), 101);
    assert_eq!(status("chat, sip", None), 101);
    // Refused handshakes hold nothing.
    common::wait_until("refused connections to be released", || {
        (r.metric("sip_connections{transport=\"ws\"}") == 0.0).then_some(())
    });
}

#[test]
fn a_udp_phone_calls_a_websocket_phone_and_hangs_up_through_its_connection() {
    let (r, _ca) = start("ws-callee", &[]);
    let mut phone = WsPhone::open(&r, None);
    phone.register("1002");
    r.wait_bindings("default/softphone-1002", 1);
    let dir = temp_dir("ws-caller-1001");
    let (invite, ack, bye, caller) = std::thread::scope(|scope| {
        let caller = scope.spawn(|| sipp_call(&r, &dir, "1001", "1002"));
        let invite = phone.read();
        phone.respond(&invite, "180 Ringing", "");
        phone.respond(&invite, "200 OK", SDP);
        let ack = phone.read();
        let bye = phone.read();
        phone.respond(&bye, "200 OK", "");
        (invite, ack, bye, caller.join().unwrap())
    });
    // The INVITE went to the .invalid Contact down the connection, with our Via over WS and a
    // Record-Route facing each side: ours over WS naming the connection on top, UDP below.
    assert!(
        invite.starts_with(&format!("INVITE sip:1002@{};transport=ws ", phone.host)),
        "{invite}"
    );
    assert!(invite.contains("Via: SIP/2.0/WS "), "{invite}");
    let rr = record_routes(&invite);
    assert_eq!(rr.len(), 2, "{invite}");
    assert!(
        rr[0].contains(";transport=ws;") && rr[0].contains("sbw=ws/"),
        "{rr:?}"
    );
    assert!(!rr[1].contains("transport="), "{rr:?}");
    // The caller's ACK and BYE followed the Record-Route into the connection.
    assert!(ack.starts_with("ACK "), "{ack}");
    assert!(bye.starts_with("BYE "), "{bye}");
    assert!(answered(&caller), "{:?}", statuses(&caller));
}

#[test]
fn a_websocket_phone_calls_a_udp_phone_and_hangs_up() {
    let (r, _ca) = start("ws-caller", &[]);
    // The callee: sipp registered as 1002 on UDP, answering once.
    let port = free_port();
    let dir = temp_dir("ws-callee-1002");
    let remote = format!("127.0.0.1:{}", r.sip_port);
    let pw = password("1002");
    register_phone(&remote, "1002", DOMAIN, &pw, ("127.0.0.1", port), &dir, 20);
    let path = scenario_with(&dir, "proxy_uas.xml", &[("ANSWER_DELAY", "0")]);
    let mut args = sipp_args("127.0.0.1:9", &path, "127.0.0.1", port, "u1");
    args.extend(once_within(30));
    let mut uas = spawn_sipp(&args, &dir);
    wait_listening("the sipp UAS to listen", port, false);

    let mut phone = WsPhone::open(&r, None);
    phone.register("1001");
    let mut dialog = Dialog {
        call_id: format!("ws-call-{}", phone.host),
        to_tag: None,
    };
    let uri = format!("sip:1002@{DOMAIN}");
    // INVITE, challenged with 407 (ACKed), then again with Proxy-Authorization.
    phone.send(&phone.request("INVITE", &uri, 1, &dialog, ""));
    let challenge = phone.read_final_or_request();
    assert_eq!(status_of(&challenge), 407, "{challenge}");
    phone.send(&phone.request("ACK", &uri, 1, &dialog, ""));
    let ch = header_values(&challenge, "Proxy-Authenticate")[0].to_string();
    let auth =
        switchboard_testkit::sip::authorization(&ch, "INVITE", "1001", &password("1001"), &uri, 1)
            .replacen("Authorization:", "Proxy-Authorization:", 1);
    phone.send(&phone.request("INVITE", &uri, 2, &dialog, &auth));
    let ok = loop {
        let m = phone.read_final_or_request();
        if !m.starts_with("SIP/2.0 18") {
            break m;
        }
    };
    assert_eq!(status_of(&ok), 200, "{ok}\nregistrar:\n{}", r.logs());
    // Our double Record-Route: facing the callee (UDP) on top, facing this phone (WS) below.
    let rr = record_routes(&ok);
    assert_eq!(rr.len(), 2, "{ok}");
    assert!(rr[1].contains(";transport=ws;"), "{rr:?}");
    // The route set is the Record-Route reversed; the remote target the callee's Contact.
    let route = format!("Route: {}\r\nRoute: {}\r\n", rr[1], rr[0]);
    let to = header_values(&ok, "To")[0];
    dialog.to_tag = to.split("tag=").nth(1).map(str::to_string);
    let contact = header_values(&ok, "Contact")[0];
    let target = contact.trim_matches(|c| c == '<' || c == '>');
    phone.send(&phone.request("ACK", target, 2, &dialog, &route));
    phone.send(&phone.request("BYE", target, 3, &dialog, &route));
    let bye_ok = phone.read_final_or_request();
    assert_eq!(status_of(&bye_ok), 200, "{bye_ok}");
    assert!(bye_ok.contains("CSeq: 3 BYE"), "{bye_ok}");

    let status = wait_exit(&mut uas, DEADLINE * 3).expect("the callee's sipp to finish");
    assert!(status.success(), "{}", common::sipp_logs(&dir));
    let got = common::sipp_received(&dir);
    assert_eq!(requests(&got, "ACK").len(), 1, "{got:?}");
    assert_eq!(requests(&got, "BYE").len(), 1, "{got:?}");
}

/// The Record-Route entries of `msg`, in order, whether in one header or several.
fn record_routes(msg: &str) -> Vec<String> {
    header_values(msg, "Record-Route")
        .into_iter()
        .flat_map(|v| v.split(">,"))
        .map(|e| {
            let e = e.trim();
            if e.ends_with('>') {
                e.to_string()
            } else {
                format!("{e}>")
            }
        })
        .collect()
}

const SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 7000 RTP/AVP 0\r\n";

/// sipp as `user` on UDP calling `number` once with `proxy_uac.xml` (answers the 407, hangs
/// up); returns what it received.
fn sipp_call(r: &Registrar, dir: &Path, user: &str, number: &str) -> Vec<String> {
    let path = scenario_with(dir, "proxy_uac.xml", &[]);
    let remote = format!("127.0.0.1:{}", r.sip_port);
    let mut args = sipp_args(&remote, &path, "127.0.0.1", free_port(), "u1");
    args.extend(once_within(30));
    args.extend(user_args(user, DOMAIN, Some(&password(user))));
    args.extend(["-s", number].map(String::from));
    let out = run_tool("sipp", &args, dir, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "the call from {user} to {number} failed:\n{}\n{}\nregistrar:\n{}",
        String::from_utf8_lossy(&out.stdout),
        common::sipp_logs(dir),
        r.logs()
    );
    common::sipp_received(dir)
}
