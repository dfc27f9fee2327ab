//! The socket calls: listen, accept, connect, read, write, shutdown,
//! close, each taking `now` and returning at once (the API layer blocks).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use smoltcp::socket::tcp::{self, State as TcpState};
use smoltcp::time::Instant;
use smoltcp::wire::IpAddress;

use super::ingress::taken;
use super::{Conn, NetStack, Owner, Ready, drop_received};
use crate::config::SOMAXCONN;
use crate::engine::driver::Engine;
use crate::observe::event::{Event, RstReason};
use crate::transport::listener::Listener;
use crate::transport::nagle::Nagle;
use crate::transport::ports::{Purpose, Rejection};
use crate::transport::reuseport::ListenError;
use crate::transport::window::RecvWindow;
use crate::wire::quad::{Quad, SocketId};

impl NetStack {
    /// Opens a listening socket on `port`. A second listen on the same port
    /// fails with [`ListenError::AddrInUse`].
    pub fn listen(
        &mut self,
        now: Instant,
        port: u16,
        backlog: usize,
    ) -> Result<SocketId, ListenError> {
        self.open_listener(now, port, backlog, false)
    }

    /// Joins (or starts) the reuse-port group on `port`: every member must
    /// have joined this way; new connections are spread over the members by
    /// a hash of their 4-tuple.
    pub fn listen_reuse(
        &mut self,
        now: Instant,
        port: u16,
        backlog: usize,
    ) -> Result<SocketId, ListenError> {
        self.open_listener(now, port, backlog, true)
    }

    pub(super) fn open_listener(
        &mut self,
        now: Instant,
        port: u16,
        backlog: usize,
        reuse: bool,
    ) -> Result<SocketId, ListenError> {
        let backlog = backlog.min(SOMAXCONN);
        let (id, local) = self.bind_socket(now, port, "address in use", |s, id, local| {
            s.listeners.add(Listener::new(id, local, backlog, reuse))
        })?;
        self.emit(
            now,
            Event::Listen {
                id,
                local,
                backlog,
                reuse,
            },
        );
        Ok(id)
    }

    /// What listening and UDP binding share: a port chosen for port 0, the
    /// new socket registered by `add` under the next id, and a
    /// `listen_failed` event when the port is taken.
    pub(super) fn bind_socket(
        &mut self,
        now: Instant,
        port: u16,
        reason: &'static str,
        add: impl FnOnce(&mut NetStack, SocketId, SocketAddr) -> Result<(), ListenError>,
    ) -> Result<(SocketId, SocketAddr), ListenError> {
        let port = if port == 0 {
            self.bind_any_port(now)?
        } else {
            port
        };
        let local = SocketAddr::new(self.any_addr(), port);
        let id = SocketId(self.next_id);
        if let Err(e) = add(self, id, local) {
            if let ListenError::AddrInUse(_) = e {
                self.emit(now, Event::ListenFailed { local, reason });
            }
            return Err(e);
        }
        self.next_id += 1;
        Ok((id, local))
    }

    /// The `port_chosen` event for a choice of the port chooser.
    pub(super) fn port_chosen(
        &self,
        quad: Quad,
        choice: &crate::transport::ports::Choice,
    ) -> Event {
        Event::PortChosen {
            quad,
            algorithm: self.cfg.port_algorithm.as_str(),
            tried: choice.tried,
            rejected: choice
                .rejected
                .iter()
                .map(|(p, why)| (*p, why.as_str()))
                .collect(),
        }
    }

    /// A listen on port 0: the stack chooses a free port, as a bind to port
    /// 0 does (odd ports first with the Linux-like algorithm).
    pub(super) fn bind_any_port(&mut self, now: Instant) -> Result<u16, ListenError> {
        let local_ip = IpAddr::V4(self.cfg.addr);
        let any = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);
        let (demux, listeners, udp) = (&self.demux, &self.listeners, &self.udp);
        let choice = self
            .ports
            .choose(local_ip, any, Purpose::Bind, |p| {
                if listeners.has_port(p) || udp.has_port(p) {
                    Some(Rejection::Listener)
                } else if demux.port_in_use(p) {
                    Some(Rejection::InUse)
                } else {
                    None
                }
            })
            .map_err(|_| ListenError::NoFreePort)?;
        let event = self.port_chosen(
            Quad::new(SocketAddr::new(local_ip, choice.port), any),
            &choice,
        );
        self.emit(now, event);
        Ok(choice.port)
    }

    /// What a listening or bound socket's address shows: it takes every
    /// address of the stack, both families when IPv6 is on (like Linux's
    /// dual-stack `[::]` sockets).
    pub(super) fn any_addr(&self) -> IpAddr {
        if self.cfg.addr6.is_some() {
            IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
        } else {
            IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
        }
    }

    /// The port a listener listens on (for a listen on port 0: the chosen one).
    pub fn listener_port(&self, listener: SocketId) -> Option<u16> {
        self.listeners.get(listener).map(|l| l.local.port())
    }

    /// Closes a listener, resetting every connection still queued on it.
    pub fn close_listener(&mut self, now: Instant, listener: SocketId) {
        let Some(listener) = self.listeners.remove(listener) else {
            return;
        };
        let queued = listener.queued();
        for &id in &queued {
            if let Some(c) = self.conns.get_mut(&id) {
                c.owner = Owner::Orphan;
            }
            self.abort(now, id, RstReason::ListenerClosed);
            // A socket already closed by its peer is freed here.
            if self
                .conns
                .get(&id)
                .is_some_and(|c| c.sockets.is_none() || c.state == TcpState::Closed)
            {
                self.conns.remove(&id);
            }
        }
        self.ready.push(Ready::Listener(listener.id));
        self.emit(
            now,
            Event::ListenClosed {
                id: listener.id,
                local: listener.local,
                reset: queued.len(),
            },
        );
    }

    /// Takes the oldest established connection from the listener's accept
    /// queue. `Ok(None)`: nothing to accept yet. `by` names the accepting
    /// thread in the events.
    pub fn accept(
        &mut self,
        now: Instant,
        listener: SocketId,
        by: Option<String>,
    ) -> io::Result<Option<(SocketId, Quad)>> {
        let Some(listener) = self.listeners.get_mut(listener) else {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the listener is closed",
            ));
        };
        // Skip entries whose connection is gone (none should be).
        let (id, queued_at, conn) = loop {
            let Some((id, queued_at)) = listener.accept_queue.pop_front() else {
                return Ok(None);
            };
            if self.conns.contains_key(&id) {
                let Some(conn) = self.conns.get_mut(&id) else {
                    return Ok(None);
                };
                break (id, queued_at, conn);
            }
        };
        conn.owner = Owner::App;
        conn.accepted_by = by.as_deref().map(Arc::from);
        let quad = conn.quad;
        let queued_us = (now - queued_at).total_micros();
        self.emit(
            now,
            Event::Accepted {
                id,
                quad,
                queued_us,
                by,
            },
        );
        Ok(Some((id, quad)))
    }

    /// Opens a connection to `remote` (an active open: SYN-SENT). Without
    /// `local_port` the stack chooses one (see `ports`); either way only the
    /// 4-tuple must be free, so one local port can serve several remotes.
    /// Completion is reported by [`connect_result`](Self::connect_result).
    pub fn connect(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        local_port: Option<u16>,
    ) -> io::Result<(SocketId, Quad)> {
        if !self.cfg.reaches_ip(remote.ip()) || remote.port() == 0 {
            return Err(io::Error::new(
                io::ErrorKind::NetworkUnreachable,
                format!(
                    "no route to {remote}: the stack reaches only its own subnet {}/{} \
                     (a default route needs --default-route)",
                    self.cfg.network(),
                    self.cfg.prefix_len
                ),
            ));
        }
        if self.conns.len() >= self.cfg.max_sockets {
            return Err(io::Error::other("socket limit reached"));
        }
        let Some(local_ip) = self.cfg.own_addr_for(remote.ip()) else {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "IPv6 is not enabled",
            ));
        };
        let quad_for = |port: u16| Quad::new(SocketAddr::new(local_ip, port), remote);
        let (port, choice_event) = match local_port {
            Some(0) | None => {
                let (demux, listeners) = (&self.demux, &self.listeners);
                let choice = self
                    .ports
                    .choose(local_ip, remote, Purpose::Connect, |p| {
                        taken(demux, listeners, &quad_for(p))
                    })
                    .map_err(|e| {
                        io::Error::new(
                            io::ErrorKind::AddrNotAvailable,
                            format!(
                                "no free local port towards {remote}: all {} candidates in {}-{} \
                                 are taken",
                                e.tried, self.cfg.port_range.lo, self.cfg.port_range.hi
                            ),
                        )
                    })?;
                (
                    choice.port,
                    self.port_chosen(quad_for(choice.port), &choice),
                )
            }
            Some(p) => {
                if let Some(why) = taken(&self.demux, &self.listeners, &quad_for(p)) {
                    return Err(io::Error::new(
                        io::ErrorKind::AddrInUse,
                        format!("cannot connect from port {p} to {remote}: {}", why.as_str()),
                    ));
                }
                let event = Event::PortChosen {
                    quad: quad_for(p),
                    algorithm: "explicit",
                    tried: 1,
                    rejected: Vec::new(),
                };
                (p, event)
            }
        };
        let quad = quad_for(port);
        let (mut sockets, handle) = Engine::new_socket(self.cfg.rx_buffer, self.cfg.tx_buffer)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::OutOfMemory,
                    "no memory for the connection's buffers: lower --buffer or close connections",
                )
            })?;
        self.engine
            .connect(
                sockets.get_mut::<tcp::Socket>(handle),
                (IpAddress::from(remote.ip()), remote.port()),
                port,
            )
            .map_err(|e| io::Error::other(format!("connect: {e}")))?;
        let id = SocketId(self.next_id);
        self.next_id += 1;
        self.demux.insert_conn(quad, id);
        // The full segment's size is known from the SYN-ACK (`deliver`).
        let nagle = Nagle::default();
        self.conns.insert(
            id,
            Conn {
                quad,
                sockets: Some(sockets),
                handle,
                state: TcpState::Closed,
                owner: Owner::App,
                listener: None,
                created: now,
                closer: None,
                reset: false,
                peer_tsval: None,
                last_ack: None,
                read_closed: false,
                accepted_by: None,
                served_by: None,
                orphaned_at: None,
                window: RecvWindow::default(),
                snd_nxt: None,
                egress_pending: false,
                read_total: 0,
                sunk: None,
                nagle,
                cookie: None,
                seq_shift: 0,
                chosen_isn: None,
            },
        );
        self.stats.sockets_created += 1;
        self.stories.begin(id, quad);
        self.emit(now, choice_event);
        self.emit(
            now,
            Event::SocketCreated {
                id,
                quad,
                listener: None,
                cookie: false,
            },
        );
        self.settle(now, id);
        Ok((id, quad))
    }

    /// How an active open ended: `None` while the handshake is under way,
    /// `Some(Ok)` once established, `Some(Err)` if it was refused (a reset)
    /// or failed.
    pub fn connect_result(&mut self, id: SocketId) -> Option<io::Result<()>> {
        let conn = self.conns.get_mut(&id)?;
        let reset = conn.reset;
        match conn.socket().map(|s| s.state()) {
            Some(TcpState::SynSent) => None,
            Some(TcpState::Closed) | None if reset => Some(Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                "connection refused",
            ))),
            Some(TcpState::Closed) | None => Some(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "connection failed",
            ))),
            Some(_) => Some(Ok(())),
        }
    }

    /// Records which thread or worker serves the connection (for the table).
    pub fn set_served_by(&mut self, id: SocketId, name: &str) {
        let name = Some(Arc::from(name));
        if let Some(c) = self.conns.get_mut(&id) {
            c.served_by = name;
        } else if let Some(u) = self.udp.get_mut(id) {
            u.served_by = name;
        }
    }

    /// Reads into `buf`. `Ok(0)` is the end of the stream;
    /// `ErrorKind::WouldBlock` means wait for readiness.
    pub fn recv(&mut self, now: Instant, id: SocketId, buf: &mut [u8]) -> io::Result<usize> {
        let max = buf.len();
        self.take_received(now, id, max, |socket| socket.recv_slice(buf).unwrap_or(0))
    }

    /// Drops up to `max` received bytes without copying them (what `recv`
    /// with `MSG_TRUNC` does on a Linux TCP socket); returns how many.
    pub fn discard(&mut self, now: Instant, id: SocketId, max: usize) -> io::Result<usize> {
        self.take_received(now, id, max, |socket| drop_received(socket, max))
    }

    /// Makes the connection a sink: from now on what arrives is dropped
    /// where it arrives, as the engine takes it in, so that no application
    /// thread has to wake for it (a discard service). Returns how many
    /// bytes it dropped once the peer has finished sending (its FIN);
    /// `WouldBlock` until then, when a change of state wakes
    /// [`Ready::Sink`]. A reset is an error, as for `recv`.
    pub fn sink(&mut self, now: Instant, id: SocketId) -> io::Result<u64> {
        let conn = self.conns.get_mut(&id).ok_or_else(not_connected)?;
        conn.sunk.get_or_insert(0);
        conn.sink_received();
        let total = conn.sunk.unwrap_or(0);
        // Nothing is left to take: what `recv` would say now is the end of
        // the stream, a reset, or to wait.
        let end = self.take_received(now, id, usize::MAX, |_| 0);
        // The window the dropped bytes opened goes out.
        self.settle(now, id);
        end.map(|_| total)
    }

    /// The bytes a sink has dropped so far (`None` if it is not one).
    pub fn sunk(&self, id: SocketId) -> Option<u64> {
        self.conns.get(&id).and_then(|c| c.sunk)
    }

    /// The reading half of `recv` and `discard`: `take` removes bytes from
    /// a socket that has some and says how many.
    pub(super) fn take_received(
        &mut self,
        now: Instant,
        id: SocketId,
        max: usize,
        take: impl FnOnce(&mut tcp::Socket<'static>) -> usize,
    ) -> io::Result<usize> {
        let conn = self.conns.get_mut(&id).ok_or_else(not_connected)?;
        if conn.read_closed || max == 0 {
            return Ok(0);
        }
        let reset = conn.reset;
        let Some(socket) = conn.socket() else {
            return if reset { Err(reset_error()) } else { Ok(0) };
        };
        if socket.can_recv() {
            let n = take(socket);
            conn.read_total = conn.read_total.wrapping_add(n as u32);
            self.settle(now, id);
            return Ok(n);
        }
        if reset || socket.state() == TcpState::Closed {
            return if reset { Err(reset_error()) } else { Ok(0) };
        }
        if !socket.may_recv() {
            return Ok(0);
        }
        Err(io::ErrorKind::WouldBlock.into())
    }

    /// Queues bytes for sending; returns how many were taken.
    /// `ErrorKind::WouldBlock` means the send buffer is full.
    pub fn send(&mut self, now: Instant, id: SocketId, data: &[u8]) -> io::Result<usize> {
        let conn = self.conns.get_mut(&id).ok_or_else(not_connected)?;
        let reset = conn.reset;
        let Some(socket) = conn.socket() else {
            return Err(if reset {
                reset_error()
            } else {
                io::ErrorKind::BrokenPipe.into()
            });
        };
        if !socket.may_send() {
            return Err(if reset {
                reset_error()
            } else {
                io::ErrorKind::BrokenPipe.into()
            });
        }
        if data.is_empty() {
            return Ok(0);
        }
        if !socket.can_send() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = socket.send_slice(data).unwrap_or(0);
        self.settle(now, id);
        Ok(n)
    }

    /// `TCP_NODELAY`: with `on`, a partial segment never waits for an
    /// acknowledgement (Nagle's algorithm off, see `nagle`); what was held
    /// leaves now, as in Linux.
    pub fn set_nodelay(&mut self, now: Instant, id: SocketId, on: bool) -> io::Result<()> {
        let conn = self.conns.get_mut(&id).ok_or_else(not_connected)?;
        conn.nagle.set_nodelay(on);
        self.settle(now, id);
        Ok(())
    }

    /// Whether `TCP_NODELAY` is set.
    pub fn nodelay(&self, id: SocketId) -> io::Result<bool> {
        let conn = self.conns.get(&id).ok_or_else(not_connected)?;
        Ok(conn.nagle.nodelay())
    }

    /// Whether a read would not block (data, end of stream, or an error).
    pub fn readable(&mut self, id: SocketId) -> bool {
        if self.udp.get_mut(id).is_some() {
            return self.udp_readable(id);
        }
        match self.conns.get_mut(&id) {
            None => true,
            Some(c) if c.read_closed || c.reset => true,
            Some(c) => c
                .socket()
                .is_none_or(|s| s.can_recv() || !s.may_recv() || s.state() == TcpState::Closed),
        }
    }

    /// Whether a write would not block (room, or an error).
    pub fn writable(&mut self, id: SocketId) -> bool {
        if self.udp.get_mut(id).is_some() {
            return self.udp_writable(id);
        }
        match self.conns.get_mut(&id) {
            None => true,
            Some(c) => c.socket().is_none_or(|s| s.can_send() || !s.may_send()),
        }
    }

    /// Whether the listener has a connection to accept (or is gone).
    pub fn acceptable(&self, listener: SocketId) -> bool {
        self.listeners
            .get(listener)
            .is_none_or(|l| !l.accept_queue.is_empty())
    }

    /// Half-closes: `Write` sends FIN after pending data, `Read` makes
    /// further reads return end of stream.
    pub fn shutdown(
        &mut self,
        now: Instant,
        id: SocketId,
        how: std::net::Shutdown,
    ) -> io::Result<()> {
        let conn = self.conns.get_mut(&id).ok_or_else(not_connected)?;
        if matches!(how, std::net::Shutdown::Read | std::net::Shutdown::Both) {
            conn.read_closed = true;
        }
        if matches!(how, std::net::Shutdown::Write | std::net::Shutdown::Both)
            && let Some(s) = conn.socket()
        {
            s.close();
        }
        self.settle(now, id);
        Ok(())
    }

    /// The application let go of the socket: close it gracefully (FIN), or
    /// with a reset if unread data remains, as Linux does.
    pub fn close(&mut self, now: Instant, id: SocketId) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        conn.owner = Owner::Orphan;
        conn.orphaned_at = Some(now);
        let Some(socket) = conn.socket() else {
            self.conns.remove(&id);
            return;
        };
        if socket.state() == TcpState::Closed {
            self.conns.remove(&id);
            return;
        }
        if socket.recv_queue() > 0 {
            self.abort(now, id, RstReason::UnreadData);
        } else {
            socket.close();
            self.settle(now, id);
        }
    }

    /// Resets the connection.
    pub fn abort_socket(&mut self, now: Instant, id: SocketId) {
        self.abort(now, id, RstReason::Aborted);
    }

    // ----- UDP ------------------------------------------------------------------
}

pub(super) fn not_connected() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "no such socket")
}

pub(super) fn reset_error() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, "connection reset")
}
