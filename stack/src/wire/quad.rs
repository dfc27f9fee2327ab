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

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::net::{IpAddr, SocketAddr};

/// A TCP connection's identity: who is talking to whom, seen from the stack.
///
/// Displayed as `10.203.80.2:80 <- 10.203.80.1:51234` (local, then remote).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
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

/// Every arriving segment hashes its 4-tuple (with the keyed SipHash of
/// `HashMap`, which a peer choosing ports cannot steer into collisions).
/// SipHash costs per call as much as per byte, so an IPv4 4-tuple goes in
/// as one 96-bit number instead of four fields and two enum tags.
impl Hash for Quad {
    fn hash<H: Hasher>(&self, state: &mut H) {
        match (self.local, self.remote) {
            (SocketAddr::V4(l), SocketAddr::V4(r)) => state.write_u128(
                u128::from(l.ip().to_bits()) << 64
                    | u128::from(r.ip().to_bits()) << 32
                    | u128::from(l.port()) << 16
                    | u128::from(r.port()),
            ),
            (l, r) => {
                l.hash(state);
                r.hash(state);
            }
        }
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

/// A map keyed by the stack's own ids ([`SocketId`], and what wraps one).
///
/// Every packet looks a few of these up. The ids are ours, handed out in
/// order: someone on the network can at most choose which of them stay
/// alive (every 1024th connection, say), not their values, and a
/// multiplicative hash with a final rotation spreads even such a strided
/// set as well as SipHash does, at a fraction of the cost (SipHash was 3% of
/// the CPU time of a bulk transfer). Maps keyed
/// by what a packet says (the demux's 4-tuples, TIME-WAIT's timers) keep
/// SipHash's keyed hashing.
pub type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// The hasher of [`IdMap`]: each word is mixed in by a rotate, an xor and a
/// multiplication by 2^64 / φ; the result is rotated once more.
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    /// The multiplication leaves the low bits (hashbrown's bucket index)
    /// depending on the id's low bits only; the rotation brings the
    /// well-mixed high bits down, so that ids an attacker keeps alive at a
    /// stride (every 1024th connection) do not share a few buckets.
    fn finish(&self) -> u64 {
        self.0.rotate_left(26)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn write_isize(&mut self, n: isize) {
        self.write_u64(n as u64);
    }
}

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

    /// Sequential ids, and ids kept alive at a stride, fill distinct
    /// buckets (the low bits hashbrown indexes by).
    #[test]
    fn socket_ids_spread_over_buckets_even_at_a_stride() {
        use std::hash::BuildHasher;
        let build = BuildHasherDefault::<IdHasher>::default();
        for stride in [1u64, 64, 1024] {
            let buckets: std::collections::HashSet<u64> = (0..4096u64)
                .map(|i| build.hash_one(SocketId(i * stride)) & 8191)
                .collect();
            assert!(
                buckets.len() > 3000,
                "stride {stride}: {} buckets",
                buckets.len()
            );
        }
    }
}
