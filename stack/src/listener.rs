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

use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;

use smoltcp::time::Instant;

use crate::quad::SocketId;

#[derive(Debug)]
pub struct Listener {
    /// The address it listens on (`0.0.0.0:port` style in events).
    pub local: SocketAddr,
    pub backlog: usize,
    /// Half-open connections, oldest first (ids grow with time).
    pub syn_queue: BTreeSet<SocketId>,
    /// Established, not yet accepted, with the time each entered the queue.
    pub accept_queue: VecDeque<(SocketId, Instant)>,
}

impl Listener {
    pub fn new(local: SocketAddr, backlog: usize) -> Listener {
        Listener {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backlog_zero_still_admits_one() {
        let mut l = Listener::new("0.0.0.0:80".parse().unwrap(), 0);
        assert!(!l.accept_queue_full());
        l.syn_queue.insert(SocketId(1));
        l.established(SocketId(1), Instant::from_secs(0));
        assert!(l.accept_queue_full());
        l.remove(SocketId(1));
        assert!(l.queued().is_empty());
    }
}
