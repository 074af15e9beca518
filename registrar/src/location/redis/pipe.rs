//! One connection to Redis, pipelined: every caller on a runtime appends its command to one
//! buffer and waits for its reply; a task of the connection's own writes what has been
//! appended in one system call and hands the replies, which Redis sends in order, to the
//! callers in the order they wrote.
//!
//! The task, not the caller, writes: it runs once the callers' task waits, so the commands of
//! the messages handled together go out in one write. A caller writing its own command when
//! nothing was queued ahead (tried) saved the task's wake-up, about 2 000 instructions per
//! REGISTER at 200/s, but made a write per command under load: at 10 000 registrations/s the
//! registrar's CPU per registration with Redis rose from 1.16-1.26 to 1.41-1.58 times the
//! memory store's (`bench/scale`, "The script call and one task per socket").
//!
//! Written here rather than taken from the `redis` crate's `ConnectionManager` (which this
//! replaces; the crate still packs the commands and defines the values and errors): the
//! manager's multiplexed connection passes each command through a channel, a `Sink`, a codec
//! and a `combine` parser, about 9 100 instructions per REGISTER's command beside packing it,
//! against about 4 600 here, system calls' wrappers included (`bench/scale`, "A connection of
//! our own").
//!
//! The connection is made on first use and made again on the next use after it failed; callers
//! that arrive while an attempt is under way share its outcome instead of each making one. A
//! connection that answers nothing for [`Timing::stalled`] while commands wait is given up
//! (Redis hung, or its host gone without a reset): the next command connects afresh.
//!
//! A caller waits [`Timing::command`] at most, connecting included: the connection's task
//! fails the callers whose time is up (their replies, should they come, are dropped), on one
//! timer it re-arms lazily. A timer per command (`tokio::time::timeout` around each call, as
//! before) cost a timer-wheel entry and its removal per command and, whenever it was the
//! earliest, a wake-up of the runtime's driver (an `eventfd` write): about a fifth of a system
//! call per registration at 10 000/s (`bench/scale/README.md`).

use super::resp;
use redis::aio::ConnectionLike;
use redis::{
    Cmd, ConnectionAddr, ConnectionInfo, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult,
    Value,
};
use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, Notify};

/// The connection's time limits.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// Connecting, the handshake included.
    pub connect: Duration,
    /// Without a reply for this long while commands wait, the connection is given up.
    pub stalled: Duration,
    /// A caller's wait for its reply, connecting included.
    pub command: Duration,
}

/// A connection to one Redis (cheap to clone: the clones share it). Used from one runtime: its
/// task runs on the runtime that first needed it connected.
#[derive(Clone)]
pub struct Pipe {
    shared: Arc<Shared>,
}

struct Shared {
    info: ConnectionInfo,
    timing: Timing,
    state: parking_lot::Mutex<State>,
    /// One connection attempt at a time.
    connecting: tokio::sync::Mutex<()>,
}

struct State {
    /// The live connection, if any (its task ends once this is another or none).
    live: Option<Live>,
    /// The number of the latest connection made.
    made: u64,
    /// Commands appended and not yet taken by the task.
    out: Vec<u8>,
    /// Callers waiting, in the order their commands were appended.
    waiting: VecDeque<Waiter>,
    /// When a reply last arrived, or the first of the waiting callers appended its command.
    progress: Instant,
    /// The last failed attempt: when it ended, and why.
    failed: Option<(Instant, String)>,
}

/// A connection's number and what wakes its task (commands to write, or the connection given
/// up): each connection has its own, so a task still ending cannot take another's wake-up.
struct Live {
    id: u64,
    wake: Arc<Notify>,
}

/// A caller waiting for its replies.
struct Waiter {
    wants: Wants,
    /// Taken when the caller is answered, or told its time is up (the waiter then stays, to
    /// take the replies still due to it).
    reply: Option<oneshot::Sender<RedisResult<Value>>>,
    /// When the caller's time is up.
    deadline: Instant,
}

/// The replies a caller waits for.
enum Wants {
    /// One command's reply, as it is.
    One,
    /// A pipeline's: `left` replies still to come, of which the first `skip` (a transaction's
    /// `OK` and `QUEUED`s) are not kept; the kept ones go back as one array.
    Many {
        skip: usize,
        left: usize,
        got: Vec<Value>,
    },
}

impl Pipe {
    /// A connection to `info`'s Redis, made on first use. Only plain TCP is spoken (`redis://`).
    pub fn new(info: ConnectionInfo, timing: Timing) -> RedisResult<Pipe> {
        if !matches!(info.addr(), ConnectionAddr::Tcp(..)) {
            return Err(RedisError::from((
                ErrorKind::InvalidClientConfig,
                "only redis://host:port/db is supported",
                format!("{}", info.addr()),
            )));
        }
        Ok(Pipe {
            shared: Arc::new(Shared {
                info,
                timing,
                state: parking_lot::Mutex::new(State {
                    live: None,
                    made: 0,
                    out: Vec::new(),
                    waiting: VecDeque::new(),
                    progress: Instant::now(),
                    failed: None,
                }),
                connecting: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// Sends one command already in the protocol's bytes (a script's call, [`super::Lua`]) and
    /// waits for its reply; an error reply is an `Err`. Unlike the crate's `query_async`, an
    /// error inside an array is left in place (a script's answer holds none), sparing a copy
    /// of every array.
    pub(crate) async fn query_packed(&self, packed: &[u8]) -> RedisResult<Value> {
        match self
            .send(|out| out.extend_from_slice(packed), Wants::One)
            .await?
        {
            Value::ServerError(e) => Err(e.into()),
            value => Ok(value),
        }
    }

    /// Appends a command (written by `write`) and waits for its replies.
    async fn send(&self, write: impl FnOnce(&mut Vec<u8>), wants: Wants) -> RedisResult<Value> {
        let deadline = Instant::now() + self.shared.timing.command;
        self.connected().await?;
        let (reply, answer) = oneshot::channel();
        {
            let mut state = self.shared.state.lock();
            if state.live.is_none() {
                return Err(closed("the connection to Redis was lost"));
            }
            let now = Instant::now();
            if state.waiting.is_empty() {
                state.progress = now;
            } else if now.duration_since(state.progress) > self.shared.timing.stalled {
                let stalled = self.shared.timing.stalled;
                tracing::warn!(?stalled, "Redis answered nothing; connecting afresh");
                let waiting = state.give_up();
                drop(state);
                fail(waiting, || {
                    closed(&format!("Redis answered nothing for {stalled:?}"))
                });
                return Err(closed("Redis stopped answering; reconnecting"));
            }
            // Under a steady stream of commands the task may not go idle to see its timer.
            state.expire(now, self.shared.timing.command);
            write(&mut state.out);
            state.waiting.push_back(Waiter {
                wants,
                reply: Some(reply),
                deadline,
            });
            if let Some(live) = &state.live {
                live.wake.notify_one();
            }
        }
        answer
            .await
            .unwrap_or_else(|_| Err(closed("the connection to Redis was lost")))
    }

    /// Makes the connection if none is live: one attempt at a time, and a caller that waited
    /// for another's attempt takes its outcome.
    async fn connected(&self) -> RedisResult<()> {
        if self.shared.state.lock().live.is_some() {
            return Ok(());
        }
        let arrived = Instant::now();
        let _one = self.shared.connecting.lock().await;
        {
            let state = self.shared.state.lock();
            if state.live.is_some() {
                return Ok(());
            }
            if let Some((at, why)) = &state.failed {
                if *at >= arrived {
                    return Err(closed(&format!("Redis unreachable: {why}")));
                }
            }
        }
        let made = tokio::time::timeout(self.shared.timing.connect, connect(&self.shared.info))
            .await
            .unwrap_or_else(|_| {
                Err(closed(&format!(
                    "no connection within {:?}",
                    self.shared.timing.connect
                )))
            });
        let mut state = self.shared.state.lock();
        match made {
            Ok(stream) => {
                state.made += 1;
                let live = Live {
                    id: state.made,
                    wake: Arc::new(Notify::new()),
                };
                tokio::spawn(run(self.shared.clone(), stream, live.id, live.wake.clone()));
                state.live = Some(live);
                state.failed = None;
                Ok(())
            }
            Err(e) => {
                state.failed = Some((Instant::now(), e.to_string()));
                Err(e)
            }
        }
    }
}

impl ConnectionLike for Pipe {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(self.send(|out| cmd.write_packed_command(out), Wants::One))
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            if offset + count == 0 {
                return Ok(Vec::new());
            }
            let wants = Wants::Many {
                skip: offset,
                left: offset + count,
                got: Vec::with_capacity(count),
            };
            let write = |out: &mut Vec<u8>| out.extend_from_slice(&pipeline.get_packed_pipeline());
            match self.send(write, wants).await? {
                Value::Array(replies) => Ok(replies),
                _ => unreachable!("a pipeline's replies come back as an array"),
            }
        })
    }

    fn get_db(&self) -> i64 {
        self.shared.info.redis_settings().db()
    }
}

impl State {
    /// Whether connection `id` is the live one.
    fn is_live(&self, id: u64) -> bool {
        self.live.as_ref().is_some_and(|live| live.id == id)
    }

    /// Forgets the live connection (its task is woken to end) and what was waiting on it.
    fn give_up(&mut self) -> VecDeque<Waiter> {
        if let Some(live) = self.live.take() {
            live.wake.notify_one();
        }
        self.out.clear();
        std::mem::take(&mut self.waiting)
    }

    /// Gives a reply to the caller it belongs to (the first waiting).
    fn answer(&mut self, value: Value) -> RedisResult<()> {
        let Some(first) = self.waiting.front_mut() else {
            return Err(RedisError::from((
                ErrorKind::Parse,
                "Redis sent a reply to no command",
            )));
        };
        let done = match &mut first.wants {
            Wants::One => Some(value),
            Wants::Many { skip, left, got } => {
                *left -= 1;
                if *skip > 0 {
                    *skip -= 1;
                } else {
                    got.push(value);
                }
                (*left == 0).then(|| Value::Array(std::mem::take(got)))
            }
        };
        if let Some(value) = done {
            let waiter = self.waiting.pop_front().expect("the first waiter");
            // Under the lock: sending only schedules the caller's task.
            if let Some(reply) = waiter.reply {
                let _ = reply.send(Ok(value));
            }
        }
        Ok(())
    }

    /// Tells the callers whose time is up that it is, from the oldest to the first whose
    /// time is not.
    fn expire(&mut self, now: Instant, limit: Duration) {
        let live = self.waiting.iter_mut().filter(|w| w.reply.is_some());
        for w in live.take_while(|w| w.deadline <= now) {
            if let Some(reply) = w.reply.take() {
                let _ = reply.send(Err(timed_out(limit)));
            }
        }
    }
}

/// Tells every waiting caller the connection failed.
fn fail(waiting: VecDeque<Waiter>, error: impl Fn() -> RedisError) {
    for reply in waiting.into_iter().filter_map(|w| w.reply) {
        let _ = reply.send(Err(error()));
    }
}

fn closed(why: &str) -> RedisError {
    RedisError::from(io::Error::new(io::ErrorKind::ConnectionAborted, why))
}

fn timed_out(limit: Duration) -> RedisError {
    let why = format!("no answer within {limit:?}");
    RedisError::from(io::Error::new(io::ErrorKind::TimedOut, why))
}

/// A new connection, authenticated and on its database.
async fn connect(info: &ConnectionInfo) -> RedisResult<TcpStream> {
    let ConnectionAddr::Tcp(host, port) = info.addr() else {
        unreachable!("Pipe::new admits TCP only");
    };
    let mut stream = TcpStream::connect((host.as_str(), *port)).await?;
    stream.set_nodelay(true)?;
    let settings = info.redis_settings();
    if let Some(password) = settings.password() {
        let mut auth = redis::cmd("AUTH");
        if let Some(user) = settings.username() {
            auth.arg(user);
        }
        handshake(&mut stream, auth.arg(password)).await?;
    }
    if settings.db() != 0 {
        handshake(&mut stream, redis::cmd("SELECT").arg(settings.db())).await?;
    }
    Ok(stream)
}

/// Sends one command on a connection not yet shared and reads its reply.
async fn handshake(stream: &mut TcpStream, cmd: &Cmd) -> RedisResult<()> {
    stream.write_all(&cmd.get_packed_command()).await?;
    let mut input = Vec::with_capacity(256);
    loop {
        if let Some((value, _)) = resp::reply(&input)? {
            return value.extract_error().map(drop);
        }
        if stream.read_buf(&mut input).await? == 0 {
            return Err(closed("Redis closed the connection during the handshake"));
        }
    }
}

/// The connection's task: writes and reads until the connection fails or is given up.
async fn run(shared: Arc<Shared>, stream: TcpStream, id: u64, wake: Arc<Notify>) {
    let Err(e) = pump(&shared, &stream, id, &wake).await else {
        return;
    };
    let mut state = shared.state.lock();
    if !state.is_live(id) {
        return;
    }
    tracing::warn!(error = %e, "connection to Redis lost; reconnecting on the next command");
    let waiting = state.give_up();
    drop(state);
    let why = e.to_string();
    fail(waiting, || closed(&why));
}

/// Bytes read at once at least.
const READ_SPACE: usize = 16 * 1024;

/// Writes what callers appended and hands out the replies read, until an error (`Err`) or
/// until the connection is no longer the live one (`Ok`).
async fn pump(shared: &Shared, stream: &TcpStream, id: u64, wake: &Notify) -> RedisResult<()> {
    let mut input = Vec::with_capacity(READ_SPACE);
    let (mut output, mut written) = (Vec::new(), 0);
    // When the oldest caller's time is up; armed lazily: it may fire early (that caller was
    // answered), and is then set for the one waiting now.
    let mut timer = Box::pin(tokio::time::sleep(Duration::ZERO));
    let mut armed: Option<Instant> = None;
    loop {
        let next_deadline = {
            let mut state = shared.state.lock();
            if !state.is_live(id) {
                return Ok(());
            }
            if written == output.len() {
                output.clear();
                written = 0;
                std::mem::swap(&mut state.out, &mut output);
            }
            state
                .waiting
                .iter()
                .find_map(|w| w.reply.as_ref().map(|_| w.deadline))
        };
        let mut busy = false;
        if written < output.len() {
            match stream.try_write(&output[written..]) {
                Ok(n) => (written, busy) = (written + n, true),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e.into()),
            }
        }
        if input.capacity() - input.len() < READ_SPACE / 4 {
            input.reserve(READ_SPACE);
        }
        match read_some(stream, &mut input) {
            Ok(0) => return Err(closed("Redis closed the connection")),
            Ok(_) => {
                busy = true;
                deliver(shared, id, &mut input)?;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e.into()),
        }
        if !busy {
            let interest = if written < output.len() {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            if let Some(d) = next_deadline.filter(|d| armed.is_none_or(|a| a > *d)) {
                timer.as_mut().reset(d.into());
                armed = Some(d);
            }
            tokio::select! {
                biased;
                ready = stream.ready(interest) => drop(ready?),
                () = wake.notified() => {}
                () = &mut timer, if armed.is_some() => {
                    armed = None;
                    shared.state.lock().expire(Instant::now(), shared.timing.command);
                }
            }
        }
    }
}

/// Reads what has arrived into `input`'s spare room. A read that leaves room unfilled has
/// drained the socket, so its readiness is cleared there and then (as tokio's own `poll_read`
/// does) rather than by one more system call answering "would block": one fewer per reply
/// while Redis keeps up. Cleared against the readiness seen before the read, so bytes that
/// arrived since are not missed.
fn read_some(stream: &TcpStream, input: &mut Vec<u8>) -> io::Result<usize> {
    let room = input.capacity() - input.len();
    let mut got = 0;
    let read = stream.try_io(Interest::READABLE, || {
        got = stream.try_read_buf(input)?;
        if got > 0 && got < room {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(())
    });
    match read {
        Err(e) if !(e.kind() == io::ErrorKind::WouldBlock && got > 0) => Err(e),
        _ => Ok(got),
    }
}

/// Hands every complete reply in `input` to its caller and drops its bytes: one lock and one
/// clock reading per read, however many replies it brought.
fn deliver(shared: &Shared, id: u64, input: &mut Vec<u8>) -> RedisResult<()> {
    let mut state = shared.state.lock();
    if !state.is_live(id) {
        return Ok(());
    }
    let mut at = 0;
    while let Some((value, used)) = resp::reply(&input[at..])? {
        at += used;
        state.answer(value)?;
    }
    if at > 0 {
        state.progress = Instant::now();
    }
    drop(state);
    input.drain(..at);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::IntoConnectionInfo;
    use tokio::net::TcpListener;

    /// For the tests that are not about time: limits no busy machine reaches (a 16 MB command
    /// in a debug build under CI's load once took longer than 150 ms).
    const PATIENT: Timing = Timing {
        connect: Duration::from_secs(10),
        stalled: Duration::from_secs(10),
        command: Duration::from_secs(10),
    };

    /// For the tests of the limits themselves.
    const QUICK: Timing = Timing {
        connect: Duration::from_secs(2),
        stalled: Duration::from_millis(300),
        command: Duration::from_millis(150),
    };

    /// A listener standing in for Redis, and a pipe to it with these limits.
    async fn fake_redis(timing: Timing) -> (TcpListener, Pipe) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("redis://{}", listener.local_addr().unwrap());
        let pipe = Pipe::new(url.into_connection_info().unwrap(), timing).unwrap();
        (listener, pipe)
    }

    /// Reads from `stream` until `want` commands (RESP arrays) have arrived.
    async fn commands(stream: &mut TcpStream, want: usize) -> Vec<u8> {
        let mut seen = Vec::new();
        while seen.iter().filter(|&&b| b == b'*').count() < want {
            assert_ne!(stream.read_buf(&mut seen).await.unwrap(), 0, "closed early");
        }
        seen
    }

    async fn echo(pipe: &Pipe, word: &str) -> RedisResult<Value> {
        redis::cmd("ECHO")
            .arg(word)
            .query_async(&mut pipe.clone())
            .await
    }

    #[tokio::test]
    async fn replies_go_to_their_callers_in_order_and_pipelines_keep_theirs() {
        let (listener, pipe) = fake_redis(PATIENT).await;
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let got = commands(&mut s, 3).await;
            // The reply to the transaction comes in pieces, the others whole.
            s.write_all(b"$1\r\na\r\n-ERR no\r\n+OK\r\n+QUEUED\r\n+QU")
                .await
                .unwrap();
            s.write_all(b"EUED\r\n*2\r\n:1\r\n:2\r\n").await.unwrap();
            got
        });
        let mut transaction = redis::pipe();
        transaction
            .atomic()
            .cmd("INCR")
            .arg("x")
            .cmd("INCR")
            .arg("y");
        let (a, b, t) = tokio::join!(echo(&pipe, "a"), echo(&pipe, "b"), async {
            transaction
                .query_async::<(i64, i64)>(&mut pipe.clone())
                .await
        });
        assert_eq!(a.unwrap(), Value::BulkString(b"a".to_vec()));
        assert_eq!(b.unwrap_err().code(), Some("ERR"));
        assert_eq!(t.unwrap(), (1, 2));
        let sent = server.await.unwrap();
        assert!(
            sent.starts_with(b"*2\r\n$4\r\nECHO\r\n$1\r\na\r\n*2\r\n$4\r\nECHO\r\n$1\r\nb\r\n"),
            "{}",
            String::from_utf8_lossy(&sent)
        );
    }

    #[tokio::test]
    async fn a_command_larger_than_the_socket_takes_is_finished_before_the_next() {
        let (listener, pipe) = fake_redis(PATIENT).await;
        let big = "x".repeat(16 << 20);
        let mut expected = redis::cmd("ECHO").arg("hi").get_packed_command();
        expected.extend(redis::cmd("ECHO").arg(&big).get_packed_command());
        expected.extend(redis::cmd("ECHO").arg("small").get_packed_command());
        let want = expected.len();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut seen = Vec::with_capacity(want);
            commands(&mut s, 1).await.clone_into(&mut seen);
            s.write_all(b"+hi\r\n").await.unwrap();
            while seen.len() < want {
                assert_ne!(s.read_buf(&mut seen).await.unwrap(), 0, "closed early");
            }
            s.write_all(b"+big\r\n+small\r\n").await.unwrap();
            seen
        });
        // Connected first, so that the big command is written alone, in part.
        assert_eq!(
            echo(&pipe, "hi").await.unwrap(),
            Value::SimpleString("hi".into())
        );
        let (a, b) = tokio::join!(echo(&pipe, &big), echo(&pipe, "small"));
        assert_eq!(a.unwrap(), Value::SimpleString("big".into()));
        assert_eq!(b.unwrap(), Value::SimpleString("small".into()));
        assert!(server.await.unwrap() == expected, "the bytes sent differ");
    }

    #[tokio::test]
    async fn a_closed_connection_fails_its_callers_and_the_next_command_reconnects() {
        let (listener, pipe) = fake_redis(PATIENT).await;
        let waiting = tokio::spawn({
            let pipe = pipe.clone();
            async move { echo(&pipe, "lost").await }
        });
        let (mut first, _) = listener.accept().await.unwrap();
        commands(&mut first, 1).await;
        drop(first);
        let lost = waiting.await.unwrap().unwrap_err();
        assert!(lost.is_io_error(), "{lost}");

        let again = tokio::spawn({
            let pipe = pipe.clone();
            async move { echo(&pipe, "again").await }
        });
        let (mut second, _) = listener.accept().await.unwrap();
        commands(&mut second, 1).await;
        second.write_all(b"$5\r\nagain\r\n").await.unwrap();
        assert_eq!(
            again.await.unwrap().unwrap(),
            Value::BulkString(b"again".to_vec())
        );
    }

    #[tokio::test]
    async fn a_caller_whose_time_is_up_is_told_so_and_its_late_reply_is_dropped() {
        // Told at its own limit, long before the connection would be given up.
        let timing = Timing {
            stalled: Duration::from_secs(3),
            ..QUICK
        };
        let (listener, pipe) = fake_redis(timing).await;
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            // Both replies only once the second command is in, the first one late.
            commands(&mut s, 2).await;
            s.write_all(b"$1\r\na\r\n$1\r\nb\r\n").await.unwrap();
            s
        });
        let started = Instant::now();
        let a = tokio::time::timeout(Duration::from_secs(5), echo(&pipe, "a"))
            .await
            .expect("the caller was never told")
            .unwrap_err();
        let waited = started.elapsed();
        assert!(a.to_string().contains("no answer within"), "{a}");
        assert!(a.is_timeout(), "{a:?}");
        assert!(
            waited >= timing.command && waited < timing.stalled,
            "told after {waited:?}"
        );
        let b = echo(&pipe, "b").await.unwrap();
        assert_eq!(b, Value::BulkString(b"b".to_vec()));
        drop(server.await.unwrap());
    }

    #[tokio::test]
    async fn a_connection_that_answers_nothing_is_given_up() {
        let (listener, pipe) = fake_redis(QUICK).await;
        let silent = tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                let (s, _) = listener.accept().await.unwrap();
                held.push(s);
                if held.len() == 2 {
                    return held;
                }
            }
        });
        // Unanswered: the caller's own deadline ends its wait, the command stays queued.
        let first = tokio::time::timeout(Duration::from_millis(100), echo(&pipe, "1")).await;
        assert!(first.is_err(), "answered by a silent server: {first:?}");
        tokio::time::sleep(QUICK.stalled + Duration::from_millis(50)).await;
        // Past `stalled` with a command still waiting, the next caller gives the connection up
        let given_up = echo(&pipe, "2").await.unwrap_err();
        assert!(given_up.to_string().contains("reconnecting"), "{given_up}");
        // and the one after connects afresh.
        let third = tokio::time::timeout(Duration::from_millis(100), echo(&pipe, "3")).await;
        assert!(third.is_err());
        let held = tokio::time::timeout(Duration::from_secs(5), silent)
            .await
            .expect("a second connection")
            .unwrap();
        assert_eq!(held.len(), 2);
    }

    #[tokio::test]
    async fn callers_share_an_attempt_and_the_next_call_tries_again() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("redis://:secret@{}/2", listener.local_addr().unwrap());
        let pipe = Pipe::new(url.into_connection_info().unwrap(), PATIENT).unwrap();
        let server = tokio::spawn(async move {
            // The first connection is dropped during its handshake.
            let (mut s, _) = listener.accept().await.unwrap();
            commands(&mut s, 1).await;
            drop(s);
            let (mut s, _) = listener.accept().await.unwrap();
            let mut handshake = commands(&mut s, 1).await;
            s.write_all(b"+OK\r\n").await.unwrap();
            handshake.extend(commands(&mut s, 1).await);
            s.write_all(b"+OK\r\n").await.unwrap();
            commands(&mut s, 1).await;
            s.write_all(b"+up\r\n").await.unwrap();
            handshake
        });
        let (a, b) = tokio::join!(echo(&pipe, "a"), echo(&pipe, "b"));
        let (a, b) = (a.unwrap_err(), b.unwrap_err());
        assert!(a.to_string().contains("handshake"), "{a}");
        assert!(
            b.to_string().contains("Redis unreachable"),
            "the second caller took the first one's attempt: {b}"
        );
        let up = echo(&pipe, "up").await.expect("a new attempt");
        assert_eq!(up, Value::SimpleString("up".into()));
        assert_eq!(
            server.await.unwrap(),
            b"*2\r\n$4\r\nAUTH\r\n$6\r\nsecret\r\n*2\r\n$6\r\nSELECT\r\n$1\r\n2\r\n"
        );
    }

    #[test]
    fn only_plain_tcp_is_spoken() {
        let unix = "redis+unix:///tmp/redis.sock"
            .into_connection_info()
            .unwrap();
        let e = Pipe::new(unix, PATIENT).err().expect("refused");
        assert!(e.to_string().contains("redis://host:port"), "{e}");
    }
}
