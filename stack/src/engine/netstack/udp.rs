//! UDP: datagrams in and out. No connections and no accept; a bound port
//! or a reuse-port group of readers (`transport::udp`).

use std::io;
use std::net::{IpAddr, SocketAddr};

use smoltcp::time::Instant;
use smoltcp::wire::IpAddress;

use super::calls::not_connected;
use super::{NetStack, Ready};
use crate::observe::event::Event;
use crate::observe::table::SocketInfo;
use crate::transport::reuseport::ListenError;
use crate::wire::quad::{Quad, SocketId};

impl NetStack {
    /// A UDP datagram: to the socket bound to its port (a group member by
    /// sender), or an ICMP port unreachable.
    pub(super) fn on_datagram(&mut self, now: Instant, quad: Quad, packet: &[u8]) {
        self.stats.datagrams_in += 1;
        let Some(id) = self.udp.pick(&quad) else {
            if self.udp.may_send_unreachable(now) {
                self.stats.port_unreachable += 1;
                self.emit(now, Event::PortUnreachable { quad });
                self.answer_by_engine(now, packet);
            }
            return;
        };
        let Some(sock) = self.udp.get_mut(id) else {
            return;
        };
        self.engine
            .ingress(now, packet, &mut sock.sockets, &mut self.out);
        let first = sock.note_sender(quad.remote);
        self.flush_out(now, None, None);
        if first {
            self.emit(now, Event::UdpFlow { id, quad });
        }
        self.ready.push(Ready::Socket(id));
    }

    /// Binds a UDP socket to `port` (0: the stack chooses); with `reuse`,
    /// joins the port's reuse-port group.
    pub fn udp_bind(
        &mut self,
        now: Instant,
        port: u16,
        reuse: bool,
    ) -> Result<SocketId, ListenError> {
        let (id, local) = self.bind_socket(now, port, "udp address in use", |s, id, local| {
            s.udp.bind(id, local, reuse)
        })?;
        self.emit(now, Event::UdpBind { id, local, reuse });
        Ok(id)
    }

    /// The address a UDP socket is bound to.
    pub fn udp_local(&mut self, id: SocketId) -> Option<SocketAddr> {
        self.udp.get_mut(id).map(|s| s.local)
    }

    /// Sends one datagram to `to`. `WouldBlock` when the send buffer is full.
    pub fn udp_send_to(
        &mut self,
        now: Instant,
        id: SocketId,
        data: &[u8],
        to: SocketAddr,
    ) -> io::Result<usize> {
        if !self.cfg.reaches_ip(to.ip()) || to.port() == 0 {
            return Err(io::Error::new(
                io::ErrorKind::NetworkUnreachable,
                format!("no route to {to}: the stack reaches only its own subnets"),
            ));
        }
        // No fragmentation: a datagram must fit one packet.
        let headers = if to.is_ipv4() { 20 + 8 } else { 40 + 8 };
        let max = self.cfg.mtu.saturating_sub(headers);
        if data.len() > max {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a datagram of {} bytes does not fit one packet (at most {max})",
                    data.len()
                ),
            ));
        }
        let sock = self.udp.get_mut(id).ok_or_else(not_connected)?;
        let endpoint = smoltcp::wire::IpEndpoint::new(IpAddress::from(to.ip()), to.port());
        match sock.socket().send_slice(data, endpoint) {
            Ok(()) => {}
            Err(smoltcp::socket::udp::SendError::BufferFull) => {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{e}"))),
        }
        sock.sent += 1;
        self.engine.egress(now, &mut sock.sockets, &mut self.out);
        self.flush_out(now, None, None);
        Ok(data.len())
    }

    /// Connects a UDP socket to `peer`: it then receives only from `peer`,
    /// and `udp_send_to` may name `peer` implicitly (see `udp_peer`).
    pub fn udp_connect(&mut self, id: SocketId, peer: SocketAddr) -> io::Result<()> {
        if !self.cfg.reaches_ip(peer.ip()) || peer.port() == 0 {
            return Err(io::Error::new(
                io::ErrorKind::NetworkUnreachable,
                format!("no route to {peer}"),
            ));
        }
        self.udp.connect(id, peer).map_err(io::Error::from)
    }

    /// The peer of a connected UDP socket.
    pub fn udp_peer(&mut self, id: SocketId) -> Option<SocketAddr> {
        self.udp.get_mut(id).and_then(|s| s.peer)
    }

    /// Receives one datagram. `WouldBlock` when none is waiting.
    pub fn udp_recv_from(
        &mut self,
        id: SocketId,
        buf: &mut [u8],
    ) -> io::Result<(usize, SocketAddr)> {
        let sock = self.udp.get_mut(id).ok_or_else(not_connected)?;
        // As std::net: a datagram longer than `buf` is truncated.
        match sock.socket().recv().map(|(data, meta)| {
            let n = data.len().min(buf.len());
            buf[..n].copy_from_slice(&data[..n]);
            (n, meta)
        }) {
            Ok((n, meta)) => {
                let from = SocketAddr::new(IpAddr::from(meta.endpoint.addr), meta.endpoint.port);
                Ok((n, from))
            }
            Err(smoltcp::socket::udp::RecvError::Exhausted) => {
                Err(io::ErrorKind::WouldBlock.into())
            }
            Err(e) => Err(io::Error::other(format!("{e}"))),
        }
    }

    /// Whether a datagram is waiting.
    pub fn udp_readable(&mut self, id: SocketId) -> bool {
        self.udp.get_mut(id).is_none_or(|s| s.socket().can_recv())
    }

    /// Whether a datagram can be queued for sending.
    pub fn udp_writable(&mut self, id: SocketId) -> bool {
        self.udp.get_mut(id).is_none_or(|s| s.socket().can_send())
    }

    /// Closes a UDP socket.
    pub fn udp_close(&mut self, now: Instant, id: SocketId) {
        if let Some(s) = self.udp.close(id) {
            self.emit(
                now,
                Event::UdpClosed {
                    id,
                    local: s.local,
                    received: s.received,
                    sent: s.sent,
                },
            );
        }
    }

    // ----- shutdown of the whole stack -----------------------------------------
}

pub(super) fn udp_info(u: &crate::transport::udp::UdpSock) -> SocketInfo {
    let unspecified = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);
    SocketInfo {
        id: u.id,
        quad: Quad::new(u.local, u.peer.unwrap_or(unspecified)),
        state: if u.peer.is_some() {
            "ESTABLISHED"
        } else {
            "UNCONN"
        },
        owner: "udp",
        accepted_by: None,
        served_by: u.served_by.clone(),
        recv_queue: 0,
        send_queue: 0,
    }
}
