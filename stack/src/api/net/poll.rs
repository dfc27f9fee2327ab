//! [`Poller`]: readiness for many sockets at once, for an event loop.
//! Level-triggered; its cost follows the sockets that changed, not the
//! number registered.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use super::blocking::{live, stopped, wait};
use crate::api::runtime::{Shared, Sleepers};
use crate::engine::netstack::Ready;

/// What a registration waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interest {
    pub readable: bool,
    pub writable: bool,
}

impl Interest {
    pub const READABLE: Interest = Interest {
        readable: true,
        writable: false,
    };
    pub const WRITABLE: Interest = Interest {
        readable: false,
        writable: true,
    };
    pub const BOTH: Interest = Interest {
        readable: true,
        writable: true,
    };
}

/// A socket a [`Poller`] can watch.
pub trait Source {
    #[doc(hidden)]
    fn ready_key(&self) -> Ready;
}

/// A readiness report: the token a socket was registered with and what it
/// is ready for. A listener is readable when `accept` would not block; a
/// stream is readable when `read` would not block (data, end of stream or an
/// error) and writable when `write` would not block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollEvent {
    pub token: usize,
    pub readable: bool,
    pub writable: bool,
}

/// Waits for readiness on many sockets at once — the stack's `epoll`.
///
/// Register non-blocking listeners and streams with a token of your choice;
/// [`poll`](Poller::poll) sleeps until at least one is ready and reports
/// which. Reports are level-triggered: a socket that is still ready is
/// reported again on the next call. The cost of a `poll` is proportional to
/// the sockets whose state changed since the last one, not to the number
/// registered: the runtime hands the poller the tokens of the sockets it just
/// touched.
pub struct Poller {
    pub(super) shared: Arc<Shared>,
    pub(super) id: u64,
    pub(super) cv: Arc<Sleepers>,
}

impl Poller {
    /// Watches `source` under `token` (re-registering a token replaces it).
    pub fn register(&self, source: &impl Source, token: usize, interest: Interest) {
        self.shared.lock().watch(
            self.id,
            token,
            source.ready_key(),
            interest.readable,
            interest.writable,
        );
    }

    /// Stops watching `token`.
    pub fn deregister(&self, token: usize) {
        self.shared.lock().unwatch(self.id, token);
    }

    /// Waits until a registered socket is ready or `timeout` passes; the
    /// ready ones are appended to `events` (none on timeout).
    pub fn poll(&self, events: &mut Vec<PollEvent>, timeout: Option<Duration>) -> io::Result<()> {
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        let mut g = live(&self.shared)?;
        loop {
            let inner = &mut *g;
            let Some(p) = inner.pollers.get_mut(&self.id) else {
                return Err(stopped());
            };
            let mut candidates = std::mem::take(&mut p.pending);
            let mut still = Vec::new();
            for token in candidates.drain(..) {
                let Some(&(r, want_r, want_w)) = p.registered.get(&token) else {
                    continue;
                };
                let (readable, writable) = match r {
                    Ready::Socket(id) => (inner.net.readable(id), inner.net.writable(id)),
                    Ready::Listener(id) => (inner.net.acceptable(id), false),
                    Ready::Sink(id) => (inner.net.readable(id), false),
                };
                let ev = PollEvent {
                    token,
                    readable: readable && want_r,
                    writable: writable && want_w,
                };
                if ev.readable || ev.writable {
                    events.push(ev);
                    // Level-triggered: look again next time.
                    still.push(token);
                }
            }
            p.pending = still;
            if !events.is_empty() {
                return Ok(());
            }
            g = match wait(&self.cv, g, deadline) {
                Ok(g) => g,
                Err(e) if e.kind() == io::ErrorKind::TimedOut => return Ok(()),
                Err(e) => return Err(e),
            };
        }
    }
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.shared.lock().drop_poller(self.id);
    }
}
