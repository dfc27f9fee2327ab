//! `thread-per-connection`: accept, hand the stream to a new thread, accept
//! again. Every connection is served at once, each by a thread named after
//! its socket (`conn-7`), which the connection table shows.

use log::warn;
use portlab::api::net::TcpListener;

use super::sockets::{Result, accept};
use crate::http::serve::serve_connection;
use crate::http::server::Server;

pub fn run(server: &Server, listener: &TcpListener) -> Result<()> {
    while let Some(stream) = accept(listener)? {
        let server = server.clone();
        let name = format!("conn-{}", stream.id().0);
        let spawned = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                stream.set_served_by(&name);
                serve_connection(&server, stream);
            });
        if let Err(e) = spawned {
            warn!("cannot start a thread for a connection: {e}");
        }
    }
    Ok(())
}
