//! smoltcp as the TCP engine, one connection at a time.
//!
//! smoltcp's `Interface` normally polls one `SocketSet` holding every socket,
//! and for each incoming segment it walks that set until a socket accepts it:
//! the cost of a packet grows with the number of connections. We keep the
//! `Interface` (addresses, routes, the random number generator for initial
//! sequence numbers) but give every connection its own one-socket set. Our
//! demux finds the connection by 4-tuple; the engine is then handed exactly
//! that connection's set and a `OnePacket` device that yields exactly that
//! packet, through `poll_ingress_single`. Whatever the engine transmits in
//! reply — SYN-ACK, ACK, RST, echo reply — is collected in a vector and goes
//! out through the stack's own transmit path, so it reaches the device, the
//! capture and the events like every other packet.
//!
//! Initial sequence numbers come from smoltcp's single PRNG stream seeded by
//! `NetConfig::seed` — not the keyed hash of RFC 6528 that Linux uses.

use std::sync::atomic::{AtomicU32, Ordering};

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, Checksum, ChecksumCapabilities, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr};

use crate::config::NetConfig;
use crate::engine::buffers::ConnSockets;

/// The engine's TSval clock, in milliseconds. smoltcp asks for timestamps
/// through a plain `fn() -> u32`, so the stack stores the time it was given
/// here before each call into the engine instead of letting it read a clock.
static TSVAL_MILLIS: AtomicU32 = AtomicU32::new(0);

fn tsval() -> u32 {
    TSVAL_MILLIS.load(Ordering::Relaxed)
}

/// The engine: a smoltcp interface in IP medium.
pub struct Engine {
    iface: Interface,
    caps: DeviceCapabilities,
}

impl Engine {
    pub fn new(cfg: &NetConfig, now: Instant) -> Engine {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = cfg.mtu;
        let mut checksum = ChecksumCapabilities::default();
        // Our layer verifies TCP checksums before demultiplexing (see `segment`).
        checksum.tcp = Checksum::Tx;
        caps.checksum = checksum;

        let mut config = Config::new(HardwareAddress::Ip);
        config.random_seed = cfg.seed;
        let mut dev = OnePacket {
            rx: None,
            tx: &mut Vec::new(),
            caps: caps.clone(),
        };
        let mut iface = Interface::new(config, &mut dev, now);
        iface.update_ip_addrs(|addrs| {
            // Two addresses at most: within the interface's fixed capacity.
            let _ = addrs.push(IpCidr::new(IpAddress::Ipv4(cfg.addr), cfg.prefix_len));
            if let Some(a6) = cfg.addr6 {
                let _ = addrs.push(IpCidr::new(IpAddress::Ipv6(a6), 64));
            }
        });
        if let Some(gw) = cfg.default_gateway {
            let _ = iface.routes_mut().add_default_ipv4_route(gw);
        }
        if let Some(gw) = cfg.default_gateway6 {
            let _ = iface.routes_mut().add_default_ipv6_route(gw);
        }
        Engine { iface, caps }
    }

    fn set_clock(now: Instant) {
        TSVAL_MILLIS.store(now.total_millis() as u32, Ordering::Relaxed);
    }

    /// A new TCP socket (in a set of its own) with our buffer sizes and
    /// timestamps enabled; `None` when there is no memory for its buffers.
    pub fn new_socket(rx: usize, tx: usize) -> Option<(ConnSockets, SocketHandle)> {
        let (mut set, handle) = ConnSockets::tcp(rx, tx)?;
        set.get_mut::<tcp::Socket>(handle)
            .set_tsval_generator(Some(tsval));
        Some((set, handle))
    }

    /// Starts an active open on `socket` from `local_port` to `remote` (SYN-SENT);
    /// the SYN goes out on the next egress.
    pub fn connect(
        &mut self,
        socket: &mut tcp::Socket<'static>,
        remote: (IpAddress, u16),
        local_port: u16,
    ) -> Result<(), tcp::ConnectError> {
        socket.connect(self.iface.context(), remote, local_port)
    }

    /// Hands one packet to the engine with the sockets of one connection
    /// (or none); replies are appended to `tx`.
    pub fn ingress(
        &mut self,
        now: Instant,
        packet: &[u8],
        sockets: &mut SocketSet<'_>,
        tx: &mut Vec<Vec<u8>>,
    ) {
        Self::set_clock(now);
        let mut dev = OnePacket {
            rx: Some(packet),
            tx,
            caps: self.caps.clone(),
        };
        self.iface.poll_ingress_single(now, &mut dev, sockets);
    }

    /// Lets the connection's socket send whatever it has to (data, ACKs,
    /// retransmissions, FIN, RST); packets are appended to `tx`.
    pub fn egress(&mut self, now: Instant, sockets: &mut SocketSet<'_>, tx: &mut Vec<Vec<u8>>) {
        Self::set_clock(now);
        let mut dev = OnePacket {
            rx: None,
            tx,
            caps: self.caps.clone(),
        };
        // Each round sends at most one segment per socket; the bound keeps a
        // confused socket from spinning forever.
        for _ in 0..4096 {
            if self.iface.poll_egress(now, &mut dev, sockets) == smoltcp::iface::PollResult::None {
                break;
            }
        }
    }

    /// When the engine next wants to poll these sockets.
    pub fn poll_at(&mut self, now: Instant, sockets: &SocketSet<'_>) -> Option<Instant> {
        self.iface.poll_at(now, sockets)
    }
}

/// A device that yields one given packet and collects what is transmitted.
struct OnePacket<'a> {
    rx: Option<&'a [u8]>,
    tx: &'a mut Vec<Vec<u8>>,
    caps: DeviceCapabilities,
}

impl phy::Device for OnePacket<'_> {
    type RxToken<'b>
        = Rx<'b>
    where
        Self: 'b;
    type TxToken<'b>
        = Tx<'b>
    where
        Self: 'b;

    fn receive(&mut self, _now: Instant) -> Option<(Rx<'_>, Tx<'_>)> {
        let packet = self.rx.take()?;
        Some((Rx(packet), Tx(self.tx)))
    }

    fn transmit(&mut self, _now: Instant) -> Option<Tx<'_>> {
        Some(Tx(self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.caps.clone()
    }
}

struct Rx<'a>(&'a [u8]);

impl phy::RxToken for Rx<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.0)
    }
}

struct Tx<'a>(&'a mut Vec<Vec<u8>>);

impl phy::TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut buf = crate::device::packet_pool::take(len);
        let r = f(&mut buf);
        self.0.push(buf);
        r
    }
}
