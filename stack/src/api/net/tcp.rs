//! TCP sockets: [`TcpListener`] (whose `accept` hands out a new socket
//! per connection) and [`TcpStream`] (`Read`, `Write`, `shutdown`,
//! timeouts, `TCP_NODELAY`).

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::blocking::{live, wait};
use super::poll::Source;
use crate::api::runtime::{Inner, Shared, Sleepers};
use crate::engine::netstack::{NetStack, Ready};
use crate::observe::event::Event;
use crate::wire::quad::{Quad, SocketId};

/// A listening socket. Dropping it closes the listener and resets the
/// connections still waiting in its queues.
pub struct TcpListener {
    pub(super) shared: Arc<Shared>,
    pub(super) id: SocketId,
    pub(super) addr: SocketAddr,
    pub(super) cv: Arc<Sleepers>,
    pub(super) nonblocking: AtomicBool,
}

impl TcpListener {
    /// Waits for the next established connection and takes it from the
    /// accept queue. The accepting thread's name is recorded in the events.
    pub fn accept(&self) -> io::Result<(TcpStream, Quad)> {
        let by = std::thread::current().name().map(str::to_string);
        let mut g = live(&self.shared)?;
        loop {
            let now = self.shared.clock.now();
            if let Some((id, quad)) = g.net.accept(now, self.id, by.clone())? {
                let stream = TcpStream::new(&self.shared, &mut g, id, quad);
                drop(g);
                self.shared.kick();
                return Ok((stream, quad));
            }
            if self.nonblocking.load(Ordering::Relaxed) {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            g = wait(&self.cv, g, None)?;
        }
    }

    /// In non-blocking mode `accept` fails with `ErrorKind::WouldBlock`
    /// when the accept queue is empty.
    pub fn set_nonblocking(&self, nonblocking: bool) {
        self.nonblocking.store(nonblocking, Ordering::Relaxed);
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The listening socket's id (as in the events).
    pub fn id(&self) -> SocketId {
        self.id
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        let mut g = self.shared.lock();
        if !g.stopped {
            let now = self.shared.clock.now();
            g.net.close_listener(now, self.id);
        }
        g.forget_waiter(Ready::Listener(self.id));
        drop(g);
        self.shared.kick();
    }
}

/// One connection: its own socket, named by its 4-tuple.
pub struct TcpStream {
    pub(super) shared: Arc<Shared>,
    pub(super) id: SocketId,
    pub(super) quad: Quad,
    pub(super) cv: Arc<Sleepers>,
    pub(super) nonblocking: AtomicBool,
    pub(super) read_timeout: Mutex<Option<Duration>>,
    pub(super) write_timeout: Mutex<Option<Duration>>,
}

impl TcpStream {
    pub(super) fn new(shared: &Arc<Shared>, g: &mut Inner, id: SocketId, quad: Quad) -> TcpStream {
        TcpStream {
            shared: shared.clone(),
            id,
            quad,
            cv: g.waiter(Ready::Socket(id)),
            nonblocking: AtomicBool::new(false),
            read_timeout: Mutex::new(None),
            write_timeout: Mutex::new(None),
        }
    }

    /// The stack's number for this socket (as in the events).
    pub fn id(&self) -> SocketId {
        self.id
    }

    /// The connection's 4-tuple.
    pub fn quad(&self) -> Quad {
        self.quad
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.quad.local
    }

    pub fn peer_addr(&self) -> SocketAddr {
        self.quad.remote
    }

    /// In non-blocking mode, reads and writes that would wait fail with
    /// `ErrorKind::WouldBlock` instead; use a [`Poller`](super::Poller) to learn when to retry.
    pub fn set_nonblocking(&self, nonblocking: bool) {
        self.nonblocking.store(nonblocking, Ordering::Relaxed);
    }

    /// Names the thread or worker serving this connection in the
    /// connection table (the accepting thread is named automatically).
    pub fn set_served_by(&self, name: &str) {
        self.shared.lock().net.set_served_by(self.id, name);
    }

    /// Reads block at most this long, then fail with `TimedOut`.
    pub fn set_read_timeout(&self, t: Option<Duration>) {
        if let Ok(mut g) = self.read_timeout.lock() {
            *g = t;
        }
    }

    /// Writes block at most this long, then fail with `TimedOut`.
    pub fn set_write_timeout(&self, t: Option<Duration>) {
        if let Ok(mut g) = self.write_timeout.lock() {
            *g = t;
        }
    }

    /// `TCP_NODELAY`, as `std::net::TcpStream::set_nodelay`: with `true`,
    /// Nagle's algorithm is off and a partial segment never waits for the
    /// peer's acknowledgement. Off by default: Minshall's rule, as in Linux
    /// (see [`crate::transport::nagle`]).
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        let id = self.id;
        self.call(|net, now| net.set_nodelay(now, id, nodelay))
    }

    /// Whether `TCP_NODELAY` is set (see [`TcpStream::set_nodelay`]).
    pub fn nodelay(&self) -> io::Result<bool> {
        live(&self.shared)?.net.nodelay(self.id)
    }

    /// Half- or fully closes the connection (`Write` sends FIN).
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        let id = self.id;
        self.call(|net, now| net.shutdown(now, id, how))
    }

    /// One call into the core that never waits; the runtime sends what it queued.
    fn call<T>(
        &self,
        op: impl FnOnce(&mut NetStack, smoltcp::time::Instant) -> io::Result<T>,
    ) -> io::Result<T> {
        let mut g = live(&self.shared)?;
        let now = self.shared.clock.now();
        let r = op(&mut g.net, now);
        drop(g);
        self.shared.kick();
        r
    }

    /// Writes all of `data`, then sends FIN in the same step, so that the
    /// FIN follows the last data segment at once (like `write` and
    /// `shutdown(Write)` with no gap in which the peer could close first).
    pub fn write_all_then_shutdown(&self, data: &[u8]) -> io::Result<()> {
        let id = self.id;
        let mut rest = data;
        loop {
            let n = self.blocking(&self.write_timeout, false, |net, now| {
                let n = net.send(now, id, rest)?;
                if n == rest.len() {
                    net.shutdown(now, id, Shutdown::Write)?;
                }
                Ok(n)
            })?;
            rest = &rest[n..];
            if rest.is_empty() {
                return Ok(());
            }
        }
    }

    /// Records an application event about this connection.
    pub fn emit(&self, kind: &str, detail: String) {
        let now = self.shared.clock.now();
        let event = Event::App {
            kind: kind.to_string(),
            id: Some(self.id),
            quad: Some(self.quad),
            detail,
        };
        self.shared.lock().net.emit(now, event);
        self.shared.kick();
    }

    /// Runs `op` until it does not return `WouldBlock`, sleeping in between.
    fn blocking<T>(
        &self,
        timeout: &Mutex<Option<Duration>>,
        direct: bool,
        op: impl FnMut(&mut NetStack, smoltcp::time::Instant) -> io::Result<T>,
    ) -> io::Result<T> {
        let timeout = timeout.lock().ok().and_then(|g| *g);
        retry(
            &self.shared,
            &self.cv,
            &self.nonblocking,
            timeout,
            direct,
            op,
        )
    }
}

/// Runs `op` under the lock until it does not fail with `WouldBlock`,
/// sleeping on the socket's condition variable in between — unless the
/// socket is non-blocking, or `timeout` passes (`TimedOut`). Afterwards what
/// `op` queued goes out: written by this thread when `direct`, else by the
/// runtime, which it kicks only if there is something for it to do (see
/// [`Shared::after_app_call`]).
pub(super) fn retry<T>(
    shared: &Shared,
    cv: &Sleepers,
    nonblocking: &AtomicBool,
    timeout: Option<Duration>,
    direct: bool,
    mut op: impl FnMut(&mut NetStack, smoltcp::time::Instant) -> io::Result<T>,
) -> io::Result<T> {
    let deadline = timeout.map(|d| std::time::Instant::now() + d);
    let mut g = live(shared)?;
    loop {
        let now = shared.clock.now();
        match op(&mut g.net, now) {
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    && !nonblocking.load(Ordering::Relaxed) =>
            {
                g = wait(cv, g, deadline)?;
            }
            r => {
                // A blocking writer (a thread per connection) sends its own
                // packets, unless other woken threads are about to queue
                // theirs (see `Shared::after_app_call`); a non-blocking one (an event loop, which makes many
                // calls per wake-up) leaves them to the runtime, which writes
                // them all in one go. Measured: direct writes of plain
                // `write`s raise keep-alive requests/s by about a quarter;
                // for reads, and for the response-and-close of a new
                // connection per request, they cost more than they save.
                let (mut out, mut notify) = (Vec::new(), Vec::new());
                let kick = nonblocking.load(Ordering::Relaxed)
                    || shared.after_app_call(&mut g, direct, &mut out, &mut notify);
                drop(g);
                for cv in notify {
                    cv.wake_all();
                }
                shared.write_direct(&mut out);
                if kick {
                    shared.kick();
                }
                return r;
            }
        }
    }
}

impl Read for TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }
}

impl Read for &TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let id = self.id;
        self.blocking(&self.read_timeout, false, |net, now| net.recv(now, id, buf))
    }
}

impl TcpStream {
    /// Like `read`, but drops the bytes instead of copying them out (what
    /// `recv` with `MSG_TRUNC` does on a Linux TCP socket): up to `max`
    /// bytes, waiting as `read` does; 0 at the end of the stream.
    pub fn discard(&self, max: usize) -> io::Result<usize> {
        let id = self.id;
        self.blocking(&self.read_timeout, false, |net, now| {
            net.discard(now, id, max)
        })
    }
}

impl TcpStream {
    /// Drops everything the peer sends until its FIN, where it arrives:
    /// the runtime takes the bytes out of the receive buffer as the engine
    /// puts them in, and this thread sleeps until the end of the stream
    /// (a discard service with no thread switch per batch of packets).
    /// Returns how many bytes were dropped; a reset is an error. With a
    /// read timeout, `TimedOut` comes after that long without a byte.
    pub fn sink(&self) -> io::Result<u64> {
        let id = self.id;
        let sleepers = self.shared.lock().waiter(Ready::Sink(id));
        let timeout = self.read_timeout.lock().ok().and_then(|g| *g);
        let mut seen = 0;
        loop {
            let r = retry(
                &self.shared,
                &sleepers,
                &self.nonblocking,
                timeout,
                false,
                |net, now| net.sink(now, id),
            );
            match r {
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    // The thread sleeps through the bytes: whether any
                    // came is looked up when the time is up.
                    let sunk = self.shared.lock().net.sunk(id).unwrap_or(seen);
                    if sunk == seen {
                        return Err(e);
                    }
                    seen = sunk;
                }
                r => return r,
            }
        }
    }
}

impl Write for TcpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Write for &TcpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let id = self.id;
        self.blocking(&self.write_timeout, true, |net, now| net.send(now, id, buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        let mut g = self.shared.lock();
        if !g.stopped {
            let now = self.shared.clock.now();
            g.net.close(now, self.id);
        }
        g.forget_waiter(Ready::Socket(self.id));
        g.forget_waiter(Ready::Sink(self.id));
        drop(g);
        self.shared.kick();
    }
}

impl Source for TcpStream {
    fn ready_key(&self) -> Ready {
        Ready::Socket(self.id)
    }
}

impl Source for TcpListener {
    fn ready_key(&self) -> Ready {
        Ready::Listener(self.id)
    }
}
