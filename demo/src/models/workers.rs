//! `workers`: N threads all blocking in `accept()` on the same listener;
//! each connection goes to whichever worker is free.

use std::sync::Arc;

use log::warn;
use portlab::api::net::Stack;

use super::plan::Plan;
use super::sockets::{Result, accept, listen};
use crate::http::serve::serve_connection;
use crate::http::server::Server;

pub fn on_workers(
    n: usize,
    body: impl Fn(usize) -> Result<()> + Send + Sync + 'static,
) -> Result<()> {
    let body = Arc::new(body);
    let mut threads = Vec::new();
    for i in 1..=n.max(1) {
        let body = body.clone();
        threads.push(
            std::thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn(move || {
                    if let Err(e) = body(i) {
                        warn!("worker-{i}: {e}");
                    }
                })?,
        );
    }
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}

pub fn run(stack: &Stack, server: &Server, plan: &Plan) -> Result<()> {
    let listener = Arc::new(listen(stack, plan)?);
    let server = server.clone();
    on_workers(plan.workers, move |_| {
        while let Some(stream) = accept(&listener)? {
            serve_connection(&server, stream);
        }
        Ok(())
    })
}
