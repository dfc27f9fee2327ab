//! [`UdpSocket`]: datagrams in and out, no connection and no accept.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::blocking::live;
use super::poll::Source;
use super::tcp::retry;
use crate::api::runtime::{Shared, Sleepers};
use crate::engine::netstack::{NetStack, Ready};
use crate::wire::quad::SocketId;

/// A UDP socket: datagrams in and out, no connection.
pub struct UdpSocket {
    pub(super) shared: Arc<Shared>,
    pub(super) id: SocketId,
    pub(super) local: SocketAddr,
    pub(super) cv: Arc<Sleepers>,
    pub(super) nonblocking: AtomicBool,
    pub(super) read_timeout: Mutex<Option<Duration>>,
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
        self.shared.lock().net.set_served_by(self.id, name);
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
