//! Serving one HTTP connection: requests in, pages out, until it ends.
//!
//! A connection is served with keep-alive until the client closes, asks to
//! close, misbehaves (400/413/431), or stays idle or slow past the header
//! timeout (408). The serving *models* — which thread runs this for which
//! connection — are in `models`.

use std::io::ErrorKind;
use std::sync::Arc;
use std::time::Duration;

use portlab::api::net::Stack;

use crate::http::message::{self, HttpError, Request, Response};
use crate::http::page::View;
use crate::http::server::Server;
use crate::stream::Stream;

/// The answer to a connection over the cap.
pub fn over_capacity(server: &Server, stream: &impl Stream) -> Vec<u8> {
    stream.emit(
        "http_connection_cap",
        format!("{} connections already served: 503", server.max_connections),
    );
    Response::text(
        503,
        "Service Unavailable",
        "too many connections, try again\n",
    )
    .to_bytes(false, false)
}

/// Serves requests on one connection until it ends.
pub fn serve_connection(server: &Server, stream: impl Stream) {
    let Some(active) = server.admit() else {
        let _ = stream.write_all_then_shutdown(&over_capacity(server, &stream));
        linger(&stream);
        return;
    };
    let header_timeout = server.header_timeout;
    if server.nodelay {
        stream.set_nodelay(true);
    }
    stream.set_read_timeout(Some(header_timeout));
    // A write fails after this long without any progress. Generous: through
    // 30% loss the engine's retransmissions back off to a minute each, and
    // two or three in a row can fail (a client that stops reading is bounded
    // by --max-connections and its send buffer meanwhile).
    stream.set_write_timeout(Some(Duration::from_secs(600)));
    let mut buf: Vec<u8> = Vec::with_capacity(2048);
    loop {
        let req = match read_request(&stream, &mut buf, header_timeout) {
            Ok(Some(r)) => r,
            // The client closed between requests; dropping the stream closes our side.
            Ok(None) => return,
            Err(ReadError::Http(e)) => {
                let (status, reason) = e.status();
                stream.emit("http_bad_request", format!("{status} {reason}"));
                let bytes = Response::text(status, reason, reason).to_bytes(false, false);
                let _ = stream.write_all_then_shutdown(&bytes);
                linger(&stream);
                return;
            }
            Err(ReadError::Timeout { partial }) => {
                if partial {
                    stream.emit(
                        "http_header_timeout",
                        format!(
                            "no complete request head within {}s",
                            header_timeout.as_secs()
                        ),
                    );
                    let bytes = Response::text(408, "Request Timeout", "Request Timeout")
                        .to_bytes(false, false);
                    let _ = stream.write_all_then_shutdown(&bytes);
                    linger(&stream);
                } else {
                    stream.emit(
                        "http_idle_timeout",
                        format!("idle for {}s between requests", header_timeout.as_secs()),
                    );
                }
                return;
            }
            Err(ReadError::Io) => return,
        };
        if let Some((stack, filter)) = event_stream(server, &req) {
            // The stream goes to a thread of its own, with the connection's
            // place under the cap; this one is done with it.
            crate::http::sse::spawn(stack, stream, filter, Some(active));
            return;
        }
        if let Some(d) = requested_delay(&req) {
            std::thread::sleep(d);
        }
        let bytes = respond(server, &stream, &req);
        if !req.keep_alive {
            // The response's last segment is followed at once by our FIN:
            // the server closes first and holds TIME-WAIT.
            let _ = stream.write_all_then_shutdown(&bytes);
            return;
        }
        if stream.write_all(&bytes).is_err() {
            return;
        }
    }
}

/// After an error response, reads (and discards) what the client still sends,
/// for a moment, so that closing does not reset the connection — closing with
/// unread data sends RST, which could destroy the response before the client
/// reads it.
fn linger(stream: &impl Stream) {
    stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut chunk = [0u8; 4096];
    let mut budget = 256 * 1024;
    while budget > 0 {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => budget -= n.min(budget),
        }
    }
}

enum ReadError {
    Http(HttpError),
    Timeout { partial: bool },
    Io,
}

/// Reads one request head (and discards its body). `Ok(None)`: clean end of
/// stream before a new request.
/// The whole head must arrive within `limit` — not each read: a slowloris
/// client sending one byte every few seconds would otherwise never time out.
fn read_request(
    stream: &impl Stream,
    buf: &mut Vec<u8>,
    limit: Duration,
) -> Result<Option<Request>, ReadError> {
    let mut chunk = [0u8; 2048];
    let deadline = std::time::Instant::now() + limit;
    loop {
        match message::parse(buf) {
            Ok(Some((req, n))) => {
                buf.drain(..n);
                discard_body(stream, buf, req.content_length)?;
                return Ok(Some(req));
            }
            Ok(None) => {}
            Err(e) => return Err(ReadError::Http(e)),
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(ReadError::Timeout {
                partial: !buf.is_empty(),
            });
        }
        stream.set_read_timeout(Some(left));
        match stream.read(&mut chunk) {
            Ok(0) if buf.is_empty() => return Ok(None),
            Ok(0) => return Err(ReadError::Http(HttpError::BadRequest)),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::TimedOut => {
                return Err(ReadError::Timeout {
                    partial: !buf.is_empty(),
                });
            }
            Err(_) => return Err(ReadError::Io),
        }
    }
}

fn discard_body(stream: &impl Stream, buf: &mut Vec<u8>, len: usize) -> Result<(), ReadError> {
    let mut left = len;
    let from_buf = left.min(buf.len());
    buf.drain(..from_buf);
    left -= from_buf;
    let mut chunk = [0u8; 2048];
    while left > 0 {
        match stream.read(&mut chunk[..left.min(2048)]) {
            Ok(0) => return Err(ReadError::Http(HttpError::BadRequest)),
            Ok(n) => left -= n,
            Err(e) if e.kind() == ErrorKind::TimedOut => {
                return Err(ReadError::Timeout { partial: true });
            }
            Err(_) => return Err(ReadError::Io),
        }
    }
    Ok(())
}

/// The response to `req`, ready to write.
pub fn respond(server: &Server, stream: &impl Stream, req: &Request) -> Vec<u8> {
    route(server.stack.as_deref(), server.model, stream, req)
        .to_bytes(req.keep_alive, req.method == "HEAD")
}

/// For a well-formed `GET /events` on portlab's stack: the stack and the
/// stream's filter (anything else about `/events` is answered by `route`).
pub fn event_stream(
    server: &Server,
    req: &Request,
) -> Option<(Arc<Stack>, portlab::observe::event_stream::EventFilter)> {
    let (path, qs) = req.target.split_once('?').unwrap_or((&req.target, ""));
    if path != "/events" || req.method != "GET" {
        return None;
    }
    let stack = server.stack.clone()?;
    let filter = crate::http::query::parse_events(qs).ok()?;
    Some((stack, filter))
}

/// How long `/you?delay=MS` asks to wait before answering (at most 2 s):
/// a slow resource makes a browser open parallel connections.
pub fn requested_delay(req: &Request) -> Option<Duration> {
    let (path, query) = req.target.split_once('?')?;
    if path != "/you" {
        return None;
    }
    let ms = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("delay="))?
        .parse::<u64>()
        .ok()?;
    Some(Duration::from_millis(ms.min(2000)))
}

fn route(stack: Option<&Stack>, model: &str, stream: &impl Stream, req: &Request) -> Response {
    if req.method != "GET" && req.method != "HEAD" {
        return Response::text(405, "Method Not Allowed", "only GET and HEAD are served\n");
    }
    let path = req.target.split('?').next().unwrap_or("/");
    match path {
        "/" | "/connections.json" => {
            let Some(stack) = stack else {
                return no_table();
            };
            let qs = req.target.split_once('?').map_or("", |(_, q)| q);
            let mut query = match crate::http::query::parse(qs) {
                Ok(q) => q,
                Err(why) => {
                    stream.emit("http_bad_request", format!("400 {why}"));
                    return Response::text(400, "Bad Request", &format!("{why}\n"));
                }
            };
            query.you = Some(portlab::SocketId(stream.number()));
            let page = stack.table_page(&query);
            let view = View {
                you: stream.quad(),
                your_id: stream.number(),
                model,
                page: &page,
                query: &query,
                streams: stack.event_streams(),
            };
            if path == "/" {
                Response::new(
                    200,
                    "OK",
                    "text/html; charset=utf-8",
                    view.html().into_bytes(),
                )
            } else {
                Response::new(200, "OK", "application/json", view.json().into_bytes())
            }
        }
        "/events" => {
            if stack.is_none() {
                return no_table();
            }
            let qs = req.target.split_once('?').map_or("", |(_, q)| q);
            match crate::http::query::parse_events(qs) {
                Err(why) => {
                    stream.emit("http_bad_request", format!("400 {why}"));
                    Response::text(400, "Bad Request", &format!("{why}\n"))
                }
                // HEAD: what a GET would start with (a GET never gets here).
                Ok(_) => Response::new(200, "OK", "text/event-stream", Vec::new()),
            }
        }
        "/bytes" => {
            // N deterministic bytes (at most 256 MiB), for transfers through
            // a lossy link: byte i is i*31+7 mod 251.
            let n = req
                .target
                .split_once("?n=")
                .and_then(|(_, n)| n.parse::<usize>().ok())
                .unwrap_or(1 << 20)
                .min(256 << 20);
            let body: Vec<u8> = (0..n).map(|i| ((i * 31 + 7) % 251) as u8).collect();
            Response::new(200, "OK", "application/octet-stream", body)
        }
        "/parallel" => Response::new(
            200,
            "OK",
            "text/html; charset=utf-8",
            crate::http::page::parallel_html().into_bytes(),
        ),
        "/you" => Response::new(
            200,
            "OK",
            "text/html; charset=utf-8",
            crate::http::page::you_html(stream.quad(), stream.number()).into_bytes(),
        ),
        p if p.starts_with("/story/") => {
            let Some(stack) = stack else {
                return no_table();
            };
            let story = p["/story/".len()..]
                .parse::<u64>()
                .ok()
                .and_then(|id| stack.story(portlab::SocketId(id)));
            match story {
                Some(s) => Response::new(
                    200,
                    "OK",
                    "text/html; charset=utf-8",
                    crate::http::story_page::html(&s).into_bytes(),
                ),
                None => Response::text(
                    404,
                    "Not Found",
                    "no such socket (or its story was forgotten)\n",
                ),
            }
        }
        _ => Response::text(404, "Not Found", "not found\n"),
    }
}

/// On the kernel's sockets there is no connection table to show.
fn no_table() -> Response {
    Response::text(
        404,
        "Not Found",
        "the kernel's sockets have no portlab connection table\n",
    )
}
