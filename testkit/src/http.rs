//! Plain HTTP against the binaries' own endpoints (`/metrics`, `/readyz`, `/debug/*`), and a
//! local endpoint that records what the binaries send it ([`HttpReceiver`]: callbacks).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A minimal HTTP/1.0 GET to `127.0.0.1:PORT`: the status and the body.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// The sum of every series of a metric family in a `/metrics` body (`name` alone or
/// `name{labels}`), 0 if absent.
pub fn metric_sum(body: &str, name: &str) -> f64 {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let value = if rest.starts_with('{') {
                rest.rsplit_once('}')?.1
            } else if rest.starts_with(' ') {
                rest
            } else {
                return None;
            };
            value.trim().parse::<f64>().ok()
        })
        .sum()
}

/// A request an [`HttpReceiver`] took.
#[derive(Debug, Clone)]
pub struct Received {
    /// Request line (`POST /hooks HTTP/1.1`).
    pub line: String,
    /// Headers, names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    /// The body (by Content-Length).
    pub body: Vec<u8>,
}

impl Received {
    /// The first value of header `name` (any case), or "".
    pub fn header(&self, name: &str) -> &str {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

/// A local HTTP/1.1 endpoint (webhooks, callbacks) on a loopback port: records every request
/// and answers the n-th (from 0) with the status `answer(n)` and no body, closing the
/// connection. Runs on its own threads until the test binary exits.
pub struct HttpReceiver {
    /// Its port on 127.0.0.1.
    pub port: u16,
    received: std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
}

impl HttpReceiver {
    /// Starts one.
    pub fn start(answer: impl Fn(usize) -> u16 + Send + Sync + 'static) -> HttpReceiver {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = listener.local_addr().expect("local address").port();
        let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = received.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let Some(req) = read_request(&conn) else {
                    continue;
                };
                let n = {
                    let mut log = log.lock().expect("receiver log");
                    log.push(req);
                    log.len() - 1
                };
                let mut conn = conn;
                let _ = write!(
                    conn,
                    "HTTP/1.1 {} Answer\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    answer(n)
                );
            }
        });
        HttpReceiver { port, received }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Every request so far, in order.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("receiver log").clone()
    }
}

fn read_request(conn: &TcpStream) -> Option<Received> {
    use std::io::BufRead;
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut reader = std::io::BufReader::new(conn);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (n, v) = h.split_once(':')?;
        headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let len = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some(Received {
        line: line.trim_end().to_string(),
        headers,
        body,
    })
}
