//! `reuseport`: N listeners in a reuse-port group, one per worker thread.
//! The stack picks the member for each new connection by a hash of its
//! 4-tuple, busy or not: unlike `workers`, a busy worker's connections wait
//! for it while another worker may be idle.

use std::sync::Arc;

use portlab::api::net::Stack;

use super::plan::Plan;
use super::sockets::{Result, accept};
use super::workers::on_workers;
use crate::http::serve::serve_connection;
use crate::http::server::Server;

pub fn run(stack: &Stack, server: &Server, plan: &Plan) -> Result<()> {
    // Every member joins before any connection is accepted, so the group is
    // complete from the first SYN on.
    let mut listeners = Vec::new();
    for _ in 0..plan.workers.max(1) {
        let l = stack
            .listen_reuse(plan.port, plan.backlog)
            .map_err(|e| format!("cannot join the reuse-port group on {}: {e}", plan.port))?;
        listeners.push(Some(l));
    }
    let listeners = Arc::new(std::sync::Mutex::new(listeners));
    let server = server.clone();
    on_workers(plan.workers, move |i| {
        let listener = listeners
            .lock()
            .ok()
            .and_then(|mut ls| ls.get_mut(i - 1).and_then(Option::take))
            .ok_or("no listener for this worker")?;
        while let Some(stream) = accept(&listener)? {
            serve_connection(&server, stream);
        }
        Ok(())
    })
}
