//! The identity of a TCP connection: its 4-tuple.
//!
//! Only one socket may *listen* on port 80, yet any number of connections can
//! be open on port 80 at once. The reason is that a connection is not named by
//! its port but by four values: the local address and port, and the remote
//! address and port. Two browser tabs talking to `10.203.80.2:80` differ in the
//! remote port their kernel picked (say 51234 and 51236), so they are two
//! different 4-tuples — two different connections — on one listening port.
//!
//! The stack demultiplexes every arriving segment by this 4-tuple: a hash
//! lookup of [`Quad`] finds the one connection it belongs to (see `demux`).

use std::fmt;
use std::hash::Hasher;
use std::net::{IpAddr, SocketAddr};

/// A TCP connection's identity: who is talking to whom, seen from the stack.
///
/// Displayed as `10.203.80.2:80 <- 10.203.80.1:51234` (local, then remote).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Quad {
    /// The stack's own end: its address and the (listening) port.
    pub local: SocketAddr,
    /// The peer: its address and the port its kernel chose.
    pub remote: SocketAddr,
}

impl Quad {
    pub fn new(local: SocketAddr, remote: SocketAddr) -> Quad {
        Quad { local, remote }
    }
}

impl fmt::Display for Quad {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} <- {}", self.local, self.remote)
    }
}

/// A keyed hash of a 4-tuple (SipHash with the stack's own keys): what
/// spreads flows over the members of a reuse-port group, the same member for
/// the same flow every time, and unpredictable to anyone without the key.
pub fn flow_hash(key: (u64, u64), quad: &Quad) -> u64 {
    #[allow(deprecated)] // SipHash with our own keys: std's, not a new dependency.
    let mut h = std::hash::SipHasher::new_with_keys(key.0, key.1);
    for addr in [quad.local, quad.remote] {
        match addr.ip() {
            IpAddr::V4(a) => h.write(&a.octets()),
            IpAddr::V6(a) => h.write(&a.octets()),
        }
        h.write_u16(addr.port());
    }
    h.finish()
}

/// The stack's own number for a socket. Every socket the stack creates gets
/// the next one; numbers are never reused while the stack runs, so an id in
/// the event log names exactly one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SocketId(pub u64);

impl fmt::Display for SocketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quads_differ_by_remote_port_only() {
        let a = Quad::new(
            "10.0.0.2:80".parse().unwrap(),
            "10.0.0.1:51234".parse().unwrap(),
        );
        let b = Quad::new(
            "10.0.0.2:80".parse().unwrap(),
            "10.0.0.1:51236".parse().unwrap(),
        );
        assert_ne!(a, b);
        assert_eq!(a.to_string(), "10.0.0.2:80 <- 10.0.0.1:51234");
    }
}
