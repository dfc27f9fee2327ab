//! Each connection's story: its events and the segments of its handshake and
//! teardown, kept so that the page can draw them.
//!
//! A story records, for one socket, the segments that matter to the story of
//! a connection — every SYN, FIN and RST, the ACK that completes the
//! handshake, and the ACKs of the teardown — with their sequence numbers,
//! lengths and options, plus the socket's events. Data segments in between
//! are only counted. Stories of closed connections are kept for a while (the
//! last [`KEEP_FINISHED`]), so a connection that just ended can still be
//! looked at. Everything is bounded: a story holds at most
//! [`MAX_SEGMENTS`] segments and [`MAX_EVENTS`] events.

use std::collections::VecDeque;

use smoltcp::time::Instant;

use crate::observe::event::{Record, SynOptions};
use crate::wire::quad::{IdMap, Quad, SocketId};
use crate::wire::segment::Segment;

pub const MAX_SEGMENTS: usize = 32;
pub const MAX_EVENTS: usize = 64;
pub const KEEP_FINISHED: usize = 256;

/// One segment of a story.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentNote {
    pub ts: Instant,
    /// From the peer to the stack.
    pub inbound: bool,
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
    pub seq: u32,
    pub ack_number: u32,
    pub len: usize,
    pub options: SynOptions,
}

impl SegmentNote {
    /// `SYN`, `SYN-ACK`, `ACK`, `FIN-ACK`, `RST`, `RST-ACK`, with `+data`.
    pub fn flags(&self) -> String {
        let mut f = String::new();
        for (on, name) in [
            (self.syn, "SYN"),
            (self.fin, "FIN"),
            (self.rst, "RST"),
            (self.ack, "ACK"),
        ] {
            if on {
                if !f.is_empty() {
                    f.push('-');
                }
                f.push_str(name);
            }
        }
        if self.len > 0 {
            f.push_str(" +data");
        }
        f
    }
}

/// One connection's story.
#[derive(Debug, Clone, PartialEq)]
pub struct Story {
    pub id: SocketId,
    pub quad: Quad,
    pub segments: Vec<SegmentNote>,
    /// The socket's events, as data: rendered when someone looks.
    pub events: Vec<Record>,
    /// Data segments not kept, in each direction.
    pub data_in: u64,
    pub data_out: u64,
    /// Segments left out because the story was full.
    pub dropped: u64,
    pub finished: bool,
    seen_syn_in: bool,
    seen_syn_out: bool,
    handshake_done: bool,
    fin_seen: bool,
}

impl Story {
    fn new(id: SocketId, quad: Quad) -> Story {
        Story {
            id,
            quad,
            segments: Vec::new(),
            events: Vec::new(),
            data_in: 0,
            data_out: 0,
            dropped: 0,
            finished: false,
            seen_syn_in: false,
            seen_syn_out: false,
            handshake_done: false,
            fin_seen: false,
        }
    }

    fn note(&mut self, ts: Instant, inbound: bool, seg: &Segment) {
        if seg.syn {
            if inbound {
                self.seen_syn_in = true;
            } else {
                self.seen_syn_out = true;
            }
        }
        self.fin_seen |= seg.fin;
        let completing =
            !self.handshake_done && seg.ack && !seg.syn && self.seen_syn_in && self.seen_syn_out;
        let keep = seg.syn || seg.fin || seg.rst || completing || self.fin_seen;
        if completing {
            self.handshake_done = true;
        }
        if !keep {
            if inbound {
                self.data_in += 1;
            } else {
                self.data_out += 1;
            }
            return;
        }
        if self.segments.len() >= MAX_SEGMENTS {
            self.dropped += 1;
            return;
        }
        self.segments.push(SegmentNote {
            ts,
            inbound,
            syn: seg.syn,
            ack: seg.ack,
            fin: seg.fin,
            rst: seg.rst,
            seq: seg.seq,
            ack_number: seg.ack_number,
            len: seg.payload_len,
            options: if seg.syn {
                seg.options
            } else {
                SynOptions::default()
            },
        });
    }

    /// The peer's and the stack's initial sequence numbers, once seen.
    pub fn isns(&self) -> (Option<u32>, Option<u32>) {
        let isn = |inbound: bool| {
            self.segments
                .iter()
                .find(|s| s.syn && s.inbound == inbound)
                .map(|s| s.seq)
        };
        (isn(true), isn(false))
    }
}

/// Every live story, and the most recent finished ones.
#[derive(Debug, Default)]
pub struct Stories {
    live: IdMap<SocketId, Story>,
    finished: VecDeque<Story>,
}

impl Stories {
    pub fn begin(&mut self, id: SocketId, quad: Quad) {
        self.live.insert(id, Story::new(id, quad));
    }

    /// Notes a segment if the story wants it.
    pub fn segment(&mut self, id: SocketId, ts: Instant, inbound: bool, seg: &Segment) {
        if let Some(s) = self.live.get_mut(&id) {
            s.note(ts, inbound, seg);
        }
    }

    /// Whether a live story would keep an outbound segment without SYN, FIN
    /// or RST now (so that the caller parses outgoing packets only when it
    /// matters).
    pub fn wants_outbound(&self, id: SocketId) -> bool {
        self.live
            .get(&id)
            .is_some_and(|s| !s.handshake_done || s.fin_seen)
    }

    /// Counts an outbound data segment that was not parsed.
    pub fn count_outbound(&mut self, id: SocketId) {
        if let Some(s) = self.live.get_mut(&id) {
            s.data_out += 1;
        }
    }

    pub fn event(&mut self, id: SocketId, record: &Record) {
        let story = match self.live.get_mut(&id) {
            Some(s) => Some(s),
            None => self.finished.iter_mut().rev().find(|s| s.id == id),
        };
        if let Some(s) = story
            && s.events.len() < MAX_EVENTS
        {
            s.events.push(record.clone());
        }
    }

    /// The socket is gone: keep its story among the recent finished ones.
    pub fn finish(&mut self, id: SocketId) {
        if let Some(mut s) = self.live.remove(&id) {
            s.finished = true;
            if self.finished.len() >= KEEP_FINISHED {
                self.finished.pop_front();
            }
            self.finished.push_back(s);
        }
    }

    pub fn get(&self, id: SocketId) -> Option<&Story> {
        self.live
            .get(&id)
            .or_else(|| self.finished.iter().rev().find(|s| s.id == id))
    }
}
