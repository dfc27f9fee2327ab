//! [`Stack`]: starting the stack on a TUN device, and every call that
//! opens a socket (listen, connect, bind, a poller) or asks the stack as a
//! whole (its table, its events, its shutdown).

use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use super::blocking::{live, wait};
use super::poll::Poller;
use super::tcp::{TcpListener, TcpStream};
use super::udp::UdpSocket;
use crate::api::control::ControlServer;
use crate::api::runtime::{self, Clock, EventSink, Inner, Shared};
use crate::config::{DeviceConfig, NetConfig};
use crate::device::pcap::PcapWriter;
use crate::device::tun::{DeviceError, TunDevice};
use crate::engine::netstack::{NetStack, Ready, Table};
use crate::observe::event::Event;
use crate::wire::quad::SocketId;

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
