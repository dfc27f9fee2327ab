//! The 4-tuple table: which connection does this segment belong to?
//!
//! Every arriving TCP segment carries its 4-tuple (source and destination
//! address and port). The stack looks it up here — one hash lookup, whatever
//! the number of open connections — and finds either a live connection or a
//! compact TIME-WAIT record. A 4-tuple that is not in the table belongs to no
//! connection: a SYN to a listening port creates one (see `listener`),
//! anything else is answered with a reset.
//!
//! This is the piece smoltcp does not have: its `SocketSet` asks every socket
//! in turn whether it wants the packet.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use crate::transport::timewait::TimeWait;
use crate::wire::quad::{Quad, SocketId};

/// What a 4-tuple maps to.
#[derive(Debug)]
pub enum Slot {
    /// A live connection, owning its own socket.
    Conn(SocketId),
    /// The stack closed first and holds the 4-tuple in TIME-WAIT.
    TimeWait(TimeWait),
}

#[derive(Debug, Default)]
pub struct Demux {
    table: HashMap<Quad, Slot>,
    /// How many 4-tuples (live or TIME-WAIT) use each local port: what a
    /// bind to port 0 must avoid, without walking the table.
    local_ports: HashMap<u16, u32>,
}

impl Demux {
    pub fn get(&self, quad: &Quad) -> Option<&Slot> {
        self.table.get(quad)
    }

    pub fn get_mut(&mut self, quad: &Quad) -> Option<&mut Slot> {
        self.table.get_mut(quad)
    }

    /// Claims a free 4-tuple for a new connection; `false` if it is taken.
    pub fn insert_conn(&mut self, quad: Quad, id: SocketId) -> bool {
        match self.table.entry(quad) {
            Entry::Occupied(_) => false,
            Entry::Vacant(v) => {
                v.insert(Slot::Conn(id));
                *self.local_ports.entry(quad.local.port()).or_default() += 1;
                true
            }
        }
    }

    /// Replaces a connection's entry with its TIME-WAIT record.
    pub fn enter_time_wait(&mut self, quad: Quad, record: TimeWait) {
        if self.table.insert(quad, Slot::TimeWait(record)).is_none() {
            *self.local_ports.entry(quad.local.port()).or_default() += 1;
        }
    }

    fn release_port(&mut self, port: u16) {
        if let Entry::Occupied(mut e) = self.local_ports.entry(port) {
            *e.get_mut() -= 1;
            if *e.get() == 0 {
                e.remove();
            }
        }
    }

    /// Whether any 4-tuple uses `port` as its local port.
    pub fn port_in_use(&self, port: u16) -> bool {
        self.local_ports.contains_key(&port)
    }

    /// Frees the 4-tuple if it still belongs to connection `id`.
    pub fn remove_conn(&mut self, quad: &Quad, id: SocketId) {
        if matches!(self.table.get(quad), Some(Slot::Conn(c)) if *c == id) {
            self.table.remove(quad);
            self.release_port(quad.local.port());
        }
    }

    /// Frees a TIME-WAIT 4-tuple, returning its record.
    pub fn remove_time_wait(&mut self, quad: &Quad) -> Option<TimeWait> {
        match self.table.remove(quad) {
            Some(Slot::TimeWait(tw)) => {
                self.release_port(quad.local.port());
                Some(tw)
            }
            Some(other) => {
                self.table.insert(*quad, other);
                None
            }
            None => None,
        }
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Every TIME-WAIT entry (for the connection table; not a packet path).
    pub fn time_waits(&self) -> impl Iterator<Item = (&Quad, &TimeWait)> {
        self.table.iter().filter_map(|(q, s)| match s {
            Slot::TimeWait(tw) => Some((q, tw)),
            Slot::Conn(_) => None,
        })
    }

    /// Drops every entry (stack shutdown).
    pub fn clear(&mut self) {
        self.table.clear();
        self.local_ports.clear();
    }
}
