//! `portlab kernel-serve`: the same HTTP server (and inetd services), on the
//! kernel's sockets instead of portlab's stack.
//!
//! It is the benchmark's fairest comparator: identical request parsing,
//! pages and thread-per-connection model, only the TCP/IP stack differs.
//! There is no connection table to show (`/` answers 404; `/you` works).

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread;

use log::{info, warn};

use crate::cli::KernelServeArgs;
use crate::commands::inetd::{self, Service};
use crate::http::serve::serve_connection;
use crate::http::server::Server;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn bind(ip: IpAddr, port: u16) -> Result<TcpListener> {
    TcpListener::bind(SocketAddr::new(ip, port))
        .map_err(|e| format!("cannot listen on {ip}:{port} (kernel sockets): {e}").into())
}

/// Accepts the next connection; `None` on an error that will not go away.
fn accept(listener: &TcpListener) -> Option<std::net::TcpStream> {
    loop {
        match listener.accept() {
            Ok((s, _)) => {
                let _ = s.set_nodelay(true);
                return Some(s);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.raw_os_error() == Some(libc::EMFILE) => {
                warn!("accept: {e}");
                thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => {
                warn!("accept: {e}");
                return None;
            }
        }
    }
}

pub fn run(args: &KernelServeArgs) -> Result<()> {
    let http = bind(args.listen, args.port)?;
    if args.inetd {
        for service in inetd::ALL {
            let l = bind(args.listen, service.port())?;
            thread::Builder::new()
                .name(service.name().into())
                .spawn(move || inetd::accept_loop(service, || accept(&l)))?;
        }
    }
    info!(
        "serving HTTP on kernel sockets at http://{}:{}/{}",
        args.listen,
        args.port,
        if args.inetd {
            format!(
                ", and {}",
                inetd::ALL
                    .map(|s: Service| format!("{} on {}", s.name(), s.port()))
                    .join(", ")
            )
        } else {
            String::new()
        }
    );
    let server = Server {
        stack: None,
        model: "thread-per-connection (kernel sockets)",
        header_timeout: std::time::Duration::from_secs(args.header_timeout),
        max_connections: args.max_connections.max(1),
        active: Arc::default(),
        nodelay: args.nodelay.on(),
    };
    while let Some(stream) = accept(&http) {
        let server = server.clone();
        let spawned = thread::Builder::new()
            .name("conn".into())
            .spawn(move || serve_connection(&server, stream));
        if let Err(e) = spawned {
            warn!("cannot start a thread for a connection: {e}");
        }
    }
    Ok(())
}
