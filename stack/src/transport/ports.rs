//! Where a client's port comes from: ephemeral-port choice (RFC 6056).
//!
//! When a program connects without binding, its stack picks the local port.
//! The port only has to make the *4-tuple* unique: the same local port may
//! carry two connections at once as long as their remote endpoints differ. So
//! the chooser proposes candidates from a range and the caller rejects a
//! candidate only when that exact 4-tuple is taken — by a live connection or by
//! a TIME-WAIT record — or when the port has a listener on it.
//!
//! Which candidates come first is the algorithm's business (RFC 6056 §3.3):
//!
//! * [`Algorithm::Sequential`] — one global counter: easy to predict, which is
//!   why RFC 6056 exists (an off-path attacker who can guess the port and the
//!   sequence number can inject segments);
//! * [`Algorithm::Random`] — algorithm 1: a random start, then linear probing;
//!   unpredictable, but a port may be reused soon after it was freed, and
//!   collisions grow as the range fills;
//! * [`Algorithm::Hash`] — algorithm 3: a per-destination offset from a keyed
//!   hash of (local address, remote address, remote port) plus one counter;
//!   ports to one destination advance sequentially (slow reuse), but another
//!   destination cannot learn them;
//! * [`Algorithm::DoubleHash`] — algorithm 4, what current Linux does: the
//!   counter is replaced by a table of counters, picked by a second hash, so
//!   that the connections to one destination do not reveal anything about the
//!   others. Linux also scans even ports first for `connect()` and odd ports
//!   first for `bind()` to port 0, so that the two rarely compete. This is the
//!   default.
//!
//! The ranges: [`PortRange::IANA`] (49152–65535, the dynamic ports of RFC 6335,
//! our default) and [`PortRange::LINUX`] (32768–60999, Linux's
//! `ip_local_port_range`).

use std::hash::Hasher;
use std::net::{IpAddr, SocketAddr};

/// An ephemeral-port algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Algorithm {
    Sequential,
    Random,
    Hash,
    #[default]
    DoubleHash,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sequential => "sequential",
            Algorithm::Random => "random",
            Algorithm::Hash => "hash",
            Algorithm::DoubleHash => "double-hash",
        }
    }

    pub const ALL: [Algorithm; 4] = [
        Algorithm::Sequential,
        Algorithm::Random,
        Algorithm::Hash,
        Algorithm::DoubleHash,
    ];
}

/// An inclusive range of ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

impl PortRange {
    /// RFC 6335's dynamic ports.
    pub const IANA: PortRange = PortRange {
        lo: 49152,
        hi: 65535,
    };
    /// Linux's default `net.ipv4.ip_local_port_range`.
    pub const LINUX: PortRange = PortRange {
        lo: 32768,
        hi: 60999,
    };

    pub fn len(&self) -> u32 {
        u32::from(self.hi) - u32::from(self.lo) + 1
    }

    pub fn is_empty(&self) -> bool {
        self.hi < self.lo
    }

    pub fn contains(&self, port: u16) -> bool {
        (self.lo..=self.hi).contains(&port)
    }
}

/// What the port is for: `connect()` prefers even ports, `bind(0)` odd ones
/// (with [`Algorithm::DoubleHash`], as Linux does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Connect,
    Bind,
}

/// Why a candidate port was passed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// A live connection already has this 4-tuple.
    InUse,
    /// This 4-tuple is in TIME-WAIT.
    TimeWait,
    /// A listener has this port.
    Listener,
}

impl Rejection {
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::InUse => "4-tuple in use",
            Rejection::TimeWait => "4-tuple in TIME-WAIT",
            Rejection::Listener => "port has a listener",
        }
    }
}

/// A chosen port and how it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub port: u16,
    /// Candidates looked at, the chosen one included.
    pub tried: u32,
    /// The first rejected candidates (at most [`MAX_REPORTED`]), with reasons.
    pub rejected: Vec<(u16, Rejection)>,
}

/// How many rejected candidates a choice reports one by one.
pub const MAX_REPORTED: usize = 16;

/// Every candidate was rejected: no free 4-tuple towards this destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exhausted {
    pub tried: u32,
}

/// Linux's `INET_TABLE_PERTURB_SIZE` is 2^16; a smaller table serves a lab.
const TABLE_SIZE: usize = 256;

/// The ephemeral-port chooser. Deterministic for a given seed.
#[derive(Debug, Clone)]
pub struct PortChooser {
    pub algorithm: Algorithm,
    pub range: PortRange,
    key: (u64, u64),
    /// Sequential's next port offset, and algorithm 3's counter.
    counter: u32,
    /// Algorithm 4's table of counters.
    table: Vec<u32>,
    rng: u64,
}

impl PortChooser {
    pub fn new(algorithm: Algorithm, range: PortRange, seed: u64) -> PortChooser {
        let mut rng = seed ^ 0x9e37_79b9_7f4a_7c15;
        let key = (splitmix(&mut rng), splitmix(&mut rng));
        PortChooser {
            algorithm,
            range,
            key,
            counter: 0,
            table: vec![0; TABLE_SIZE],
            rng,
        }
    }

    fn hash(&self, salt: u64, local: IpAddr, remote: SocketAddr) -> u32 {
        #[allow(deprecated)] // SipHash with our own keys: exactly what RFC 6056 asks for.
        let mut h = std::hash::SipHasher::new_with_keys(self.key.0 ^ salt, self.key.1);
        match local {
            IpAddr::V4(a) => h.write(&a.octets()),
            IpAddr::V6(a) => h.write(&a.octets()),
        }
        match remote.ip() {
            IpAddr::V4(a) => h.write(&a.octets()),
            IpAddr::V6(a) => h.write(&a.octets()),
        }
        h.write_u16(remote.port());
        h.finish() as u32
    }

    /// Chooses a local port for a connection from `local` to `remote`.
    /// `check` says why a candidate cannot be used, or `None` when it can.
    pub fn choose(
        &mut self,
        local: IpAddr,
        remote: SocketAddr,
        purpose: Purpose,
        mut check: impl FnMut(u16) -> Option<Rejection>,
    ) -> Result<Choice, Exhausted> {
        let n = self.range.len();
        if self.range.is_empty() {
            return Err(Exhausted { tried: 0 });
        }
        let mut rejected = Vec::new();
        let mut tried = 0u32;
        let mut try_port = |port: u16, tried: &mut u32| -> bool {
            *tried += 1;
            match check(port) {
                None => true,
                Some(why) => {
                    if rejected.len() < MAX_REPORTED {
                        rejected.push((port, why));
                    }
                    false
                }
            }
        };
        let lo = u32::from(self.range.lo);
        let port_at = |offset: u32| (lo + offset % n) as u16;
        match self.algorithm {
            Algorithm::Sequential | Algorithm::Random | Algorithm::Hash => {
                let start = match self.algorithm {
                    Algorithm::Sequential => self.counter,
                    Algorithm::Random => splitmix(&mut self.rng) as u32,
                    _ => self.hash(0, local, remote).wrapping_add(self.counter),
                } % n;
                for i in 0..n {
                    let port = port_at(start + i);
                    if try_port(port, &mut tried) {
                        if self.algorithm != Algorithm::Random {
                            self.counter = self.counter.wrapping_add(i + 1);
                        }
                        return Ok(Choice {
                            port,
                            tried,
                            rejected,
                        });
                    }
                }
            }
            Algorithm::DoubleHash => {
                let index = self.hash(1, local, remote) as usize % TABLE_SIZE;
                let start = self.hash(0, local, remote).wrapping_add(self.table[index]) % n;
                // Even ports first for connect, odd first for bind (counted
                // from the start of the range, which is even in both defaults).
                let first = match purpose {
                    Purpose::Connect => 0,
                    Purpose::Bind => 1,
                };
                for parity in [first, 1 - first] {
                    for i in 0..n {
                        let port = port_at(start + i);
                        if (u32::from(port) - lo) % 2 == parity && try_port(port, &mut tried) {
                            self.table[index] = self.table[index].wrapping_add(i + 2);
                            return Ok(Choice {
                                port,
                                tried,
                                rejected,
                            });
                        }
                    }
                }
            }
        }
        Err(Exhausted { tried })
    }
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    fn server(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], port))
    }

    fn free(_: u16) -> Option<Rejection> {
        None
    }

    #[test]
    fn sequential_steps_through_the_range() {
        let mut c = PortChooser::new(Algorithm::Sequential, PortRange::IANA, 1);
        let a = c.choose(LOCAL, server(80), Purpose::Connect, free).unwrap();
        let b = c.choose(LOCAL, server(81), Purpose::Connect, free).unwrap();
        assert_eq!((a.port, b.port), (49152, 49153));
    }

    #[test]
    fn random_stays_in_range_and_spreads() {
        let mut c = PortChooser::new(Algorithm::Random, PortRange::LINUX, 7);
        let ports: HashSet<u16> = (0..200)
            .map(|_| {
                c.choose(LOCAL, server(80), Purpose::Connect, free)
                    .unwrap()
                    .port
            })
            .collect();
        assert!(ports.iter().all(|p| PortRange::LINUX.contains(*p)));
        assert!(ports.len() > 190, "random ports should rarely repeat");
    }

    #[test]
    fn hash_gives_each_destination_its_own_offset() {
        let mut c = PortChooser::new(Algorithm::Hash, PortRange::IANA, 3);
        let a1 = c
            .choose(LOCAL, server(80), Purpose::Connect, free)
            .unwrap()
            .port;
        let a2 = c
            .choose(LOCAL, server(80), Purpose::Connect, free)
            .unwrap()
            .port;
        let b = c
            .choose(LOCAL, server(8080), Purpose::Connect, free)
            .unwrap()
            .port;
        assert_eq!(
            PortChooser::new(Algorithm::Hash, PortRange::IANA, 3)
                .choose(LOCAL, server(80), Purpose::Connect, free)
                .unwrap()
                .port,
            a1,
            "same seed, same choice"
        );
        assert_eq!(u32::from(a2), (u32::from(a1) + 1 - 49152) % 16384 + 49152);
        assert!(b.abs_diff(a2) > 2, "another destination starts elsewhere");
    }

    #[test]
    fn double_hash_prefers_even_for_connect_and_odd_for_bind() {
        let mut c = PortChooser::new(Algorithm::DoubleHash, PortRange::LINUX, 11);
        for i in 0..50 {
            let p = c
                .choose(LOCAL, server(80 + i), Purpose::Connect, free)
                .unwrap()
                .port;
            assert_eq!(p % 2, 0, "connect: {p}");
            let p = c
                .choose(LOCAL, server(80 + i), Purpose::Bind, free)
                .unwrap()
                .port;
            assert_eq!(p % 2, 1, "bind: {p}");
        }
    }

    #[test]
    fn double_hash_falls_back_to_odd_ports_when_even_are_taken() {
        let range = PortRange {
            lo: 50000,
            hi: 50007,
        };
        let mut c = PortChooser::new(Algorithm::DoubleHash, range, 5);
        let choice = c
            .choose(LOCAL, server(80), Purpose::Connect, |p| {
                (p % 2 == 0).then_some(Rejection::InUse)
            })
            .unwrap();
        assert_eq!(choice.port % 2, 1);
        assert_eq!(choice.rejected.len(), 4);
        assert_eq!(choice.tried, 5);
    }

    #[test]
    fn taken_candidates_are_reported_with_reasons() {
        let mut c = PortChooser::new(Algorithm::Sequential, PortRange::IANA, 1);
        let choice = c
            .choose(LOCAL, server(80), Purpose::Connect, |p| match p {
                49152 => Some(Rejection::InUse),
                49153 => Some(Rejection::TimeWait),
                49154 => Some(Rejection::Listener),
                _ => None,
            })
            .unwrap();
        assert_eq!(choice.port, 49155);
        assert_eq!(choice.tried, 4);
        assert_eq!(
            choice.rejected,
            vec![
                (49152, Rejection::InUse),
                (49153, Rejection::TimeWait),
                (49154, Rejection::Listener)
            ]
        );
    }

    #[test]
    fn every_algorithm_finds_the_last_free_port_of_an_odd_sized_range() {
        for alg in Algorithm::ALL {
            let mut c = PortChooser::new(
                alg,
                PortRange {
                    lo: 60000,
                    hi: 60008,
                },
                9,
            );
            let r = c.choose(LOCAL, server(80), Purpose::Connect, |p| {
                (p != 60007).then_some(Rejection::InUse)
            });
            assert_eq!(r.map(|c| c.port), Ok(60007), "{alg:?}");
        }
    }

    #[test]
    fn exhaustion_is_an_error_not_a_hang() {
        for alg in Algorithm::ALL {
            let mut c = PortChooser::new(
                alg,
                PortRange {
                    lo: 60000,
                    hi: 60009,
                },
                1,
            );
            let r = c.choose(LOCAL, server(80), Purpose::Connect, |_| {
                Some(Rejection::InUse)
            });
            assert_eq!(r, Err(Exhausted { tried: 10 }), "{alg:?}");
        }
    }
}
