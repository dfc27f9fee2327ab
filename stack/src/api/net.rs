//! The application's view: a blocking, std::net-like API.
//!
//! ```no_run
//! use std::io::{Read, Write};
//! use portlab::api::net::{Stack, StackConfig};
//!
//! let stack = Stack::start(StackConfig::default()).expect("start the stack");
//! let listener = stack.listen(80, 128).expect("listen");
//! loop {
//!     let (mut stream, quad) = listener.accept().expect("accept");
//!     // `quad` is this connection's 4-tuple: one listener, one socket per client.
//!     std::thread::spawn(move || {
//!         let mut buf = [0u8; 1024];
//!         let _ = stream.read(&mut buf);
//!         let _ = stream.write_all(format!("you are {}\n", quad.remote).as_bytes());
//!     });
//! }
//! ```
//!
//! [`Stack`] starts the runtime thread on a TUN device. [`TcpListener::accept`]
//! blocks until the listener's accept queue has a connection and returns a
//! [`TcpStream`] — a new socket — with its [`Quad`]. Streams implement `Read`
//! and `Write`, can be half-closed with `shutdown`, and close when dropped.
//! Every type is `Send + Sync`; blocked threads sleep on a condition variable
//! of their own socket until the runtime wakes them.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::api::control::ControlServer;
use crate::api::runtime::{self, Clock, EventSink, Inner, Shared, Sleepers};
use crate::config::{DeviceConfig, NetConfig};
use crate::device::pcap::PcapWriter;
use crate::device::tun::{DeviceError, TunDevice};
use crate::engine::netstack::{NetStack, Ready, Table};
use crate::observe::event::Event;
use crate::wire::quad::{Quad, SocketId};

/// Everything needed to start a stack.
pub struct StackConfig {
    pub net: NetConfig,
    pub device: DeviceConfig,
    /// Where JSON event lines go (`None`: only the human log).
    pub events: Option<Box<dyn Write + Send>>,
    /// Where the packet capture (pcap) goes, if anywhere.
    pub pcap: Option<Box<dyn Write + Send>>,
    /// The control socket's path (`None`: the default, see `control`).
    pub control: Option<std::path::PathBuf>,
    /// A lossy link in the device layer (none by default).
    pub faults: crate::device::faults::FaultConfig,
}

/// The default lab prefix: unlikely to clash with home or office networks.
pub const DEFAULT_ADDR: Ipv4Addr = Ipv4Addr::new(10, 203, 80, 2);
/// The default IPv6 address: in a unique-local (ULA) /64 of portlab's own.
pub const DEFAULT_ADDR6: std::net::Ipv6Addr =
    std::net::Ipv6Addr::new(0xfd70, 0x6c61, 0x6200, 0, 0, 0, 0, 2);
pub const DEFAULT_PREFIX: u8 = 24;
pub const DEFAULT_TUN: &str = "portlab0";
/// How long `connect` waits for a handshake (SYN retransmissions included).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl Default for StackConfig {
    fn default() -> Self {
        let mut net = NetConfig::new(DEFAULT_ADDR, DEFAULT_PREFIX);
        net.seed = random_seed();
        net.addr6 = Some(DEFAULT_ADDR6);
        let host_addr = net.default_host_addr();
        let host_addr6 = net.default_host_addr6();
        StackConfig {
            net,
            device: DeviceConfig {
                name: DEFAULT_TUN.into(),
                host_addr,
                host_addr6,
                tx_queue_len: 4096,
                offload: false,
                io_uring: true,
            },
            events: None,
            pcap: None,
            control: None,
            faults: Default::default(),
        }
    }
}

/// A seed from the OS random source (smoltcp's own default is 0, which
/// would make every run's sequence numbers identical).
pub fn random_seed() -> u64 {
    let mut seed = [0u8; 8];
    // SAFETY: getrandom(2) writes at most 8 bytes into the buffer.
    let n = unsafe { libc::getrandom(seed.as_mut_ptr().cast(), 8, 0) };
    if n == 8 {
        u64::from_ne_bytes(seed)
    } else {
        // Fall back to the clock: still different on every run.
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    }
}

/// Why a stack could not start.
#[derive(Debug)]
pub enum StartError {
    Device(DeviceError),
    Io(io::Error),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Device(e) => e.fmt(f),
            StartError::Io(e) => write!(f, "starting the stack: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// A running stack: its runtime thread and its TUN device.
pub struct Stack {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
    control: Mutex<Option<ControlServer>>,
    control_path: std::path::PathBuf,
    device_name: String,
    addr: Ipv4Addr,
    addr6: Option<std::net::Ipv6Addr>,
    host_addr: Ipv4Addr,
}

impl Stack {
    /// Creates the TUN device, configures it, and starts the runtime thread.
    pub fn start(config: StackConfig) -> Result<Stack, StartError> {
        let device = TunDevice::open(&config.device, &config.net).map_err(StartError::Device)?;
        let clock = Clock::new();
        let now = clock.now();
        let device_name = device.name().to_string();
        let addr = config.net.addr;
        let addr6 = config.net.addr6;
        let host_addr = device.host_addr();
        let mut net = NetStack::new(config.net.clone(), now);
        let pcap = match config.pcap {
            Some(out) => {
                net.enable_capture();
                Some(PcapWriter::new(out).map_err(StartError::Io)?)
            }
            None => None,
        };
        net.emit(
            now,
            Event::StackStarted {
                device: device_name.clone(),
                addr: format!("{}/{}", addr, config.net.prefix_len),
                host: host_addr.to_string(),
                mtu: config.net.mtu,
                seed: config.net.seed,
            },
        );
        let device = Arc::new(device);
        // Application threads write their own packets, except behind the
        // lossy link, whose fault injectors the runtime owns.
        let direct = (!config.faults.any()).then(|| device.clone());
        let shared = Arc::new(Shared::new(net, clock, direct).map_err(StartError::Io)?);
        let sink = EventSink::new(config.events, pcap);
        let control_path = config
            .control
            .clone()
            .unwrap_or_else(|| crate::api::control::default_path(&device_name));
        let control = ControlServer::start(&control_path, shared.clone()).map_err(|e| {
            StartError::Io(io::Error::new(
                e.kind(),
                format!("control socket {}: {e}", control_path.display()),
            ))
        })?;
        let s2 = shared.clone();
        let faults = config.faults;
        let thread = std::thread::Builder::new()
            .name("portlab-runtime".into())
            .spawn(move || runtime::run(s2, device, sink, faults))
            .map_err(StartError::Io)?;
        Ok(Stack {
            shared,
            thread: Mutex::new(Some(thread)),
            control: Mutex::new(Some(control)),
            control_path,
            device_name,
            addr,
            addr6,
            host_addr,
        })
    }

    /// The TUN device's name.
    pub fn device_name(&self) -> &str {
        &self.device_name
    }

    /// The stack's own address.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The stack's IPv6 address, if IPv6 is on.
    pub fn addr6(&self) -> Option<std::net::Ipv6Addr> {
        self.addr6
    }

    /// The kernel side's address on the device.
    pub fn host_addr(&self) -> Ipv4Addr {
        self.host_addr
    }

    /// Gives up root: the process becomes `user` (and its primary group,
    /// with no supplementary groups). The TUN device is already attached and
    /// stays usable, so from here on packet parsing never runs as root. The
    /// control socket is handed to `user` so that it can be removed on exit.
    pub fn drop_privileges(&self, user: &str) -> io::Result<(u32, u32)> {
        let name = std::ffi::CString::new(user)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "bad user name"))?;
        // SAFETY: getpwnam with a valid C string; the result is read at once.
        let pw = unsafe { libc::getpwnam(name.as_ptr()) };
        if pw.is_null() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no user named '{user}' on this system"),
            ));
        }
        // SAFETY: pw is non-null and points to a valid passwd entry.
        let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
        if let Ok(c) = std::ffi::CString::new(self.control_path.as_os_str().as_encoded_bytes()) {
            // SAFETY: valid path; failure only means the socket stays root's.
            unsafe { libc::chown(c.as_ptr(), uid, gid) };
        }
        // SAFETY: plain system calls, each checked; group before user.
        unsafe {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(gid) != 0
                || libc::setuid(uid) != 0
            {
                return Err(io::Error::last_os_error());
            }
            if libc::setuid(0) == 0 {
                return Err(io::Error::other(
                    "privileges could be regained after dropping them",
                ));
            }
        }
        Ok((uid, gid))
    }

    /// Where `portlab ss` reaches this stack.
    pub fn control_path(&self) -> &std::path::Path {
        &self.control_path
    }

    /// Opens a listening socket on `port`. A second listen on the same port
    /// fails with `ErrorKind::AddrInUse`.
    pub fn listen(&self, port: u16, backlog: usize) -> io::Result<TcpListener> {
        self.open_listener(port, backlog, false)
    }

    /// Joins the reuse-port group on `port` (Linux's `SO_REUSEPORT`): several
    /// listeners share the port when every one of them joined this way, and
    /// each new connection goes to one member chosen by its 4-tuple.
    pub fn listen_reuse(&self, port: u16, backlog: usize) -> io::Result<TcpListener> {
        self.open_listener(port, backlog, true)
    }

    fn open_listener(&self, port: u16, backlog: usize, reuse: bool) -> io::Result<TcpListener> {
        let mut g = self.live()?;
        let now = self.shared.clock.now();
        let result = if reuse {
            g.net.listen_reuse(now, port, backlog)
        } else {
            g.net.listen(now, port, backlog)
        };
        let cv = result.map(|id| (id, g.waiter(Ready::Listener(id))));
        drop(g);
        self.shared.kick();
        let (id, cv) = cv?;
        let port = self.shared.lock().net.listener_port(id).unwrap_or(port);
        Ok(TcpListener {
            shared: self.shared.clone(),
            id,
            addr: SocketAddr::from((self.addr, port)),
            cv,
            nonblocking: AtomicBool::new(false),
        })
    }

    /// Connects to `remote` from a local port the stack chooses (see
    /// `ports`), waiting for the handshake to complete.
    pub fn connect(&self, remote: SocketAddr) -> io::Result<TcpStream> {
        self.connect_from(None, remote)
    }

    /// Connects from `local_port` (bind-then-connect; `None` or `Some(0)`: the
    /// stack chooses). Fails with `ConnectionRefused` on a reset, `TimedOut`
    /// after [`CONNECT_TIMEOUT`], `AddrInUse` if the 4-tuple is taken and
    /// `AddrNotAvailable` when no local port is free.
    pub fn connect_from(
        &self,
        local_port: Option<u16>,
        remote: SocketAddr,
    ) -> io::Result<TcpStream> {
        let mut g = self.live()?;
        let now = self.shared.clock.now();
        let (id, quad) = g.net.connect(now, remote, local_port)?;
        let stream = TcpStream::new(&self.shared, &mut g, id, quad);
        self.shared.kick();
        let deadline = std::time::Instant::now() + CONNECT_TIMEOUT;
        loop {
            match g.net.connect_result(id) {
                Some(Ok(())) => return Ok(stream),
                Some(Err(e)) => {
                    // Release the lock before `stream` drops (its drop locks).
                    drop(g);
                    return Err(e);
                }
                None => match wait(&stream.cv, g, Some(deadline)) {
                    Ok(next) => g = next,
                    Err(e) => {
                        if e.kind() == io::ErrorKind::TimedOut {
                            let mut g = self.shared.lock();
                            let now = self.shared.clock.now();
                            g.net.abort_socket(now, id);
                        }
                        return Err(e);
                    }
                },
            }
        }
    }

    /// Binds a UDP socket to `port` on the stack's address (0: the stack
    /// chooses). A second bind on a port fails with `AddrInUse`.
    pub fn udp_bind(&self, port: u16) -> io::Result<UdpSocket> {
        self.open_udp(port, false)
    }

    /// Joins the reuse-port group of UDP `port`: datagrams are spread over
    /// the members by a hash of their sender.
    pub fn udp_bind_reuse(&self, port: u16) -> io::Result<UdpSocket> {
        self.open_udp(port, true)
    }

    fn open_udp(&self, port: u16, reuse: bool) -> io::Result<UdpSocket> {
        let mut g = self.live()?;
        let now = self.shared.clock.now();
        let id = g.net.udp_bind(now, port, reuse)?;
        let local = g
            .net
            .udp_local(id)
            .unwrap_or(SocketAddr::from((self.addr, port)));
        let cv = g.waiter(Ready::Socket(id));
        drop(g);
        self.shared.kick();
        Ok(UdpSocket {
            shared: self.shared.clone(),
            id,
            local,
            cv,
            nonblocking: AtomicBool::new(false),
            read_timeout: Mutex::new(None),
        })
    }

    /// A readiness poller, for serving many non-blocking sockets from one thread.
    pub fn poller(&self) -> Poller {
        let (id, cv) = self.shared.lock().new_poller();
        Poller {
            shared: self.shared.clone(),
            id,
            cv,
        }
    }

    /// The story of socket `id` (live or recently closed).
    pub fn story(&self, id: SocketId) -> Option<crate::observe::story::Story> {
        self.shared.lock().net.story(id).cloned()
    }

    /// A snapshot of every listener and socket.
    pub fn table(&self) -> Table {
        self.shared.lock().net.table()
    }

    /// A stream of the events that pass `filter`, from now on (see
    /// [`crate::observe::event_stream`]).
    pub fn subscribe(
        &self,
        filter: crate::observe::event_stream::EventFilter,
    ) -> crate::observe::event_stream::Subscription {
        self.shared.streams.subscribe(filter)
    }

    /// How many event streams there were.
    pub fn event_streams(&self) -> crate::observe::event_stream::StreamCounts {
        self.shared.streams.counts()
    }

    /// A page of the table: counts of every row, the visitor's own row,
    /// and the rows the query asks for (see [`crate::observe::table::Query`]).
    pub fn table_page(&self, q: &crate::observe::table::Query) -> crate::observe::table::TablePage {
        self.shared.lock().net.table_page(q)
    }

    /// Records an application event in the stack's event log.
    pub fn emit(&self, event: Event) {
        let now = self.shared.clock.now();
        self.shared.lock().net.emit(now, event);
        self.shared.kick();
    }

    /// Stops the stack: FIN to every connected peer, up to `grace` for them
    /// to finish closing, then resets; the event log is flushed and the TUN
    /// device removed. Blocked calls return errors.
    pub fn shutdown(&self, grace: Duration) {
        // The control socket goes first: nothing left on disk.
        let control = self.control.lock().ok().and_then(|mut c| c.take());
        drop(control);
        self.shared.shutdown(grace);
        let handle = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(h) = handle {
            let _ = h.join();
        }
    }

    fn live(&self) -> io::Result<MutexGuard<'_, Inner>> {
        live(&self.shared)
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.shutdown(Duration::from_millis(500));
    }
}

fn live(shared: &Shared) -> io::Result<MutexGuard<'_, Inner>> {
    let g = shared.lock();
    if g.stopped {
        return Err(stopped());
    }
    Ok(g)
}

fn stopped() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "the stack has stopped")
}

/// Sleeps on `sleepers` until woken or until `deadline`; `TimedOut` past it.
fn wait<'a>(
    sleepers: &Sleepers,
    g: MutexGuard<'a, Inner>,
    deadline: Option<std::time::Instant>,
) -> io::Result<MutexGuard<'a, Inner>> {
    let timeout = match deadline {
        None => None,
        Some(d) => match d.checked_duration_since(std::time::Instant::now()) {
            Some(left) if !left.is_zero() => Some(left),
            _ => return Err(io::Error::new(io::ErrorKind::TimedOut, "timed out")),
        },
    };
    let g = sleepers.sleep(g, timeout);
    if g.stopped {
        return Err(stopped());
    }
    Ok(g)
}

/// A listening socket. Dropping it closes the listener and resets the
/// connections still waiting in its queues.
pub struct TcpListener {
    shared: Arc<Shared>,
    id: SocketId,
    addr: SocketAddr,
    cv: Arc<Sleepers>,
    nonblocking: AtomicBool,
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
    shared: Arc<Shared>,
    id: SocketId,
    quad: Quad,
    cv: Arc<Sleepers>,
    nonblocking: AtomicBool,
    read_timeout: Mutex<Option<Duration>>,
    write_timeout: Mutex<Option<Duration>>,
}

impl TcpStream {
    fn new(shared: &Arc<Shared>, g: &mut Inner, id: SocketId, quad: Quad) -> TcpStream {
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
    /// `ErrorKind::WouldBlock` instead; use a [`Poller`] to learn when to retry.
    pub fn set_nonblocking(&self, nonblocking: bool) {
        self.nonblocking.store(nonblocking, Ordering::Relaxed);
    }

    /// Names the thread or worker serving this connection in the
    /// connection table (the accepting thread is named automatically).
    pub fn set_served_by(&self, name: &str) {
        self.shared
            .lock()
            .net
            .set_served_by(self.id, name.to_string());
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
fn retry<T>(
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
                // packets; a non-blocking one (an event loop, which makes many
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

/// A UDP socket: datagrams in and out, no connection.
pub struct UdpSocket {
    shared: Arc<Shared>,
    id: SocketId,
    local: SocketAddr,
    cv: Arc<Sleepers>,
    nonblocking: AtomicBool,
    read_timeout: Mutex<Option<Duration>>,
}

impl UdpSocket {
    pub fn id(&self) -> SocketId {
        self.id
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// In non-blocking mode `recv_from` fails with `WouldBlock` when no
    /// datagram is waiting.
    pub fn set_nonblocking(&self, nonblocking: bool) {
        self.nonblocking.store(nonblocking, Ordering::Relaxed);
    }

    pub fn set_read_timeout(&self, t: Option<Duration>) {
        if let Ok(mut g) = self.read_timeout.lock() {
            *g = t;
        }
    }

    /// Names the thread reading this socket in the connection table.
    pub fn set_served_by(&self, name: &str) {
        self.shared
            .lock()
            .net
            .set_served_by(self.id, name.to_string());
    }

    /// Connects the socket to `peer`: it then receives only from `peer`
    /// (its 4-tuple is its own), and `send`/`recv` need no address.
    pub fn connect(&self, peer: SocketAddr) -> io::Result<()> {
        live(&self.shared)?.net.udp_connect(self.id, peer)
    }

    /// Sends one datagram to the connected peer.
    pub fn send(&self, data: &[u8]) -> io::Result<usize> {
        let peer = live(&self.shared)?
            .net
            .udp_peer(self.id)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "not connected"))?;
        self.send_to(data, peer)
    }

    /// Receives one datagram from the connected peer.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv_from(buf).map(|(n, _)| n)
    }

    /// Sends one datagram to `to` (waits while the send buffer is full).
    pub fn send_to(&self, data: &[u8], to: SocketAddr) -> io::Result<usize> {
        let id = self.id;
        self.wait_for(None, |net, now| net.udp_send_to(now, id, data, to))
    }

    /// Receives one datagram and its sender.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let id = self.id;
        let timeout = self.read_timeout.lock().ok().and_then(|g| *g);
        self.wait_for(timeout, |net, _| net.udp_recv_from(id, buf))
    }

    fn wait_for<T>(
        &self,
        timeout: Option<Duration>,
        op: impl FnMut(&mut NetStack, smoltcp::time::Instant) -> io::Result<T>,
    ) -> io::Result<T> {
        retry(
            &self.shared,
            &self.cv,
            &self.nonblocking,
            timeout,
            false,
            op,
        )
    }
}

impl Drop for UdpSocket {
    fn drop(&mut self) {
        let mut g = self.shared.lock();
        if !g.stopped {
            let now = self.shared.clock.now();
            g.net.udp_close(now, self.id);
        }
        g.forget_waiter(Ready::Socket(self.id));
        drop(g);
        self.shared.kick();
    }
}

impl Source for UdpSocket {
    fn ready_key(&self) -> Ready {
        Ready::Socket(self.id)
    }
}

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
    shared: Arc<Shared>,
    id: u64,
    cv: Arc<Sleepers>,
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
