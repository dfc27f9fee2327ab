//! The `event-loop` serving model: one thread, every connection.
//!
//! The listener and every stream are non-blocking and registered with one
//! `portlab::api::net::Poller`. The loop sleeps in `poll` until some socket is ready, accepts
//! what the listener has, reads what each readable stream has, answers every
//! complete request, and writes as much as each stream takes — never waiting
//! on any one connection. Per-connection deadlines (the header timeout) are
//! kept in time order, so the loop wakes for the earliest one.

use std::collections::{BTreeSet, HashMap};
use std::io::{ErrorKind, Read, Write};
use std::time::{Duration, Instant};

use portlab::api::net::{Interest, PollEvent, Stack, TcpListener, TcpStream};

use crate::http::message::{self, MAX_BODY, Response};
use crate::http::serve::respond;
use crate::http::server::Server;

const LISTENER: usize = 0;

/// One connection's state between wake-ups.
struct Conn {
    stream: TcpStream,
    input: Vec<u8>,
    output: Vec<u8>,
    /// Close (FIN) once `output` is written.
    closing: bool,
    /// When the current request head must be complete.
    deadline: Instant,
    /// Whether it is registered for writability too.
    wants_write: bool,
    /// A request for the event stream: the connection leaves the loop for
    /// a thread of its own (see `sse`).
    handoff: Option<(
        std::sync::Arc<portlab::api::net::Stack>,
        portlab::observe::event_stream::EventFilter,
    )>,
}

pub fn run(
    stack: &Stack,
    server: &Server,
    listener: &TcpListener,
) -> Result<(), Box<dyn std::error::Error>> {
    let poller = stack.poller();
    listener.set_nonblocking(true);
    poller.register(listener, LISTENER, Interest::READABLE);
    let mut conns: HashMap<usize, Conn> = HashMap::new();
    let mut deadlines: BTreeSet<(Instant, usize)> = BTreeSet::new();
    let mut next_token = LISTENER + 1;
    let mut events: Vec<PollEvent> = Vec::new();
    loop {
        let timeout = deadlines
            .first()
            .map(|(t, _)| t.saturating_duration_since(Instant::now()));
        events.clear();
        match poller.poll(&mut events, timeout.or(Some(Duration::from_secs(1)))) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotConnected => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        for ev in &events {
            if ev.token == LISTENER {
                loop {
                    match listener.accept() {
                        Ok((stream, _)) if conns.len() >= server.max_connections => {
                            let _ = stream.write_all_then_shutdown(
                                &crate::http::serve::over_capacity(server, &stream),
                            );
                        }
                        Ok((stream, _)) => {
                            stream.set_nonblocking(true);
                            stream.set_served_by("event-loop");
                            if server.nodelay {
                                let _ = stream.set_nodelay(true);
                            }
                            let token = next_token;
                            next_token += 1;
                            poller.register(&stream, token, Interest::READABLE);
                            let deadline = Instant::now() + server.header_timeout;
                            deadlines.insert((deadline, token));
                            conns.insert(
                                token,
                                Conn {
                                    stream,
                                    input: Vec::new(),
                                    output: Vec::new(),
                                    closing: false,
                                    deadline,
                                    wants_write: false,
                                    handoff: None,
                                },
                            );
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::NotConnected => return Ok(()),
                        Err(e) => return Err(e.into()),
                    }
                }
                continue;
            }
            let Some(conn) = conns.get_mut(&ev.token) else {
                continue;
            };
            let old_deadline = conn.deadline;
            let done = serve_ready(server, conn);
            deadlines.remove(&(old_deadline, ev.token));
            if done {
                poller.deregister(ev.token);
                if let Some(conn) = conns.remove(&ev.token)
                    && let Some((stack, filter)) = conn.handoff
                {
                    conn.stream.set_nonblocking(false);
                    crate::http::sse::spawn(stack, conn.stream, filter, None);
                }
                continue;
            }
            deadlines.insert((conn.deadline, ev.token));
            let wants_write = !conn.output.is_empty();
            if wants_write != conn.wants_write {
                conn.wants_write = wants_write;
                let interest = if wants_write {
                    Interest::BOTH
                } else {
                    Interest::READABLE
                };
                poller.register(&conn.stream, ev.token, interest);
            }
        }
        // Header timeouts, earliest first.
        let now = Instant::now();
        while let Some(&(t, token)) = deadlines.first() {
            if t > now {
                break;
            }
            deadlines.remove(&(t, token));
            if let Some(conn) = conns.remove(&token) {
                poller.deregister(token);
                let partial = !conn.input.is_empty();
                let kind = if partial {
                    "http_header_timeout"
                } else {
                    "http_idle_timeout"
                };
                conn.stream.emit(
                    kind,
                    format!("no request within {:?}", server.header_timeout),
                );
                if partial {
                    let bytes = Response::text(408, "Request Timeout", "Request Timeout")
                        .to_bytes(false, false);
                    let _ = conn.stream.write_all_then_shutdown(&bytes);
                }
            }
        }
    }
}

/// Reads, answers and writes what one ready connection allows, without
/// blocking. Returns true when the connection is finished.
fn serve_ready(server: &Server, conn: &mut Conn) -> bool {
    let mut chunk = [0u8; 4096];
    let mut eof = false;
    loop {
        match (&conn.stream).read(&mut chunk) {
            Ok(0) => {
                eof = true;
                break;
            }
            Ok(n) => {
                conn.input.extend_from_slice(&chunk[..n]);
                if conn.input.len() > message::MAX_HEAD + MAX_BODY {
                    break;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(_) => return true,
        }
    }
    // Answer every complete request (pipelining included).
    while !conn.closing {
        match message::parse(&conn.input) {
            Ok(Some((req, n))) => {
                if conn.input.len() < n + req.content_length {
                    break; // the body is still coming
                }
                conn.input.drain(..n + req.content_length);
                if let Some(stream) = crate::http::serve::event_stream(server, &req) {
                    // The stream's thread may write only once this loop
                    // owes the client nothing; after pipelined requests
                    // the answer is an empty stream instead, and the
                    // browser's EventSource asks again (`retry`).
                    if conn.output.is_empty() {
                        conn.handoff = Some(stream);
                        return true;
                    }
                }
                conn.output.extend(respond(server, &conn.stream, &req));
                conn.closing = !req.keep_alive;
                conn.deadline = Instant::now() + server.header_timeout;
            }
            Ok(None) => break,
            Err(e) => {
                let (status, reason) = e.status();
                conn.stream
                    .emit("http_bad_request", format!("{status} {reason}"));
                conn.output
                    .extend(Response::text(status, reason, reason).to_bytes(false, false));
                conn.closing = true;
            }
        }
    }
    while !conn.output.is_empty() {
        match (&conn.stream).write(&conn.output) {
            Ok(n) => {
                conn.output.drain(..n);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(_) => return true,
        }
    }
    if conn.output.is_empty() && (conn.closing || eof) {
        // We close after the response (closing) or after the client did (eof).
        let _ = conn.stream.shutdown(std::net::Shutdown::Write);
        return true;
    }
    false
}
