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

use std::io::ErrorKind;
use std::sync::Arc;

use clap::ValueEnum;
use log::{info, warn};
use portlab::Event;
use portlab::api::net::{Stack, TcpListener, TcpStream};

use crate::cli::ServeArgs;
use crate::serve::{Server, serve_connection};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Model {
    /// A new thread for every accepted connection.
    ThreadPerConnection,
    /// Serve one connection to the end, then accept the next; the rest wait in the queue.
    OneAtATime,
    /// Netcat-style: stop listening while serving, so the next client is refused.
    Single,
    /// N worker threads all accepting on one listener (--workers).
    Workers,
    /// N listeners in a reuse-port group, one per worker thread (--workers).
    Reuseport,
    /// One thread serving every connection with non-blocking sockets and a poller.
    EventLoop,
}

impl Model {
    pub fn name(self) -> &'static str {
        match self {
            Model::ThreadPerConnection => "thread-per-connection",
            Model::OneAtATime => "one-at-a-time",
            Model::Single => "single",
            Model::Workers => "workers",
            Model::Reuseport => "reuseport",
            Model::EventLoop => "event-loop",
        }
    }
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Runs the chosen model until the stack stops.
pub fn run(args: &ServeArgs, stack: &Arc<Stack>, server: Server) -> Result<()> {
    info!(
        "serving HTTP on http://{}:{}/ with model {}{}; Ctrl-C to stop",
        stack.addr(),
        args.port,
        args.model.name(),
        match args.model {
            Model::Workers | Model::Reuseport => format!(" ({} workers)", args.workers),
            _ => String::new(),
        }
    );
    match args.model {
        Model::ThreadPerConnection => thread_per_connection(&server, &listen(stack, args)?),
        Model::OneAtATime => one_at_a_time(&server, &listen(stack, args)?),
        Model::Single => single(stack, &server, args),
        Model::Workers => workers(stack, &server, args),
        Model::Reuseport => reuseport(stack, &server, args),
        Model::EventLoop => crate::event_loop::run(stack, &server, &listen(stack, args)?),
    }
}

fn listen(stack: &Stack, args: &ServeArgs) -> Result<TcpListener> {
    stack
        .listen(args.port, args.backlog)
        .map_err(|e| format!("cannot listen on port {}: {e}", args.port).into())
}

/// Accepts the next connection; `None` once the stack has stopped.
fn accept(listener: &TcpListener) -> Result<Option<TcpStream>> {
    match listener.accept() {
        Ok((stream, _)) => Ok(Some(stream)),
        Err(e) if e.kind() == ErrorKind::NotConnected => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn thread_per_connection(server: &Server, listener: &TcpListener) -> Result<()> {
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

fn one_at_a_time(server: &Server, listener: &TcpListener) -> Result<()> {
    while let Some(stream) = accept(listener)? {
        serve_connection(server, stream);
    }
    Ok(())
}

fn single(stack: &Stack, server: &Server, args: &ServeArgs) -> Result<()> {
    loop {
        let listener = listen(stack, args)?;
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

/// Runs `body(i)` on N named worker threads and waits for them all.
fn on_workers(n: usize, body: impl Fn(usize) -> Result<()> + Send + Sync + 'static) -> Result<()> {
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

fn workers(stack: &Stack, server: &Server, args: &ServeArgs) -> Result<()> {
    let listener = Arc::new(listen(stack, args)?);
    let server = server.clone();
    on_workers(args.workers, move |_| {
        while let Some(stream) = accept(&listener)? {
            serve_connection(&server, stream);
        }
        Ok(())
    })
}

fn reuseport(stack: &Stack, server: &Server, args: &ServeArgs) -> Result<()> {
    // Every member joins before any connection is accepted, so the group is
    // complete from the first SYN on.
    let mut listeners = Vec::new();
    for _ in 0..args.workers.max(1) {
        let l = stack
            .listen_reuse(args.port, args.backlog)
            .map_err(|e| format!("cannot join the reuse-port group on {}: {e}", args.port))?;
        listeners.push(Some(l));
    }
    let listeners = Arc::new(std::sync::Mutex::new(listeners));
    let server = server.clone();
    on_workers(args.workers, move |i| {
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
