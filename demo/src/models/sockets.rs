//! How every serving model gets its listener and its connections.

use std::io::ErrorKind;

use portlab::api::net::{Stack, TcpListener, TcpStream};

use super::plan::Plan;

pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

pub fn listen(stack: &Stack, plan: &Plan) -> Result<TcpListener> {
    stack
        .listen(plan.port, plan.backlog)
        .map_err(|e| format!("cannot listen on port {}: {e}", plan.port).into())
}

/// Accepts the next connection; `None` once the stack has stopped.
pub fn accept(listener: &TcpListener) -> Result<Option<TcpStream>> {
    match listener.accept() {
        Ok((stream, _)) => Ok(Some(stream)),
        Err(e) if e.kind() == ErrorKind::NotConnected => Ok(None),
        Err(e) => Err(e.into()),
    }
}
