//! Serving models: how a server uses its one port.
//!
//! The stack gives every connection its own socket; what the server does with
//! them is its own choice, and each choice shows something:
//!
//! * `thread-per-connection` — accept, hand the stream to a new thread, accept
//!   again: every connection is served at once.
//! * `one-at-a-time` — accept one connection, serve it to the end, then accept
//!   the next. The listener stays open, so the others wait in its accept queue
//!   (their handshakes are complete: the kernel, here the stack, did that);
//!   past the backlog their SYNs are dropped and retransmitted (or reset with
//!   `--overflow rst`).
//! * `single` — the old netcat-style daemon: stop listening while serving, so
//!   a client arriving meanwhile finds no listener and bounces off with a
//!   reset ("connection refused"); listen again afterwards.
//! * `workers` — N threads all blocking in `accept()` on the same listener;
//!   each connection goes to whichever worker is free.
//! * `reuseport` — N listeners in a reuse-port group, one per worker; the stack
//!   picks the member by a hash of the 4-tuple, busy or not.
//! * `event-loop` — one thread, non-blocking sockets and a readiness poller
//!   (see `event_loop`).
//!
//! Each model is a file of its own, named after it; [`plan`] is what the
//! `serve` command asks of them, and [`sockets`] is how every one of them
//! gets its listener and its connections.

mod event_loop;
mod one_at_a_time;
mod plan;
mod reuseport;
mod single;
mod sockets;
mod thread_per_connection;
mod workers;

use std::sync::Arc;

use log::info;
use portlab::api::net::Stack;

use crate::http::server::Server;
pub use plan::{Model, Plan};
use sockets::{Result, listen};

/// Runs the chosen model until the stack stops.
pub fn run(plan: &Plan, stack: &Arc<Stack>, server: Server) -> Result<()> {
    info!(
        "serving HTTP on http://{}:{}/ with model {}{}; Ctrl-C to stop",
        stack.addr(),
        plan.port,
        plan.model.name(),
        match plan.model {
            Model::Workers | Model::Reuseport => format!(" ({} workers)", plan.workers),
            _ => String::new(),
        }
    );
    match plan.model {
        Model::ThreadPerConnection => thread_per_connection::run(&server, &listen(stack, plan)?),
        Model::OneAtATime => one_at_a_time::run(&server, &listen(stack, plan)?),
        Model::Single => single::run(stack, &server, plan),
        Model::Workers => workers::run(stack, &server, plan),
        Model::Reuseport => reuseport::run(stack, &server, plan),
        Model::EventLoop => event_loop::run(stack, &server, &listen(stack, plan)?),
    }
}
