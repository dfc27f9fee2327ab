//! `GET /events`: the stack's events as a Server-Sent Events stream.
//!
//! The live page opens one (`new EventSource('/events')`) and learns of each
//! SYN, port choice, new socket, accept and close as it happens, instead of
//! asking every second. Each message is one event of the log's JSON schema
//! (version 1, see README's *Events*): `event: socket_created`, then `data:`
//! and the JSON line. The query filters it (`kind`, `port`, `remote`, see
//! `query`).
//!
//! A stream is served by a thread of its own, whatever the serving model:
//! it lasts as long as the page is open, and a `one-at-a-time` server or a
//! pool of workers must not be held by it. It ends when the client goes
//! away (its FIN, noticed within a second; or a failed write), when the
//! stack drops it because the client stopped reading (`event_stream`'s
//! bound), or when the stack stops. Each end is an application event,
//! `http_event_stream`, and is counted (`/connections.json`'s
//! `event_streams`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use portlab::api::net::Stack;
use portlab::observe::event_stream::{Ended, EventFilter};

use crate::http::server::Active;
use crate::stream::Stream;

/// How often an idle stream sends a comment, so that proxies and the
/// browser keep it open and a vanished client is noticed.
const HEARTBEAT: Duration = Duration::from_secs(15);

/// Frames written at once, at most, when many are waiting.
const BATCH: usize = 64;

/// How long a write waits for more frames once a second one was already
/// waiting (a burst): a write and a wake-up per few frames instead of one
/// each; a lone event is written at once.
const GATHER: Duration = Duration::from_millis(2);

/// Serves the stream on a thread of its own; `active` (the server's count
/// of connections) goes with it.
pub fn spawn(stack: Arc<Stack>, stream: impl Stream, filter: EventFilter, active: Option<Active>) {
    let n = stream.number();
    let spawned = std::thread::Builder::new()
        .name(format!("events-{n}"))
        .spawn(move || {
            let _active = active;
            serve(&stack, &stream, filter);
        });
    if let Err(e) = spawned {
        log::warn!("cannot start a thread for an event stream: {e}");
    }
}

/// Serves one stream until it ends, then says why (`http_event_stream`).
fn serve(stack: &Stack, stream: &impl Stream, filter: EventFilter) {
    // Subscribe first: nothing that happens after the head is missed.
    let sub = stack.subscribe(filter);
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n\
                Server: portlab\r\nConnection: close\r\n\r\n\
                : portlab event stream (schema version 1)\nretry: 2000\n\n";
    // A client that stops reading fills its window and our send buffer;
    // then the subscription's bound drops it. A write that makes no
    // progress for this long ends it sooner.
    stream.set_write_timeout(Some(Duration::from_secs(10)));
    if stream.write_all(head.as_bytes()).is_err() {
        return;
    }
    let mut sent = 0u64;
    let mut last_write = Instant::now();
    let mut out = String::new();
    let why = loop {
        match sub.next(Duration::from_secs(1)) {
            Ok(frame) => {
                out.clear();
                out.push_str(&frame);
                let mut n = 1;
                let until = Instant::now() + GATHER;
                while n < BATCH {
                    // A lone event goes at once; when another is already
                    // waiting, it is a burst: gather for a moment.
                    let left = match n {
                        1 => Duration::ZERO,
                        _ => until.saturating_duration_since(Instant::now()),
                    };
                    let Ok(more) = sub.next(left) else {
                        break;
                    };
                    out.push_str(&more);
                    n += 1;
                }
                if stream.write_all(out.as_bytes()).is_err() {
                    break "the client went away or stopped reading (a write failed)";
                }
                sent += n as u64;
                last_write = Instant::now();
            }
            Err(Ended::Over) => {
                break "dropped: the client fell too far behind, or the stack stopped";
            }
            Err(Ended::Quiet) => {
                if client_gone(stream) {
                    break "the client went away";
                }
                if last_write.elapsed() >= HEARTBEAT {
                    if stream.write_all(b": still here\n\n").is_err() {
                        break "the client went away or stopped reading (a write failed)";
                    }
                    last_write = Instant::now();
                }
            }
        }
    };
    drop(sub);
    stream.emit(
        "http_event_stream",
        format!("ended after {sent} events: {why}"),
    );
    let _ = stream.write_all_then_shutdown(b"");
}

/// Whether the client has closed its end (a FIN: a read returns 0). What
/// it sends meanwhile means nothing to a stream and is dropped.
fn client_gone(stream: &impl Stream) -> bool {
    stream.set_read_timeout(Some(Duration::from_millis(1)));
    let mut chunk = [0u8; 512];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return false,
            Err(_) => return true,
        }
    }
}
