//! The socket calls, as Linux answers them, over portlab's stack.
//!
//! A script's system calls name file descriptors; each of ours is an entry
//! of [`Sockets`]: a TCP or UDP socket that is fresh (made, maybe bound),
//! listening, connecting, connected or bound (UDP). Every call is
//! non-blocking here and answers as Linux would, with an [`Errno`] where
//! Linux sets one; `EAGAIN` on a blocking descriptor is turned into a wait
//! by the caller (`interface.rs`), which is the one place that knows about
//! threads.
//!
//! What is supported, and what is not (`ENOPROTOOPT`, `ENOSYS`), is listed
//! in README's *Conformance* section.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr};

use portlab::SocketId;
use portlab::engine::netstack::ListenError;

use crate::host::Host;

/// A Linux error number (`libc::E*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i32);

impl Errno {
    pub const AGAIN: Errno = Errno(libc::EAGAIN);

    /// What Linux reports for the stack's `io::Error`.
    pub fn from_io(e: &io::Error) -> Errno {
        use io::ErrorKind::*;
        Errno(match e.kind() {
            WouldBlock => libc::EAGAIN,
            ConnectionReset => libc::ECONNRESET,
            ConnectionRefused => libc::ECONNREFUSED,
            BrokenPipe => libc::EPIPE,
            NotConnected => libc::ENOTCONN,
            TimedOut => libc::ETIMEDOUT,
            NetworkUnreachable | HostUnreachable => libc::ENETUNREACH,
            AddrInUse => libc::EADDRINUSE,
            AddrNotAvailable => libc::EADDRNOTAVAIL,
            Unsupported => libc::EAFNOSUPPORT,
            InvalidInput => libc::EINVAL,
            _ => libc::EIO,
        })
    }

    fn from_listen(e: ListenError) -> Errno {
        Errno(match e {
            ListenError::AddrInUse(_) | ListenError::NoFreePort => libc::EADDRINUSE,
            ListenError::InvalidPort => libc::EINVAL,
        })
    }
}

pub type Result<T> = std::result::Result<T, Errno>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Tcp,
    Udp,
}

/// Where a socket is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Made by `socket()`, maybe bound.
    Fresh,
    Listening(SocketId),
    /// `connect()` sent the SYN.
    Connecting(SocketId),
    Connected(SocketId),
    /// A UDP socket with a port.
    Datagram(SocketId),
    /// The connect failed; the error waits in `SO_ERROR`.
    Failed,
}

/// One file descriptor.
#[derive(Debug, Clone)]
struct Socket {
    kind: Kind,
    v6: bool,
    nonblock: bool,
    reuse_addr: bool,
    reuse_port: bool,
    nodelay: bool,
    bound: Option<SocketAddr>,
    state: State,
    /// `SO_ERROR`: the error of a connect that failed, until read.
    error: Option<Errno>,
}

/// The descriptors, by number.
///
/// Each number is a real descriptor of the process too (an eventfd that
/// nothing reads), because packetdrill closes its sockets with the real
/// `close()` when a script ends. Numbers come from the kernel: the lowest
/// free, as for a real socket.
#[derive(Debug, Default)]
pub struct Sockets {
    table: BTreeMap<i32, Socket>,
}

impl Sockets {
    fn add(&mut self, s: Socket) -> Result<i32> {
        // SAFETY: eventfd takes no pointers.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(Errno(libc::EMFILE));
        }
        self.table.insert(fd, s);
        Ok(fd)
    }

    /// Gives the descriptor's number back to the kernel.
    fn release(fd: i32) {
        // SAFETY: `fd` is an eventfd this table made and still owns.
        unsafe { libc::close(fd) };
    }

    fn get(&self, fd: i32) -> Result<&Socket> {
        self.table.get(&fd).ok_or(Errno(libc::EBADF))
    }

    fn get_mut(&mut self, fd: i32) -> Result<&mut Socket> {
        self.table.get_mut(&fd).ok_or(Errno(libc::EBADF))
    }

    /// Whether a call that would block on `fd` should wait.
    pub fn blocks(&self, fd: i32) -> bool {
        self.table.get(&fd).is_some_and(|s| !s.nonblock)
    }
}

/// Readiness, as `poll` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Readiness {
    pub readable: bool,
    pub writable: bool,
    pub error: bool,
}

impl Host {
    pub fn socket(&mut self, domain: i32, ty: i32, protocol: i32) -> Result<i32> {
        let v6 = match domain {
            libc::AF_INET => false,
            libc::AF_INET6 => true,
            _ => return Err(Errno(libc::EAFNOSUPPORT)),
        };
        let nonblock = ty & libc::SOCK_NONBLOCK != 0;
        let kind = match (ty & !(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC), protocol) {
            (libc::SOCK_STREAM, 0 | libc::IPPROTO_TCP) => Kind::Tcp,
            (libc::SOCK_DGRAM, 0 | libc::IPPROTO_UDP) => Kind::Udp,
            (libc::SOCK_STREAM | libc::SOCK_DGRAM, _) => return Err(Errno(libc::EPROTONOSUPPORT)),
            _ => return Err(Errno(libc::ESOCKTNOSUPPORT)),
        };
        self.sockets.add(Socket {
            kind,
            v6,
            nonblock,
            reuse_addr: false,
            reuse_port: false,
            nodelay: false,
            bound: None,
            state: State::Fresh,
            error: None,
        })
    }

    pub fn bind(&mut self, fd: i32, addr: SocketAddr) -> Result<()> {
        let s = self.sockets.get(fd)?;
        if s.state != State::Fresh || s.bound.is_some() {
            return Err(Errno(libc::EINVAL));
        }
        if s.v6 != addr.is_ipv6() {
            return Err(Errno(libc::EINVAL));
        }
        if !addr.ip().is_unspecified() && !self.is_own(addr.ip()) {
            return Err(Errno(libc::EADDRNOTAVAIL));
        }
        // Linux: a port held by another socket is in use, unless both set
        // SO_REUSEPORT, or both set SO_REUSEADDR and the other is not
        // listening.
        let me = s.clone();
        if addr.port() != 0 {
            let clash = self.sockets.table.iter().any(|(other_fd, o)| {
                *other_fd != fd
                    && o.kind == me.kind
                    && o.bound.is_some_and(|b| b.port() == addr.port())
                    && !(me.reuse_port && o.reuse_port)
                    && !(me.reuse_addr && o.reuse_addr && !matches!(o.state, State::Listening(_)))
            });
            if clash {
                return Err(Errno(libc::EADDRINUSE));
            }
        }
        if me.kind == Kind::Udp {
            let id = self
                .stack
                .udp_bind(self.now(), addr.port(), me.reuse_port)
                .map_err(Errno::from_listen)?;
            let local = self.stack.udp_local(id).unwrap_or(addr);
            let s = self.sockets.get_mut(fd)?;
            s.bound = Some(local);
            s.state = State::Datagram(id);
        } else {
            self.sockets.get_mut(fd)?.bound = Some(addr);
        }
        self.settle();
        Ok(())
    }

    pub fn listen(&mut self, fd: i32, backlog: i32) -> Result<()> {
        let s = self.sockets.get(fd)?.clone();
        if s.kind != Kind::Tcp {
            return Err(Errno(libc::EOPNOTSUPP));
        }
        match s.state {
            // Linux lets a listener change its backlog; ours keeps it.
            State::Listening(_) => return Ok(()),
            State::Fresh => {}
            _ => return Err(Errno(libc::EINVAL)),
        }
        let port = s.bound.map_or(0, |b| b.port());
        let backlog = usize::try_from(backlog).unwrap_or(0);
        let now = self.now();
        let made = if s.reuse_port {
            self.stack.listen_reuse(now, port, backlog)
        } else {
            self.stack.listen(now, port, backlog)
        };
        let id = made.map_err(Errno::from_listen)?;
        let port = self.stack.listener_port(id).unwrap_or(port);
        let ip = s.bound.map_or(unspecified(s.v6), |b| b.ip());
        let sock = self.sockets.get_mut(fd)?;
        sock.state = State::Listening(id);
        sock.bound = Some(SocketAddr::new(ip, port));
        self.settle();
        Ok(())
    }

    /// A connection from the accept queue: its descriptor and its peer.
    pub fn accept(&mut self, fd: i32) -> Result<(i32, SocketAddr)> {
        let s = self.sockets.get(fd)?.clone();
        let State::Listening(listener) = s.state else {
            return Err(Errno(libc::EINVAL));
        };
        let now = self.now();
        let taken = self
            .stack
            .accept(now, listener, None)
            .map_err(|e| Errno::from_io(&e))?;
        let Some((id, quad)) = taken else {
            return Err(Errno::AGAIN);
        };
        // As Linux, the new socket inherits TCP_NODELAY, not O_NONBLOCK.
        if s.nodelay {
            let _ = self.stack.set_nodelay(now, id, true);
        }
        let new = self.sockets.add(Socket {
            nonblock: false,
            reuse_addr: false,
            reuse_port: false,
            bound: Some(quad.local),
            state: State::Connected(id),
            error: None,
            ..s
        })?;
        self.settle();
        Ok((new, quad.remote))
    }

    /// Starts an active open: `EINPROGRESS` once the SYN is on its way
    /// (the caller waits on a blocking socket, see [`Host::connect_done`]).
    pub fn connect(&mut self, fd: i32, remote: SocketAddr) -> Result<()> {
        let s = self.sockets.get(fd)?.clone();
        if s.v6 != remote.is_ipv6() {
            return Err(Errno(libc::EAFNOSUPPORT));
        }
        let now = self.now();
        match (s.kind, s.state) {
            (Kind::Tcp, State::Fresh) => {
                let port = s.bound.map(|b| b.port()).filter(|p| *p != 0);
                let (id, quad) = self
                    .stack
                    .connect(now, remote, port)
                    .map_err(|e| Errno::from_io(&e))?;
                if s.nodelay {
                    let _ = self.stack.set_nodelay(now, id, true);
                }
                let sock = self.sockets.get_mut(fd)?;
                sock.state = State::Connecting(id);
                sock.bound = Some(quad.local);
                self.settle();
                Err(Errno(libc::EINPROGRESS))
            }
            (Kind::Tcp, State::Connecting(_)) => match self.connect_done(fd) {
                Err(Errno::AGAIN) => Err(Errno(libc::EALREADY)),
                other => other,
            },
            (Kind::Tcp, State::Connected(_)) => Err(Errno(libc::EISCONN)),
            (Kind::Tcp, _) => Err(Errno(libc::EINVAL)),
            (Kind::Udp, State::Fresh) => {
                self.bind(fd, SocketAddr::new(unspecified(s.v6), 0))?;
                self.connect(fd, remote)
            }
            (Kind::Udp, State::Datagram(id)) => self
                .stack
                .udp_connect(id, remote)
                .map_err(|e| Errno::from_io(&e)),
            (Kind::Udp, _) => Err(Errno(libc::EINVAL)),
        }
    }

    /// How a connect under way stands: `EAGAIN` while the handshake runs,
    /// `Ok` once established, its error once refused or timed out.
    pub fn connect_done(&mut self, fd: i32) -> Result<()> {
        let s = self.sockets.get(fd)?;
        let id = match s.state {
            State::Connecting(id) => id,
            State::Connected(_) => return Ok(()),
            State::Failed => {
                let e = s.error.unwrap_or(Errno(libc::ECONNREFUSED));
                self.sockets.get_mut(fd)?.error = None;
                return Err(e);
            }
            _ => return Err(Errno(libc::ENOTCONN)),
        };
        match self.stack.connect_result(id) {
            None => Err(Errno::AGAIN),
            Some(Ok(())) => {
                self.sockets.get_mut(fd)?.state = State::Connected(id);
                Ok(())
            }
            Some(Err(e)) => {
                let sock = self.sockets.get_mut(fd)?;
                sock.state = State::Failed;
                Err(Errno::from_io(&e))
            }
        }
    }

    /// `read`/`recv`: `Ok(0)` at the end of the stream.
    pub fn read(&mut self, fd: i32, buf: &mut [u8]) -> Result<usize> {
        let s = self.sockets.get(fd)?;
        let now = self.now();
        let got = match s.state {
            State::Connected(id) => self.stack.recv(now, id, buf),
            State::Datagram(id) => self.stack.udp_recv_from(id, buf).map(|(n, _)| n),
            State::Connecting(_) => Err(io::ErrorKind::WouldBlock.into()),
            _ => Err(io::ErrorKind::NotConnected.into()),
        };
        self.settle();
        got.map_err(|e| Errno::from_io(&e))
    }

    /// `recvfrom` on a UDP socket: the datagram and its sender.
    pub fn recv_from(&mut self, fd: i32, buf: &mut [u8]) -> Result<(usize, Option<SocketAddr>)> {
        match self.sockets.get(fd)?.state {
            State::Datagram(id) => {
                let got = self.stack.udp_recv_from(id, buf);
                self.settle();
                got.map(|(n, from)| (n, Some(from)))
                    .map_err(|e| Errno::from_io(&e))
            }
            _ => self.read(fd, buf).map(|n| (n, None)),
        }
    }

    /// `write`/`send`: how many bytes the send buffer took.
    pub fn write(&mut self, fd: i32, data: &[u8]) -> Result<usize> {
        let s = self.sockets.get(fd)?;
        let now = self.now();
        let sent = match s.state {
            State::Connected(id) => self.stack.send(now, id, data),
            State::Datagram(id) => match self.stack.udp_peer(id) {
                Some(peer) => self.stack.udp_send_to(now, id, data, peer),
                None => Err(io::Error::from(io::ErrorKind::NotConnected)),
            },
            State::Connecting(_) => Err(io::ErrorKind::WouldBlock.into()),
            // Linux: writing to a TCP socket that never connected is EPIPE.
            _ if s.kind == Kind::Tcp => Err(io::ErrorKind::BrokenPipe.into()),
            _ => Err(io::Error::from(io::ErrorKind::NotConnected)),
        };
        self.settle();
        // A UDP socket with no peer: Linux says EDESTADDRREQ.
        sent.map_err(|e| match (e.kind(), s_kind(&self.sockets, fd)) {
            (io::ErrorKind::NotConnected, Some(Kind::Udp)) => Errno(libc::EDESTADDRREQ),
            _ => Errno::from_io(&e),
        })
    }

    /// `sendto` on a UDP socket (bound to a port of the stack's choosing
    /// if it has none yet).
    pub fn send_to(&mut self, fd: i32, data: &[u8], to: SocketAddr) -> Result<usize> {
        let s = self.sockets.get(fd)?.clone();
        if s.kind == Kind::Tcp {
            // Linux ignores the address on a connected TCP socket.
            return self.write(fd, data);
        }
        if s.state == State::Fresh {
            self.bind(fd, SocketAddr::new(unspecified(s.v6), 0))?;
        }
        let State::Datagram(id) = self.sockets.get(fd)?.state else {
            return Err(Errno(libc::EINVAL));
        };
        let now = self.now();
        let sent = self.stack.udp_send_to(now, id, data, to);
        self.settle();
        sent.map_err(|e| Errno::from_io(&e))
    }

    pub fn shutdown(&mut self, fd: i32, how: i32) -> Result<()> {
        let how = match how {
            libc::SHUT_RD => Shutdown::Read,
            libc::SHUT_WR => Shutdown::Write,
            libc::SHUT_RDWR => Shutdown::Both,
            _ => return Err(Errno(libc::EINVAL)),
        };
        let (State::Connected(id) | State::Connecting(id)) = self.sockets.get(fd)?.state else {
            return Err(Errno(libc::ENOTCONN));
        };
        let now = self.now();
        let done = self.stack.shutdown(now, id, how);
        self.settle();
        done.map_err(|e| Errno::from_io(&e))
    }

    pub fn close(&mut self, fd: i32) -> Result<()> {
        let s = self.sockets.table.remove(&fd).ok_or(Errno(libc::EBADF))?;
        Sockets::release(fd);
        let now = self.now();
        match s.state {
            State::Listening(id) => self.stack.close_listener(now, id),
            State::Connecting(id) | State::Connected(id) => self.stack.close(now, id),
            State::Datagram(id) => self.stack.udp_close(now, id),
            State::Fresh | State::Failed => {}
        }
        self.settle();
        Ok(())
    }

    /// `fcntl`: `F_GETFL`, `F_SETFL` (only `O_NONBLOCK` matters),
    /// `F_GETFD`, `F_SETFD`.
    pub fn fcntl(&mut self, fd: i32, cmd: i32, arg: i64) -> Result<i32> {
        let s = self.sockets.get_mut(fd)?;
        match cmd {
            libc::F_GETFL => Ok(libc::O_RDWR | if s.nonblock { libc::O_NONBLOCK } else { 0 }),
            libc::F_SETFL => {
                s.nonblock = arg & i64::from(libc::O_NONBLOCK) != 0;
                Ok(0)
            }
            libc::F_GETFD | libc::F_SETFD => Ok(0),
            _ => Err(Errno(libc::EINVAL)),
        }
    }

    /// `setsockopt` with an `int` value: `SO_REUSEADDR`, `SO_REUSEPORT`,
    /// `TCP_NODELAY`. Others: `ENOPROTOOPT`.
    pub fn set_option(&mut self, fd: i32, level: i32, name: i32, value: i32) -> Result<()> {
        let now = self.now();
        let s = self.sockets.get_mut(fd)?;
        let on = value != 0;
        match (level, name) {
            (libc::SOL_SOCKET, libc::SO_REUSEADDR) => s.reuse_addr = on,
            (libc::SOL_SOCKET, libc::SO_REUSEPORT) => s.reuse_port = on,
            (libc::IPPROTO_TCP, libc::TCP_NODELAY) if s.kind == Kind::Tcp => {
                s.nodelay = on;
                if let State::Connected(id) | State::Connecting(id) = s.state {
                    let set = self.stack.set_nodelay(now, id, on);
                    self.settle();
                    set.map_err(|e| Errno::from_io(&e))?;
                }
            }
            _ => return Err(Errno(libc::ENOPROTOOPT)),
        }
        Ok(())
    }

    /// `getsockopt` of an `int`: the options above, `SO_TYPE`, and
    /// `SO_ERROR` (which reads and clears a failed connect's error).
    pub fn get_option(&mut self, fd: i32, level: i32, name: i32) -> Result<i32> {
        let s = self.sockets.get(fd)?.clone();
        Ok(match (level, name) {
            (libc::SOL_SOCKET, libc::SO_REUSEADDR) => s.reuse_addr.into(),
            (libc::SOL_SOCKET, libc::SO_REUSEPORT) => s.reuse_port.into(),
            (libc::SOL_SOCKET, libc::SO_TYPE) => match s.kind {
                Kind::Tcp => libc::SOCK_STREAM,
                Kind::Udp => libc::SOCK_DGRAM,
            },
            (libc::SOL_SOCKET, libc::SO_ERROR) => match self.connect_done(fd) {
                Err(e) if e != Errno::AGAIN && e.0 != libc::ENOTCONN => e.0,
                _ => 0,
            },
            (libc::IPPROTO_TCP, libc::TCP_NODELAY) if s.kind == Kind::Tcp => s.nodelay.into(),
            _ => return Err(Errno(libc::ENOPROTOOPT)),
        })
    }

    /// What `poll` would report for `fd` now.
    pub fn readiness(&mut self, fd: i32) -> Result<Readiness> {
        let s = self.sockets.get(fd)?.clone();
        Ok(match s.state {
            State::Fresh => Readiness {
                writable: s.kind == Kind::Udp,
                ..Readiness::default()
            },
            State::Listening(id) => Readiness {
                readable: self.stack.acceptable(id),
                ..Readiness::default()
            },
            State::Connecting(_) => match self.connect_done(fd) {
                Err(Errno::AGAIN) => Readiness::default(),
                Ok(()) => self.readiness(fd)?,
                Err(_) => Readiness {
                    readable: true,
                    writable: true,
                    error: true,
                },
            },
            State::Connected(id) | State::Datagram(id) => Readiness {
                readable: self.stack.readable(id),
                writable: self.stack.writable(id),
                error: false,
            },
            State::Failed => Readiness {
                readable: true,
                writable: true,
                error: true,
            },
        })
    }

    /// Whether `ip` is one of the stack's own addresses.
    fn is_own(&self, ip: IpAddr) -> bool {
        let cfg = self.stack.config();
        match ip {
            IpAddr::V4(a) => a == cfg.addr,
            IpAddr::V6(a) => Some(a) == cfg.addr6,
        }
    }
}

fn s_kind(sockets: &Sockets, fd: i32) -> Option<Kind> {
    sockets.table.get(&fd).map(|s| s.kind)
}

fn unspecified(v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    }
}
