//! `portlab serve`: HTTP on port 80 of the stack, a thread per connection.
//!
//! The main thread blocks in `accept()` on the one listening socket; each
//! accepted connection — a new socket with its own 4-tuple — gets a thread
//! of its own that serves requests on it (keep-alive) until the client
//! closes, asks to close, misbehaves, or stays idle too long.

use std::io::{ErrorKind, Read, Write};
use std::sync::Arc;
use std::time::Duration;

use log::{info, warn};
use portlab::net::{Stack, TcpStream};

use crate::cli::ServeArgs;
use crate::http::{self, HttpError, Request, Response};
use crate::page::View;

pub const MODEL: &str = "thread-per-connection";

pub fn run(args: &ServeArgs, stack: Arc<Stack>) -> Result<(), Box<dyn std::error::Error>> {
    let listener = stack
        .listen(args.port, args.backlog)
        .map_err(|e| format!("cannot listen on port {}: {e}", args.port))?;
    info!(
        "serving HTTP on http://{}:{}/ ({MODEL}); Ctrl-C to stop",
        stack.addr(),
        args.port
    );
    let header_timeout = args.header_timeout();
    loop {
        let (stream, _quad) = match listener.accept() {
            Ok(x) => x,
            // The stack stopped (Ctrl-C): the accept loop ends.
            Err(e) if e.kind() == ErrorKind::NotConnected => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let stack = stack.clone();
        let name = format!("conn-{}", stream.id().0);
        let spawned = std::thread::Builder::new()
            .name(name)
            .spawn(move || serve_connection(&stack, stream, header_timeout));
        if let Err(e) = spawned {
            warn!("cannot start a thread for a connection: {e}");
        }
    }
}

/// Serves requests on one connection until it ends.
pub fn serve_connection(stack: &Stack, stream: TcpStream, header_timeout: Duration) {
    stream.set_read_timeout(Some(header_timeout));
    stream.set_write_timeout(Some(Duration::from_secs(30)));
    let mut buf: Vec<u8> = Vec::with_capacity(2048);
    loop {
        let req = match read_request(&stream, &mut buf) {
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
        let bytes = route(stack, &stream, &req).to_bytes(req.keep_alive, req.method == "HEAD");
        if !req.keep_alive {
            // The response's last segment is followed at once by our FIN:
            // the server closes first and holds TIME-WAIT.
            let _ = stream.write_all_then_shutdown(&bytes);
            return;
        }
        if (&stream).write_all(&bytes).is_err() {
            return;
        }
    }
}

/// After an error response, reads (and discards) what the client still sends,
/// for a moment, so that closing does not reset the connection — closing with
/// unread data sends RST, which could destroy the response before the client
/// reads it.
fn linger(mut stream: &TcpStream) {
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
fn read_request(mut stream: &TcpStream, buf: &mut Vec<u8>) -> Result<Option<Request>, ReadError> {
    let mut chunk = [0u8; 2048];
    loop {
        match http::parse(buf) {
            Ok(Some((req, n))) => {
                buf.drain(..n);
                discard_body(stream, buf, req.content_length)?;
                return Ok(Some(req));
            }
            Ok(None) => {}
            Err(e) => return Err(ReadError::Http(e)),
        }
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

fn discard_body(mut stream: &TcpStream, buf: &mut Vec<u8>, len: usize) -> Result<(), ReadError> {
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

fn route(stack: &Stack, stream: &TcpStream, req: &Request) -> Response {
    if req.method != "GET" && req.method != "HEAD" {
        return Response::text(405, "Method Not Allowed", "only GET and HEAD are served\n");
    }
    let path = req.target.split('?').next().unwrap_or("/");
    match path {
        "/" | "/connections.json" => {
            let table = stack.table();
            let view = View {
                you: stream.quad(),
                your_id: stream.id().0,
                model: MODEL,
                table: &table,
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
        _ => Response::text(404, "Not Found", "not found\n"),
    }
}
