//! RFC 4475's torture messages (`tests/corpus/rfc4475/`, in the RFC's notation) and what the
//! tests sending them need: a peer on a fixed loopback address at port 5060 (where a response
//! to a Via without `rport` or port goes) and 5050 (`quotbal`'s Via port), and a callee that
//! answers what the proxy forwards with 486.

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::header_values;

/// The corpus directory.
pub fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/rfc4475")
}

/// The wire bytes of the message named `name` (`wsinv`).
pub fn load(name: &str) -> Vec<u8> {
    let path = corpus_dir().join(format!("{name}.sip"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    decode(&text)
}

/// Every message of the corpus: name and wire bytes, sorted by name.
pub fn all() -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .filter_map(|e| {
            let path = e.unwrap().path();
            let name = path
                .file_name()?
                .to_str()?
                .strip_suffix(".sip")?
                .to_string();
            Some((name.clone(), load(&name)))
        })
        .collect();
    out.sort();
    out
}

/// RFC 4475 §2's notation to octets: line breaks are CRLF, `<allOneLine>` blocks are one line,
/// `<hex>..</hex>` are octets.
pub fn decode(text: &str) -> Vec<u8> {
    let mut lines: Vec<String> = Vec::new();
    let mut joining: Option<String> = None;
    for line in text.split('\n') {
        match (line, joining.as_mut()) {
            ("<allOneLine>", None) => joining = Some(String::new()),
            ("</allOneLine>", Some(_)) => lines.push(joining.take().unwrap()),
            (l, Some(j)) => j.push_str(l),
            (l, None) => lines.push(l.to_string()),
        }
    }
    assert!(joining.is_none(), "unterminated <allOneLine>");
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b"\r\n");
        }
        let mut rest = line.as_str();
        while let Some(start) = rest.find("<hex>") {
            out.extend_from_slice(&rest.as_bytes()[..start]);
            let end = rest[start..].find("</hex>").expect("closed <hex>") + start;
            let hex = &rest[start + 5..end];
            out.extend(
                (0..hex.len())
                    .step_by(2)
                    .map(|k| u8::from_str_radix(&hex[k..k + 2], 16).expect("hex digits")),
            );
            rest = &rest[end + 6..];
        }
        out.extend_from_slice(rest.as_bytes());
    }
    out
}

/// The value of the first header `name` (or its compact form `short`) of a message, unfolded
/// and with runs of whitespace made one space: what a response copying it carries.
pub fn header(message: &[u8], name: &str, short: &str) -> Option<String> {
    let text = String::from_utf8_lossy(message);
    let unfolded = text
        .split("\r\n\r\n")
        .next()
        .unwrap_or("")
        .replace("\r\n ", " ")
        .replace("\r\n\t", " ");
    let value = header_values(&unfolded, name)
        .first()
        .copied()
        .or_else(|| header_values(&unfolded, short).first().copied())?;
    Some(value.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// A SIP peer at `ip`:5060 and `ip`:5050 on loopback, sending from the first.
pub struct Peer {
    sockets: Vec<UdpSocket>,
    /// Its address.
    pub addr: SocketAddr,
}

impl Peer {
    /// Binds both ports on `ip` (a loopback address no other test uses: `127.0.44.75`).
    pub fn bind(ip: &str) -> Peer {
        let sockets: Vec<UdpSocket> = [5060, 5050]
            .iter()
            .map(|port| {
                let s = UdpSocket::bind((ip, *port))
                    .unwrap_or_else(|e| panic!("binding {ip}:{port}: {e}"));
                s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
                s
            })
            .collect();
        let addr = sockets[0].local_addr().unwrap();
        Peer { sockets, addr }
    }

    /// Sends `data` to `to`.
    pub fn send(&self, to: SocketAddr, data: &[u8]) {
        self.sockets[0].send_to(data, to).unwrap();
    }

    /// The next datagram on either port within `wait`.
    pub fn recv(&self, wait: Duration) -> Option<String> {
        let deadline = Instant::now() + wait;
        let mut buf = vec![0u8; 65_536];
        while Instant::now() < deadline {
            for s in &self.sockets {
                if let Ok((n, _)) = s.recv_from(&mut buf) {
                    return Some(String::from_utf8_lossy(&buf[..n]).into_owned());
                }
            }
        }
        None
    }

    /// Sends a request and waits for its final response: the first non-1xx answer with the
    /// request's CSeq and (when it has one) Call-ID. Others (retransmitted answers to earlier
    /// requests, provisionals) are skipped.
    pub fn request(&self, to: SocketAddr, data: &[u8], wait: Duration) -> Option<String> {
        let cseq = header(data, "CSeq", "CSeq");
        let call_id = header(data, "Call-ID", "i");
        self.send(to, data);
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let resp = self.recv(left)?;
            let ours = header_values(&resp, "CSeq").first().map(|s| s.to_string()) == cseq
                && (call_id.is_none()
                    || header_values(&resp, "Call-ID")
                        .first()
                        .map(|s| s.to_string())
                        == call_id);
            if ours && super::status_of(&resp) >= 200 {
                return Some(resp);
            }
        }
    }
}

/// A UAS on 127.0.0.1 that answers every INVITE with 486 and remembers its Call-ID.
pub struct Callee {
    /// Its address (register it as a Contact).
    pub addr: SocketAddr,
    invites: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Callee {
    /// Registers `user@domain` (digest, MD5) at `registrar` from its socket, then answers.
    pub fn start(registrar: SocketAddr, domain: &str, user: &str, password: &str) -> Callee {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        register(&socket, registrar, domain, user, password);
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let invites = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen, halt) = (invites.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            while !halt.load(Ordering::Relaxed) {
                let Ok((n, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                if !msg.starts_with("INVITE ") {
                    continue;
                }
                let call_id = header_values(&msg, "Call-ID")
                    .first()
                    .map(|s| s.to_string());
                seen.lock().unwrap().push(call_id.unwrap_or_default());
                let _ = socket.send_to(busy(&msg).as_bytes(), from);
            }
        });
        Callee {
            addr,
            invites,
            stop,
            thread: Some(thread),
        }
    }

    /// The Call-IDs of the INVITEs received so far (retransmissions included).
    pub fn invites(&self) -> Vec<String> {
        self.invites.lock().unwrap().clone()
    }
}

impl Drop for Callee {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// REGISTER → 401 → REGISTER with digest → 200 over `socket`.
fn register(socket: &UdpSocket, registrar: SocketAddr, domain: &str, user: &str, password: &str) {
    use switchboard_testkit::sip::{authorization, register_request};
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let local = socket.local_addr().unwrap().to_string();
    let exchange = |msg: String| {
        socket.send_to(msg.as_bytes(), registrar).unwrap();
        let mut buf = vec![0u8; 65_536];
        let (n, _) = socket.recv_from(&mut buf).expect("an answer to REGISTER");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let first = exchange(register_request(
        domain,
        "UDP",
        &local,
        user,
        1,
        "callee-reg",
        "",
    ));
    assert_eq!(super::status_of(&first), 401, "{first}");
    let challenge = header_values(&first, "WWW-Authenticate")[0].to_string();
    let auth = authorization(
        &challenge,
        "REGISTER",
        user,
        password,
        &format!("sip:{domain}"),
        1,
    );
    let ok = exchange(register_request(
        domain,
        "UDP",
        &local,
        user,
        2,
        "callee-reg",
        &auth,
    ));
    assert_eq!(super::status_of(&ok), 200, "{ok}");
}

/// A 486 to a request: its Vias, From, To with a tag, Call-ID and CSeq copied.
fn busy(request: &str) -> String {
    let mut out = String::from("SIP/2.0 486 Busy Here\r\n");
    for line in request
        .split("\r\n\r\n")
        .next()
        .unwrap_or("")
        .lines()
        .skip(1)
    {
        let Some((name, _)) = line.split_once(':') else {
            continue;
        };
        match name.trim().to_ascii_lowercase().as_str() {
            "via" | "v" | "from" | "f" | "call-id" | "i" | "cseq" => {
                out.push_str(line);
                out.push_str("\r\n");
            }
            "to" | "t" => {
                out.push_str(line);
                out.push_str(";tag=callee\r\n");
            }
            _ => {}
        }
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}
