//! The stack's settings, validated in one place.
//!
//! [`NetConfig`] is everything the sans-IO core needs (addresses, queue caps,
//! timers, buffer sizes); [`DeviceConfig`] is what only the TUN device needs.
//! The binary turns its flags into these; tests build them directly.
//!
//! Settings are named by the layer whose idea they configure (Nagle's
//! rule, the port range, the SYN cookie mode), so this file sits beside
//! the layers and reads those types.
//!
//! May use: transport.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use smoltcp::time::Duration;

pub use crate::transport::nagle::NagleRule;
use crate::transport::ports::{Algorithm, PortRange};

/// What to do with the ACK that completes a handshake when the accept queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    /// Linux's default: drop it silently; the client retransmits and gets in
    /// once the application accepts and there is room.
    #[default]
    Drop,
    /// Linux's `tcp_abort_on_overflow = 1`: answer it with RST.
    Rst,
}

/// Linux caps every backlog at `net.core.somaxconn` (4096 since Linux 5.4).
pub const SOMAXCONN: usize = 4096;

/// Settings of the protocol core.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// The stack's own address.
    pub addr: Ipv4Addr,
    /// The length of the stack's prefix: it reaches this subnet directly.
    pub prefix_len: u8,
    /// The stack's IPv6 address (on a /64), if IPv6 is on.
    pub addr6: Option<Ipv6Addr>,
    /// With IPv6 and a default route: the IPv6 gateway.
    pub default_gateway6: Option<Ipv6Addr>,
    /// When set, a default route through this address (namespace labs only:
    /// by default the stack can send nowhere but its own subnet).
    pub default_gateway: Option<Ipv4Addr>,
    /// The device MTU.
    pub mtu: usize,
    /// Seed of the engine's random number generator (initial sequence numbers).
    pub seed: u64,
    /// Accept-queue overflow behaviour.
    pub overflow: Overflow,
    /// Half-open connections allowed per listener.
    pub syn_queue_cap: usize,
    /// When a SYN is answered with a SYN cookie instead of a socket (see
    /// `syncookie`): once the SYN queue is full (the default), always, never.
    pub syn_cookies: crate::transport::syncookie::Mode,
    /// How long a connection may stay in SYN-RECEIVED.
    pub syn_timeout: Duration,
    /// How long the stack keeps a 4-tuple in TIME-WAIT after closing first.
    pub time_wait: Duration,
    /// How long a connection the application has closed may go without
    /// hearing from its peer (a peer that vanished never acknowledges our
    /// data or FIN) before it is reset and freed — Linux's `tcp_fin_timeout`
    /// and orphan retries. A peer that keeps acknowledging keeps it alive.
    pub orphan_timeout: Duration,
    /// Receive buffer per connection, bytes (1 MiB: a window scale of 5;
    /// untouched pages cost nothing, see `buffers`). A window this large
    /// keeps a fast sender from waiting for ours to open: kernel-to-stack
    /// transfers run about a third faster than with 256 KiB.
    pub rx_buffer: usize,
    /// Send buffer per connection, bytes (256 KiB). Larger, smoltcp's loss
    /// recovery (a go-back-N resend of everything in flight after a
    /// timeout) makes a transfer through a lossy link about ten times
    /// slower; without loss it gains nothing.
    pub tx_buffer: usize,
    /// Sockets (connections) the stack will hold at most.
    pub max_sockets: usize,
    /// Events of one kind logged at once before rate limiting starts.
    pub event_burst: u32,
    /// Events of one kind per second after the burst (0: no rate limit).
    pub event_rate: u32,
    /// How the stack picks its own ports for outbound connections.
    pub port_algorithm: Algorithm,
    /// The ephemeral port range.
    pub port_range: PortRange,
    /// The form of Nagle's algorithm for connections without `TCP_NODELAY`
    /// (see `nagle`): Minshall's, as Linux, unless told otherwise.
    pub nagle: NagleRule,
}

impl NetConfig {
    /// Defaults for a stack at `addr/prefix_len`.
    pub fn new(addr: Ipv4Addr, prefix_len: u8) -> NetConfig {
        NetConfig {
            addr,
            prefix_len,
            addr6: None,
            default_gateway6: None,
            default_gateway: None,
            mtu: 1500,
            seed: 0,
            overflow: Overflow::Drop,
            syn_queue_cap: 1024,
            syn_cookies: crate::transport::syncookie::Mode::Auto,
            syn_timeout: Duration::from_secs(30),
            time_wait: Duration::from_secs(10),
            // Longer than smoltcp's retransmissions back off to (1 + 2 + 4 + …
            // + 60 s): a peer behind a bad link is not given up on while it
            // may still answer.
            orphan_timeout: Duration::from_secs(180),
            rx_buffer: 1024 * 1024,
            tx_buffer: 256 * 1024,
            max_sockets: 16 * 1024,
            event_burst: 2000,
            event_rate: 1000,
            port_algorithm: Algorithm::DoubleHash,
            port_range: PortRange::IANA,
            nagle: NagleRule::Minshall,
        }
    }

    /// The network part of the stack's prefix.
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & prefix_mask(self.prefix_len))
    }

    /// Whether the stack can send to `ip`, either family.
    pub fn reaches_ip(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => self.reaches(a),
            IpAddr::V6(a) => self.addr6.is_some_and(|own| {
                a != own
                    && !a.is_unspecified()
                    && !a.is_multicast()
                    && (self.default_gateway6.is_some() || a.segments()[..4] == own.segments()[..4])
            }),
        }
    }

    /// The stack's own address in `ip`'s family.
    pub fn own_addr_for(&self, ip: IpAddr) -> Option<IpAddr> {
        match ip {
            IpAddr::V4(_) => Some(IpAddr::V4(self.addr)),
            IpAddr::V6(_) => self.addr6.map(IpAddr::V6),
        }
    }

    /// The kernel side's IPv6 address unless told otherwise: `…::1` of the
    /// stack's /64, or `…::2` if that is the stack's own.
    pub fn default_host_addr6(&self) -> Option<Ipv6Addr> {
        let own = self.addr6?;
        let mut seg = own.segments();
        seg[4..].copy_from_slice(&[0, 0, 0, 1]);
        if Ipv6Addr::from(seg) == own {
            seg[7] = 2;
        }
        Some(Ipv6Addr::from(seg))
    }

    /// Whether the stack can send to `ip`: its own subnet, or anywhere with
    /// a default gateway.
    pub fn reaches(&self, ip: Ipv4Addr) -> bool {
        let mask = prefix_mask(self.prefix_len);
        ip != self.addr
            && !ip.is_unspecified()
            && !ip.is_broadcast()
            && !ip.is_multicast()
            && (self.default_gateway.is_some()
                || u32::from(ip) & mask == u32::from(self.addr) & mask)
    }

    /// The address the kernel side of the device gets unless told otherwise:
    /// the first host address of the prefix, or the second if that is the
    /// stack's own.
    pub fn default_host_addr(&self) -> Ipv4Addr {
        let first = u32::from(self.network()) + 1;
        if first == u32::from(self.addr) {
            Ipv4Addr::from(first + 1)
        } else {
            Ipv4Addr::from(first)
        }
    }
}

/// The netmask of a prefix length, as a host-order integer.
pub fn prefix_mask(prefix_len: u8) -> u32 {
    match prefix_len {
        0 => 0,
        n if n >= 32 => u32::MAX,
        n => u32::MAX << (32 - n),
    }
}

/// Settings of the TUN device.
#[derive(Debug, Clone)]
pub struct DeviceConfig {
    /// The interface name (at most 15 bytes).
    pub name: String,
    /// The kernel side's address on the device.
    pub host_addr: Ipv4Addr,
    /// The kernel side's IPv6 address (on the stack's /64), if IPv6 is on.
    pub host_addr6: Option<Ipv6Addr>,
    /// The device's transmit queue length, packets.
    pub tx_queue_len: u32,
    /// Open the device with `IFF_VNET_HDR` and write runs of one
    /// connection's segments as one packet (segmentation offload, see
    /// `gso`).
    pub offload: bool,
    /// Move packets through io_uring where the kernel offers it (see
    /// `device::packet_io`); otherwise a system call per packet.
    pub io_uring: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_address_is_first_of_prefix_unless_taken() {
        let c = NetConfig::new(Ipv4Addr::new(10, 203, 80, 2), 24);
        assert_eq!(c.default_host_addr(), Ipv4Addr::new(10, 203, 80, 1));
        let c = NetConfig::new(Ipv4Addr::new(10, 203, 80, 1), 24);
        assert_eq!(c.default_host_addr(), Ipv4Addr::new(10, 203, 80, 2));
        assert_eq!(prefix_mask(24), 0xffff_ff00);
        assert_eq!(prefix_mask(0), 0);
    }
}
