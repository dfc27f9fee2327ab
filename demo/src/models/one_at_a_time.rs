//! `one-at-a-time`: accept one connection, serve it to the end, then accept
//! the next. The listener stays open, so the others wait in its accept
//! queue with their handshakes complete; past the backlog their SYNs are
//! dropped and retransmitted (or reset with `--overflow rst`).

use portlab::api::net::TcpListener;

use super::sockets::{Result, accept};
use crate::http::serve::serve_connection;
use crate::http::server::Server;

pub fn run(server: &Server, listener: &TcpListener) -> Result<()> {
    while let Some(stream) = accept(listener)? {
        serve_connection(server, stream);
    }
    Ok(())
}
