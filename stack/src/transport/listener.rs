//! listen/accept with a backlog, as Linux does it.
//!
//! A listening socket never carries data. It owns two queues:
//!
//! * the **SYN queue**: connections whose SYN arrived and were answered with
//!   SYN-ACK, waiting for the client's ACK (SYN-RECEIVED, "half-open"). It is
//!   capped, and each entry expires if the handshake never completes;
//! * the **accept queue**: connections whose handshake completed (ESTABLISHED)
//!   and that the application has not yet taken with `accept()`.
//!
//! `accept()` pops the oldest entry of the accept queue: the connection
//! already has its own socket, created when its SYN arrived, and from then
//! on every segment of that 4-tuple goes straight to it.
//!
//! `listen(port, backlog)` sets how many completed connections may wait. As in
//! Linux, the accept queue counts as full when it holds *more* than `backlog`
//! (so a backlog of 0 still admits one). While it is full, a new SYN is
//! dropped without an answer and the ACK that would complete a handshake is
//! held back: the client retransmits, and gets in once the application
//! accepts. With `--overflow rst` that ACK is answered with a reset instead
//! (Linux's `tcp_abort_on_overflow`).
//!
//! # One listener per port — and the exception
//!
//! A second `listen` on a port that already has a listener fails with
//! `AddrInUse`: the port is how a new connection finds its listener, so there
//! can be only one. The exception is a *reuse-port group* (Linux's
//! `SO_REUSEPORT`): when every listener on a port opted in with
//! `listen_reuse`, they form a group and each new connection goes to one
//! member, chosen by a keyed hash of its 4-tuple — so all segments of a flow,
//! and a retransmitted SYN, land on the same member. A plain `listen` on a
//! group's port fails, and so does `listen_reuse` on a plain listener's port.
//! Removing a member resets the connections queued on it; the others carry on.

use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;

use smoltcp::time::Instant;

use crate::transport::reuseport::{ListenError, PortGroups};
use crate::wire::quad::{IdMap, Quad, SocketId};

#[derive(Debug)]
pub struct Listener {
    /// The listening socket's own id (from the same counter as connections).
    pub id: SocketId,
    /// Whether it is a member of a reuse-port group.
    pub reuse: bool,
    /// The address it listens on (`0.0.0.0:port` style in events).
    pub local: SocketAddr,
    pub backlog: usize,
    /// Half-open connections, oldest first (ids grow with time).
    pub syn_queue: BTreeSet<SocketId>,
    /// Established, not yet accepted, with the time each entered the queue.
    pub accept_queue: VecDeque<(SocketId, Instant)>,
}

impl Listener {
    pub fn new(id: SocketId, local: SocketAddr, backlog: usize, reuse: bool) -> Listener {
        Listener {
            id,
            reuse,
            local,
            backlog,
            syn_queue: BTreeSet::new(),
            accept_queue: VecDeque::new(),
        }
    }

    /// Linux's `sk_acceptq_is_full`: more than `backlog` waiting.
    pub fn accept_queue_full(&self) -> bool {
        self.accept_queue.len() > self.backlog
    }

    /// A handshake completed: move the connection to the accept queue.
    pub fn established(&mut self, id: SocketId, now: Instant) {
        if self.syn_queue.remove(&id) {
            self.accept_queue.push_back((id, now));
        }
    }

    /// Forgets a connection wherever it is queued.
    pub fn remove(&mut self, id: SocketId) {
        if !self.syn_queue.remove(&id) {
            self.accept_queue.retain(|(q, _)| *q != id);
        }
    }

    /// Every queued connection, both queues.
    pub fn queued(&self) -> Vec<SocketId> {
        self.syn_queue
            .iter()
            .copied()
            .chain(self.accept_queue.iter().map(|(id, _)| *id))
            .collect()
    }
}

/// Every listener, by id and by port.
#[derive(Debug)]
pub struct Listeners {
    by_id: IdMap<SocketId, Listener>,
    ports: PortGroups,
}

impl Listeners {
    /// `seed` keys the hash that spreads connections over a group.
    pub fn new(seed: u64) -> Listeners {
        Listeners {
            by_id: IdMap::default(),
            ports: PortGroups::new((seed.rotate_left(17) ^ 0x5eed, seed ^ 0x7e57)),
        }
    }

    /// Adds a listener; fails with `AddrInUse` unless the port is free, or
    /// both it and every listener on the port are reuse-port members.
    pub fn add(&mut self, listener: Listener) -> Result<(), ListenError> {
        self.ports
            .join(listener.local.port(), listener.id, listener.reuse)?;
        self.by_id.insert(listener.id, listener);
        Ok(())
    }

    pub fn remove(&mut self, id: SocketId) -> Option<Listener> {
        let l = self.by_id.remove(&id)?;
        self.ports.leave(l.local.port(), id);
        Some(l)
    }

    pub fn has_port(&self, port: u16) -> bool {
        self.ports.has_port(port)
    }

    /// The listener that gets a new connection for `quad`: the only one on
    /// its port, or the group member chosen by a keyed hash of the 4-tuple.
    pub fn pick(&self, quad: &Quad) -> Option<SocketId> {
        self.ports.pick(quad, |_| true)
    }

    pub fn get(&self, id: SocketId) -> Option<&Listener> {
        self.by_id.get(&id)
    }

    pub fn get_mut(&mut self, id: SocketId) -> Option<&mut Listener> {
        self.by_id.get_mut(&id)
    }

    pub fn ids(&self) -> Vec<SocketId> {
        self.by_id.keys().copied().collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Listener> {
        self.by_id.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quad(remote_port: u16) -> Quad {
        Quad::new(
            "10.0.0.2:80".parse().unwrap(),
            SocketAddr::from(([10, 0, 0, 1], remote_port)),
        )
    }

    fn listener(id: u64, reuse: bool) -> Listener {
        Listener::new(SocketId(id), "0.0.0.0:80".parse().unwrap(), 16, reuse)
    }

    #[test]
    fn one_listener_per_port_unless_all_opt_in() {
        let mut ls = Listeners::new(1);
        ls.add(listener(1, false)).unwrap();
        assert_eq!(ls.add(listener(2, false)), Err(ListenError::AddrInUse(80)));
        assert_eq!(ls.add(listener(3, true)), Err(ListenError::AddrInUse(80)));

        let mut ls = Listeners::new(1);
        ls.add(listener(1, true)).unwrap();
        ls.add(listener(2, true)).unwrap();
        assert_eq!(ls.add(listener(3, false)), Err(ListenError::AddrInUse(80)));
    }

    #[test]
    fn a_flow_always_lands_on_the_same_member_and_flows_spread() {
        let mut ls = Listeners::new(7);
        for id in 1..=4 {
            ls.add(listener(id, true)).unwrap();
        }
        let mut counts = std::collections::HashMap::new();
        for p in 40000..40400 {
            let m = ls.pick(&quad(p)).unwrap();
            assert_eq!(ls.pick(&quad(p)), Some(m), "sticky");
            *counts.entry(m).or_insert(0) += 1;
        }
        assert_eq!(counts.len(), 4);
        assert!(counts.values().all(|&c| c > 50), "{counts:?}");
        // Removing a member leaves the others serving.
        ls.remove(SocketId(2));
        assert!((40000..40100).all(|p| ls.pick(&quad(p)) != Some(SocketId(2))));
        assert!(ls.has_port(80));
    }

    #[test]
    fn backlog_zero_still_admits_one() {
        let mut l = Listener::new(SocketId(9), "0.0.0.0:80".parse().unwrap(), 0, false);
        assert!(!l.accept_queue_full());
        l.syn_queue.insert(SocketId(1));
        l.established(SocketId(1), Instant::from_secs(0));
        assert!(l.accept_queue_full());
        l.remove(SocketId(1));
        assert!(l.queued().is_empty());
    }
}
