//! `portlab serve`: the stack, and the HTTP server on its port 80 that shows
//! each visitor its own 4-tuple and the live connection table.
//!
//! Starts the stack on its TUN device, drops privileges if asked, arranges
//! a clean stop on Ctrl-C or SIGTERM (connections closed within the grace
//! period, capture and event files flushed), starts the optional services
//! (UDP echo, inetd), and hands the listening port to the chosen serving
//! model (`crate::models`) until the stack stops.

use std::sync::Arc;
use std::time::Duration;

use portlab::api::net::Stack;

use crate::cli::ServeArgs;
use crate::commands::{inetd, udp_echo};
use crate::http::server::Server;
use crate::models::{self, Plan};
use crate::signals;

pub fn run(args: &ServeArgs) -> Result<(), Box<dyn std::error::Error>> {
    let config = args.stack_config()?;
    let stack = Arc::new(Stack::start(config)?);
    log::info!(
        "stack {} up on device {} (kernel side {}): open http://{}:{}/",
        stack.addr(),
        stack.device_name(),
        stack.host_addr(),
        stack.addr(),
        args.port
    );
    log::info!(
        "control socket: {} (portlab ss)",
        stack.control_path().display()
    );
    if let Some(user) = &args.user {
        let (uid, gid) = stack
            .drop_privileges(user)
            .map_err(|e| format!("cannot drop privileges to '{user}': {e}"))?;
        log::info!("running as {user} (uid {uid}, gid {gid}) from now on");
    }
    let grace = Duration::from_millis(args.grace_ms);
    let s2 = stack.clone();
    signals::on_stop(move |sig| {
        log::info!(
            "{sig}: closing connections (up to {} ms), then stopping",
            grace.as_millis()
        );
        s2.shutdown(grace);
    })?;
    if args.udp_port != 0 {
        udp_echo::start(&stack, args.udp_port, args.udp_readers)?;
    }
    if args.inetd {
        start_inetd(&stack)?;
    }
    let server = Server {
        stack: Some(stack.clone()),
        model: args.model.name(),
        header_timeout: args.header_timeout(),
        max_connections: args.max_connections.max(1),
        active: Default::default(),
        nodelay: args.nodelay.on(),
    };
    let result = models::run(
        &Plan {
            model: args.model,
            port: args.port,
            backlog: args.backlog,
            workers: args.workers,
        },
        &stack,
        server,
    );
    stack.shutdown(grace);
    result
}

/// The inetd services on the stack, one listener and accept thread each.
fn start_inetd(stack: &Arc<Stack>) -> Result<(), Box<dyn std::error::Error>> {
    for service in inetd::ALL {
        let listener = stack.listen(service.port(), 128).map_err(|e| {
            format!(
                "cannot listen on port {} ({}): {e}",
                service.port(),
                service.name()
            )
        })?;
        std::thread::Builder::new()
            .name(service.name().into())
            .spawn(move || {
                inetd::accept_loop(service, || listener.accept().ok().map(|(s, _)| s))
            })?;
    }
    Ok(())
}
