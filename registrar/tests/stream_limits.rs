//! TCP connections held by one source: at most `--max-connections-per-source` from one address
//! (another address still gets in), and a connection that sends nothing is closed once
//! `--tcp-first-message-timeout` has passed, while one that sent a message stays open.

mod common;

use common::{register_request, status_of, wait_until, Options, Registrar};
use socket2::{Domain, Socket, Type};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// A TCP connection to the registrar from the loopback address `from`.
fn connect(r: &Registrar, from: &str) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let local: SocketAddr = format!("{from}:0").parse().unwrap();
    socket.bind(&local.into()).unwrap();
    let remote: SocketAddr = format!("127.0.0.1:{}", r.sip_port).parse().unwrap();
    socket.connect(&remote.into()).unwrap();
    let stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
}

/// Whether the server closed `s` (a read returns end of stream) within its read timeout.
fn closed_by_server(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 512];
    matches!(s.read(&mut buf), Ok(0))
}

/// A REGISTER over `s` (no credentials); the status of the answer.
fn register_over(s: &mut TcpStream, call_id: &str) -> u16 {
    try_register_over(s, call_id).expect("an answer, not a closed connection")
}

/// The status of a REGISTER over `s`, or `None` when the server closed it instead.
fn try_register_over(s: &mut TcpStream, call_id: &str) -> Option<u16> {
    let local = s.local_addr().unwrap().to_string();
    s.write_all(register_request("TCP", &local, "1001", 1, call_id, "").as_bytes())
        .ok()?;
    let mut buf = vec![0u8; 8192];
    match s.read(&mut buf) {
        Ok(n) if n > 0 => Some(status_of(&String::from_utf8_lossy(&buf[..n]))),
        _ => None,
    }
}

#[test]
fn one_address_cannot_hold_every_connection() {
    let r = Registrar::start(
        "per-source",
        Options {
            args: &["--max-connections-per-source", "3"],
            ..Default::default()
        },
    );
    let mut held: Vec<TcpStream> = (0..3).map(|_| connect(&r, "127.0.0.1")).collect();
    // Each of the three is served.
    assert_eq!(register_over(&mut held[0], "held-0"), 401);
    // The fourth from the same address is closed at once …
    let mut fourth = connect(&r, "127.0.0.1");
    assert!(closed_by_server(&mut fourth));
    assert_eq!(
        r.metric("sip_connections_refused_total{reason=\"source_limit\"}"),
        1.0
    );
    // … while a phone on another address gets in.
    let mut phone = connect(&r, "127.0.0.2");
    assert_eq!(register_over(&mut phone, "other-address"), 401);
    // A slot comes free when a held connection closes.
    drop(held.pop());
    wait_until("a slot to come free", || {
        let mut again = connect(&r, "127.0.0.1");
        (try_register_over(&mut again, "retry") == Some(401)).then_some(())
    });
}

#[test]
fn a_silent_connection_is_closed_after_the_first_message_deadline() {
    let r = Registrar::start(
        "first-message",
        Options {
            args: &["--tcp-first-message-timeout", "1"],
            ..Default::default()
        },
    );
    let opened = Instant::now();
    let mut silent = connect(&r, "127.0.0.1");
    let mut talking = connect(&r, "127.0.0.1");
    assert_eq!(register_over(&mut talking, "first"), 401);
    assert!(
        closed_by_server(&mut silent),
        "the silent connection is closed"
    );
    let waited = opened.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "closed after {waited:?}"
    );
    assert_eq!(
        r.metric("sip_connections_closed_total{reason=\"first_message_timeout\"}"),
        1.0
    );
    // The connection that sent a message is past its deadline too, and still served.
    assert_eq!(register_over(&mut talking, "second"), 401);
}
