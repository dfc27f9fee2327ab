//! UDP: no connections, no accept — one socket per port, or a group.
//!
//! A UDP socket is bound to a port and receives every datagram sent to that
//! port, from anyone: there is no handshake, no 4-tuple to demultiplex by,
//! no accept queue. So "many clients on one port" is a different question
//! for UDP: several *readers* on one port is a load-balancing question. As
//! with TCP listeners, a second bind on a port fails with `AddrInUse` unless
//! every socket on it joined a reuse-port group; the group's member for a
//! datagram is picked by a keyed hash of the sender's address and port, so one
//! sender always lands on the same reader.
//!
//! A socket may also be *connected* to one peer: then the 4-tuple (its
//! port, the peer) is its own, datagrams from that peer go to it before any
//! group member, and datagrams from anyone else never reach it — the same
//! 4-tuple demux as TCP, without a handshake.
//!
//! A datagram to a port with no socket is answered with ICMP port
//! unreachable (what `nc -u` reports as "connection refused"), at most
//! [`UNREACHABLE_PER_SECOND`] per second, as Linux rate-limits ICMP.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::udp;
use smoltcp::time::Instant;

use crate::transport::reuseport::{ListenError, PortGroups};
use crate::wire::quad::{IdMap, Quad, SocketId};

/// ICMP port unreachable messages per second, at most.
pub const UNREACHABLE_PER_SECOND: u32 = 100;
/// Senders remembered per socket for `udp_flow` events.
const MAX_SENDERS: usize = 1024;
/// Datagrams a socket buffers in each direction.
const PACKETS: usize = 256;
/// Payload bytes a socket buffers in each direction.
const PAYLOAD: usize = 256 * 1024;

/// One bound UDP socket, in its own one-socket set.
pub struct UdpSock {
    pub id: SocketId,
    pub local: SocketAddr,
    pub reuse: bool,
    pub sockets: SocketSet<'static>,
    handle: SocketHandle,
    pub received: u64,
    pub sent: u64,
    /// The thread reading it, when the application said so.
    pub served_by: Option<Arc<str>>,
    /// The one peer it talks to, once connected.
    pub peer: Option<SocketAddr>,
    senders: HashSet<SocketAddr>,
}

impl UdpSock {
    pub fn socket(&mut self) -> &mut udp::Socket<'static> {
        self.sockets.get_mut::<udp::Socket>(self.handle)
    }

    /// Counts a datagram from `sender`; true the first time it is seen.
    pub fn note_sender(&mut self, sender: SocketAddr) -> bool {
        self.received += 1;
        self.senders.len() < MAX_SENDERS && self.senders.insert(sender)
    }
}

/// Every UDP socket, by id and by port.
pub struct Udp {
    socks: IdMap<SocketId, UdpSock>,
    ports: PortGroups,
    /// Connected sockets by (local port, peer) — checked first.
    connected: HashMap<(u16, SocketAddr), SocketId>,
    /// Token bucket for port unreachable messages.
    tokens: f64,
    last: Instant,
}

impl Udp {
    pub fn new(seed: u64, now: Instant) -> Udp {
        Udp {
            socks: IdMap::default(),
            ports: PortGroups::new((seed.rotate_left(29) ^ 0x0d9, seed ^ 0x7)),
            connected: HashMap::new(),
            tokens: f64::from(UNREACHABLE_PER_SECOND),
            last: now,
        }
    }

    /// Binds a new socket to `local`; the same rules as listeners.
    pub fn bind(
        &mut self,
        id: SocketId,
        local: SocketAddr,
        reuse: bool,
    ) -> Result<(), ListenError> {
        let port = local.port();
        let rx = udp::PacketBuffer::new(
            vec![udp::PacketMetadata::EMPTY; PACKETS],
            vec![0u8; PAYLOAD],
        );
        let tx = udp::PacketBuffer::new(
            vec![udp::PacketMetadata::EMPTY; PACKETS],
            vec![0u8; PAYLOAD],
        );
        let mut socket = udp::Socket::new(rx, tx);
        if socket.bind(port).is_err() {
            return Err(ListenError::InvalidPort);
        }
        self.ports.join(port, id, reuse)?;
        let mut sockets = SocketSet::new(Vec::with_capacity(1));
        let handle = sockets.add(socket);
        self.socks.insert(
            id,
            UdpSock {
                id,
                local,
                reuse,
                sockets,
                handle,
                received: 0,
                sent: 0,
                served_by: None,
                peer: None,
                senders: HashSet::new(),
            },
        );
        Ok(())
    }

    /// Connects socket `id` to `peer`: from now on it only talks to `peer`.
    pub fn connect(&mut self, id: SocketId, peer: SocketAddr) -> Result<(), ListenError> {
        let Some(sock) = self.socks.get_mut(&id) else {
            return Err(ListenError::InvalidPort);
        };
        let port = sock.local.port();
        match self.connected.get(&(port, peer)) {
            Some(other) if *other != id => return Err(ListenError::AddrInUse(port)),
            _ => {}
        }
        if let Some(old) = sock.peer.replace(peer) {
            self.connected.remove(&(port, old));
        }
        self.connected.insert((port, peer), id);
        Ok(())
    }

    pub fn close(&mut self, id: SocketId) -> Option<UdpSock> {
        let s = self.socks.remove(&id)?;
        let port = s.local.port();
        if let Some(peer) = s.peer {
            self.connected.remove(&(port, peer));
        }
        self.ports.leave(port, id);
        Some(s)
    }

    pub fn has_port(&self, port: u16) -> bool {
        self.ports.has_port(port)
    }

    /// The socket that gets a datagram: a socket connected to its sender,
    /// else the only unconnected one on the port, or the unconnected group
    /// member picked by a hash of the sender.
    pub fn pick(&self, quad: &Quad) -> Option<SocketId> {
        if let Some(id) = self.connected.get(&(quad.local.port(), quad.remote)) {
            return Some(*id);
        }
        self.ports.pick(quad, |m| {
            self.socks.get(&m).is_some_and(|s| s.peer.is_none())
        })
    }

    pub fn get_mut(&mut self, id: SocketId) -> Option<&mut UdpSock> {
        self.socks.get_mut(&id)
    }

    pub fn ids(&self) -> Vec<SocketId> {
        self.socks.keys().copied().collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = &UdpSock> {
        self.socks.values()
    }

    /// Whether another port unreachable may be sent now.
    pub fn may_send_unreachable(&mut self, now: Instant) -> bool {
        let rate = f64::from(UNREACHABLE_PER_SECOND);
        if now > self.last {
            let elapsed = (now - self.last).total_micros() as f64 / 1e6;
            self.tokens = (self.tokens + elapsed * rate).min(rate);
            self.last = now;
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}
