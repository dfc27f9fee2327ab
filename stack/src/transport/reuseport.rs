//! Reuse-port groups: several sockets on one port, one chosen per flow.
//!
//! Normally a port has one owner: a second listener (or UDP bind) on it
//! fails with `AddrInUse`, because the port is how new traffic finds its
//! socket. A reuse-port group (Linux's `SO_REUSEPORT`) is the exception:
//! when every socket on a port opted in, they share it, and for each new
//! flow the stack picks one member by a keyed hash of the 4-tuple. The same
//! flow always hashes to the same member, so a retransmitted SYN, or the next
//! datagram from the same sender, lands where the first one did — without
//! remembering anything. This one mechanism serves TCP listeners (`listener`)
//! and UDP readers (`udp`).

use std::collections::HashMap;

use crate::wire::quad::{Quad, SocketId, flow_hash};

/// Why `listen` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenError {
    /// Another socket already listens on this port (and not both opted into
    /// a reuse-port group).
    AddrInUse(u16),
    /// Port 0 cannot be listened on.
    InvalidPort,
    /// A listen on port 0 found no free port in the ephemeral range.
    NoFreePort,
}

impl std::fmt::Display for ListenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenError::AddrInUse(p) => write!(
                f,
                "address in use: another socket already listens on port {p} \
                 (one listener per port, unless every listener joins a reuse-port group)"
            ),
            ListenError::InvalidPort => write!(f, "cannot listen on port 0"),
            ListenError::NoFreePort => write!(f, "no free port in the ephemeral range"),
        }
    }
}

impl std::error::Error for ListenError {}

impl From<ListenError> for std::io::Error {
    fn from(e: ListenError) -> std::io::Error {
        let kind = match e {
            ListenError::AddrInUse(_) => std::io::ErrorKind::AddrInUse,
            ListenError::InvalidPort => std::io::ErrorKind::InvalidInput,
            ListenError::NoFreePort => std::io::ErrorKind::AddrNotAvailable,
        };
        std::io::Error::new(kind, e)
    }
}

/// The members of every port: `(socket, joined as a reuse-port member)`.
#[derive(Debug)]
pub struct PortGroups {
    by_port: HashMap<u16, Vec<(SocketId, bool)>>,
    key: (u64, u64),
}

impl PortGroups {
    /// `key` keys the flow hash (from the stack's seed).
    pub fn new(key: (u64, u64)) -> PortGroups {
        PortGroups {
            by_port: HashMap::new(),
            key,
        }
    }

    /// Adds `id` to `port`: refused with `AddrInUse` unless the port is free,
    /// or `id` and every socket already on it joined as reuse-port members.
    pub fn join(&mut self, port: u16, id: SocketId, reuse: bool) -> Result<(), ListenError> {
        if port == 0 {
            return Err(ListenError::InvalidPort);
        }
        let members = self.by_port.entry(port).or_default();
        let shareable = reuse && members.iter().all(|(_, r)| *r);
        if !(members.is_empty() || shareable) {
            return Err(ListenError::AddrInUse(port));
        }
        members.push((id, reuse));
        Ok(())
    }

    /// Removes `id` from `port`; the others carry on.
    pub fn leave(&mut self, port: u16, id: SocketId) {
        if let Some(members) = self.by_port.get_mut(&port) {
            members.retain(|(m, _)| *m != id);
            if members.is_empty() {
                self.by_port.remove(&port);
            }
        }
    }

    pub fn has_port(&self, port: u16) -> bool {
        self.by_port.contains_key(&port)
    }

    /// The member of `quad`'s local port that gets the flow `quad`, among
    /// the `eligible` ones: the only one, or the one its hash picks.
    pub fn pick(&self, quad: &Quad, eligible: impl Fn(SocketId) -> bool) -> Option<SocketId> {
        let members = self.by_port.get(&quad.local.port())?;
        let open: Vec<SocketId> = members
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| eligible(*id))
            .collect();
        match open.len() {
            0 => None,
            1 => Some(open[0]),
            n => Some(open[(flow_hash(self.key, quad) % n as u64) as usize]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quad(remote_port: u16) -> Quad {
        Quad::new(
            "10.0.0.2:80".parse().unwrap(),
            std::net::SocketAddr::from(([10, 0, 0, 1], remote_port)),
        )
    }

    #[test]
    fn one_owner_per_port_unless_all_opt_in() {
        let mut g = PortGroups::new((1, 2));
        g.join(80, SocketId(1), false).unwrap();
        assert_eq!(
            g.join(80, SocketId(2), true),
            Err(ListenError::AddrInUse(80))
        );
        g.join(81, SocketId(3), true).unwrap();
        g.join(81, SocketId(4), true).unwrap();
        assert_eq!(
            g.join(81, SocketId(5), false),
            Err(ListenError::AddrInUse(81))
        );
    }

    #[test]
    fn flows_stick_and_ineligible_members_are_skipped() {
        let mut g = PortGroups::new((1, 2));
        for id in 1..=3 {
            g.join(80, SocketId(id), true).unwrap();
        }
        let first = g.pick(&quad(5000), |_| true);
        assert_eq!(g.pick(&quad(5000), |_| true), first);
        assert_eq!(
            g.pick(&quad(5000), |id| id == SocketId(2)),
            Some(SocketId(2))
        );
        g.leave(80, SocketId(2));
        assert!((40000..40100).all(|p| g.pick(&quad(p), |_| true) != Some(SocketId(2))));
    }
}
