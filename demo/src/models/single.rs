//! `single`: the old netcat-style daemon. It stops listening while it
//! serves, so a client arriving meanwhile finds no listener and bounces off
//! with a reset ("connection refused"); it listens again afterwards.

use portlab::Event;
use portlab::api::net::Stack;

use super::plan::Plan;
use super::sockets::{Result, accept, listen};
use crate::http::serve::serve_connection;
use crate::http::server::Server;

pub fn run(stack: &Stack, server: &Server, plan: &Plan) -> Result<()> {
    loop {
        let listener = listen(stack, plan)?;
        let Some(stream) = accept(&listener)? else {
            return Ok(());
        };
        // Stop listening while serving: whoever comes now finds no listener.
        drop(listener);
        stack.emit(Event::App {
            kind: "not_listening".into(),
            id: Some(stream.id()),
            quad: Some(stream.quad()),
            detail: "single: listener closed while this connection is served; \
                     new clients are refused until it ends"
                .into(),
        });
        serve_connection(server, stream);
    }
}
