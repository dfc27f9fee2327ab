//! The HTTP server's settings, shared by every connection it serves, and
//! its count of the connections it serves now (the cap of
//! `--max-connections`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use portlab::api::net::Stack;

/// What every connection of one server shares.
#[derive(Clone)]
pub struct Server {
    /// The stack whose connection table the pages show; `None` when the
    /// same server runs on the kernel's sockets (`portlab kernel-serve`).
    pub stack: Option<Arc<Stack>>,
    /// The serving model's name, shown on the page.
    pub model: &'static str,
    pub header_timeout: Duration,
    /// Connections served at once, at most; more get 503 and are closed.
    pub max_connections: usize,
    /// Connections being served now.
    pub active: Arc<AtomicUsize>,
    /// Set `TCP_NODELAY` on every connection, as nginx does (`tcp_nodelay
    /// on`): a response's last partial segment never waits for an ACK.
    pub nodelay: bool,
}

/// Counts a connection as served while it lives.
pub struct Active(Arc<AtomicUsize>);

impl Server {
    /// Admits a connection under the cap, or `None` when the server is full.
    pub fn admit(&self) -> Option<Active> {
        let now = self.active.fetch_add(1, Ordering::AcqRel) + 1;
        let guard = Active(self.active.clone());
        (now <= self.max_connections).then_some(guard)
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
