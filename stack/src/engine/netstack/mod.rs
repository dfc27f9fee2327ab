//! The protocol core: packets and the time in, packets and events out.
//!
//! [`NetStack`] is sans-IO. It never touches the TUN device or a clock:
//!
//! * inputs are [`NetStack::receive`] (a packet arrived), [`NetStack::poll_timers`]
//!   (time passed) and the application's calls (`listen`, `accept`, `recv`,
//!   `send`, `close`), each with the current time `now`;
//! * outputs are drained by the caller: packets to transmit
//!   ([`NetStack::take_transmit`]), event records ([`NetStack::drain_events`]),
//!   sockets whose readiness may have changed ([`NetStack::drain_ready`]) and the
//!   next deadline ([`NetStack::poll_at`]).
//!
//! That is what lets the tests drive it with hand-written segments and a fake
//! clock, and what the runtime wraps with a real device and a real clock.
//!
//! # The path of a segment
//!
//! 1. `segment::classify` parses it and checks checksums and addresses.
//! 2. `demux` looks up its 4-tuple: a live connection, a TIME-WAIT record, or
//!    nothing.
//! 3. A live connection gets the segment through the engine, with only its
//!    own socket set. Its transmissions go out; its state change is an event.
//! 4. Nothing, and the segment is a SYN for a listening port: a new socket is
//!    created for this 4-tuple and joins the listener's SYN queue. When its
//!    handshake completes it moves to the accept queue, and `accept()` hands it
//!    to the application.
//! 5. Nothing and no listener: the engine answers with a reset.
//!
//! # Where each part lives
//!
//! This file holds the stack's state (`NetStack`, a connection's `Conn`) and
//! its outputs (transmit queue, events, readiness, capture); the rest is one
//! file per idea, each an `impl NetStack` block:
//!
//! * `ingress.rs` — where an arriving packet goes (steps 1 to 5 above);
//! * `cookies.rs` — a SYN answered with a cookie, and the ACK that returns one;
//! * `egress.rs` — what a connection sends once the engine has run it, and
//!   the deadline it wants next;
//! * `teardown.rs` — a connection's timers, TIME-WAIT, and its end;
//! * `calls.rs` — the socket calls: listen, accept, connect, read, write, close;
//! * `udp.rs` — datagrams in and out;
//! * `view.rs` — the connection table as a snapshot, or one page of it;
//! * `lifecycle.rs` — the stack's clean shutdown.
//!
//! # Where smoltcp and Linux differ, and what this layer does about it
//!
//! * TIME-WAIT is ours (`timewait`): a compact record that lets a newer SYN
//!   reuse the 4-tuple, where smoltcp would drop it for 10 s.
//! * A socket in SYN-RECEIVED that receives a reset falls back to LISTEN in
//!   smoltcp; here it is freed silently (its listener is ours, not the socket).
//! * SYN-RECEIVED expires on our own timer (`NetConfig::syn_timeout`) and the
//!   socket is freed without a reset.

mod calls;
mod cookies;
mod egress;
mod ingress;
mod lifecycle;
mod teardown;
mod udp;
mod view;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp::{self, State as TcpState};
use smoltcp::time::Instant;

use crate::config::NetConfig;
use crate::engine::buffers::ConnSockets;
use crate::engine::driver::Engine;
use crate::engine::timers::Timers;
use crate::observe::event::{Closer, Event, RateLimiter, Record, RstReason};
use crate::observe::story::{Stories, Story};
use crate::transport::demux::{Demux, Slot};
use crate::transport::listener::Listeners;
use crate::transport::nagle::Nagle;
use crate::transport::ports::PortChooser;
use crate::transport::syncookie::{Flood, KeySource, SynCookies};
use crate::transport::udp::Udp;
use crate::transport::window::RecvWindow;
use crate::wire::quad::{IdMap, Quad, SocketId};
use crate::wire::segment;

/// Something whose readiness may have changed: wake whoever waits on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ready {
    Socket(SocketId),
    Listener(SocketId),
    /// A sink's end (see [`NetStack::sink`]): only its state changes.
    Sink(SocketId),
}

pub use crate::transport::reuseport::ListenError;

use crate::observe::table::TableIndex;
pub use crate::observe::table::{ListenerInfo, Query, SocketInfo, Stats, Table, TablePage};

/// Who holds a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    SynQueue,
    AcceptQueue,
    App,
    /// The application closed it; the stack finishes the close.
    Orphan,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum TimerKey {
    Conn(SocketId),
    TimeWait(Quad),
    /// The end of a listener's SYN flood, once it is quiet.
    Flood(SocketId),
}

/// One connection: its own socket in its own one-socket set.
struct Conn {
    quad: Quad,
    /// `None` once the socket is freed (closed, or moved to a TIME-WAIT record).
    sockets: Option<ConnSockets>,
    handle: SocketHandle,
    /// The last state we reported.
    state: TcpState,
    owner: Owner,
    /// The listener it came from (none for outbound connections).
    listener: Option<SocketId>,
    created: Instant,
    closer: Option<Closer>,
    reset: bool,
    peer_tsval: Option<u32>,
    /// Our last segment once we are closing: re-sent from TIME-WAIT.
    last_ack: Option<Vec<u8>>,
    read_closed: bool,
    accepted_by: Option<Arc<str>>,
    served_by: Option<Arc<str>>,
    /// When the application let go of it (see `NetConfig::orphan_timeout`).
    orphaned_at: Option<Instant>,
    /// What our last segment acknowledged and advertised (for the
    /// exact-reset check of RFC 5961 and the ACKs past the window's edge),
    /// and the sequence number after the highest one we sent.
    window: RecvWindow,
    snd_nxt: Option<u32>,
    /// In the current batch's list of connections to send from.
    egress_pending: bool,
    /// Bytes the application has read (wrapping; see `RecvWindow`).
    read_total: u32,
    /// Once the application made the connection a sink: the bytes dropped
    /// on arrival so far (see [`NetStack::sink`]).
    sunk: Option<u64>,
    /// Nagle's algorithm: when a partial segment waits (see `nagle`).
    nagle: Nagle,
    /// Made from a SYN cookie: the cookie (the ISN the peer was given),
    /// until the engine's own SYN-ACK shows the ISN it chose instead.
    cookie: Option<u32>,
    /// Added to our sequence numbers on the way out, taken from the peer's
    /// acknowledgments on the way in: the cookie minus the engine's ISN
    /// (0 for every connection not made from a cookie). See `syncookie`.
    seq_shift: u32,
    /// The ISN the peer must see where the engine's own (a random number)
    /// will not do: a connection that reuses a TIME-WAIT 4-tuple starts
    /// above the old connection's sequence space, as Linux does (its old
    /// `snd_nxt` + 65537), so that the peer cannot take an old duplicate for
    /// new data (RFC 6191). Taken, as a shift, when its SYN-ACK leaves.
    chosen_isn: Option<u32>,
}

impl Conn {
    fn socket(&mut self) -> Option<&mut tcp::Socket<'static>> {
        let h = self.handle;
        self.sockets.as_mut().map(|s| s.get_mut::<tcp::Socket>(h))
    }

    /// A sink drops what has arrived, as if its application had read it.
    fn sink_received(&mut self) {
        if self.sunk.is_none() {
            return;
        }
        let n = self.socket().map_or(0, |s| drop_received(s, usize::MAX));
        self.read_total = self.read_total.wrapping_add(n as u32);
        if let Some(total) = self.sunk.as_mut() {
            *total += n as u64;
        }
    }

    /// Bytes read by the application plus those waiting to be (wrapping):
    /// how far the engine's next expected byte has moved.
    fn consumed(&mut self) -> u32 {
        let waiting = self.socket().map_or(0, |s| s.recv_queue());
        self.read_total.wrapping_add(waiting as u32)
    }
}

/// The sans-IO protocol core. See the module documentation.
pub struct NetStack {
    cfg: NetConfig,
    engine: Engine,
    conns: IdMap<SocketId, Conn>,
    demux: Demux,
    /// The connection table's counts and order, kept from the events below.
    index: TableIndex,
    /// The keys of the SYN cookies sent lately (no state per cookie).
    cookies: SynCookies,
    /// Listeners answering with cookies now, by listener id.
    floods: HashMap<SocketId, Flood>,
    listeners: Listeners,
    timers: Timers<TimerKey>,
    tx: VecDeque<Vec<u8>>,
    /// Scratch: what the engine transmitted during the current call.
    out: Vec<Vec<u8>>,
    /// The empty socket set that segments for no connection are handed with.
    no_sockets: SocketSet<'static>,
    records: Vec<Record>,
    limiter: RateLimiter,
    ready: Vec<Ready>,
    /// Connections with replies held back until the end of a batch
    /// (`None`: not batching), and the vector to reuse for the next batch.
    batch: Option<Vec<SocketId>>,
    batch_spare: Vec<SocketId>,
    next_id: u64,
    stats: Stats,
    /// The reason to report for the next reset the engine transmits.
    rst_reason: Option<RstReason>,
    ports: PortChooser,
    /// Packets seen so far, in and out: the capture's frame numbers.
    frames: u64,
    /// The frame being processed: events name it.
    current_frame: Option<u64>,
    /// When capturing: every packet in and out, in processing order.
    capture: Option<Vec<Captured>>,
    stories: Stories,
    udp: Udp,
}

/// A packet for the capture file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    pub ts: Instant,
    pub frame: u64,
    pub inbound: bool,
    pub data: Vec<u8>,
}

impl NetStack {
    pub fn new(cfg: NetConfig, now: Instant) -> NetStack {
        let engine = Engine::new(&cfg, now);
        let limiter = RateLimiter::new(cfg.event_burst, cfg.event_rate);
        let ports = PortChooser::new(cfg.port_algorithm, cfg.port_range, cfg.seed);
        let listeners = Listeners::new(cfg.seed);
        NetStack {
            ports,
            frames: 0,
            current_frame: None,
            capture: None,
            stories: Stories::default(),
            udp: Udp::new(cfg.seed, now),
            cfg,
            engine,
            conns: IdMap::default(),
            demux: Demux::default(),
            index: TableIndex::default(),
            cookies: SynCookies::new(KeySource::Os),
            floods: HashMap::new(),
            listeners,
            timers: Timers::default(),
            tx: VecDeque::new(),
            out: Vec::new(),
            no_sockets: SocketSet::new(Vec::new()),
            records: Vec::new(),
            limiter,
            ready: Vec::new(),
            batch: None,
            batch_spare: Vec::new(),
            next_id: 1,
            stats: Stats::default(),
            rst_reason: None,
        }
    }

    pub fn config(&self) -> &NetConfig {
        &self.cfg
    }

    /// Records an event (subject to rate limiting), naming the frame being
    /// processed when a capture is on.
    pub fn emit(&mut self, now: Instant, event: Event) {
        self.index_event(&event);
        if let Some(id) = event.id() {
            let record = Record {
                ts: now,
                event,
                frame: self.current_frame,
            };
            self.stories.event(id, &record);
            let closed = matches!(record.event, Event::Closed { .. });
            self.limiter
                .admit(now, record.frame, record.event, &mut self.records);
            if closed {
                self.stories.finish(id);
            }
            return;
        }
        self.limiter
            .admit(now, self.current_frame, event, &mut self.records);
    }

    /// Keeps the table's index as the log tells it: a row from the socket's
    /// creation, its state from each change, gone when it closed (unless
    /// into a TIME-WAIT record) or its TIME-WAIT ended.
    fn index_event(&mut self, event: &Event) {
        match *event {
            Event::SocketCreated {
                id, quad, listener, ..
            } => {
                let state = if listener.is_some() {
                    TcpState::Listen
                } else {
                    TcpState::Closed
                };
                self.index.insert(id, quad, state);
            }
            Event::State { id, to, .. } => self.index.set_state(id, to),
            Event::Closed { id, quad, .. } => match self.demux.get(&quad) {
                Some(Slot::TimeWait(tw)) if tw.id == id => {
                    self.index.set_state(id, TcpState::TimeWait);
                }
                _ => {
                    self.index.remove(id);
                }
            },
            Event::TimeWaitExpired { id, .. } | Event::TimeWaitReused { id, .. } => {
                self.index.remove(id);
            }
            _ => {}
        }
    }

    /// The story of socket `id`: live, or among the recently closed.
    pub fn story(&self, id: SocketId) -> Option<&Story> {
        self.stories.get(id)
    }

    /// Starts keeping every packet for a capture file (see
    /// [`take_capture`](Self::take_capture)); events then carry frame numbers.
    pub fn enable_capture(&mut self) {
        self.capture.get_or_insert_with(Vec::new);
    }

    /// Moves the captured packets, in processing order, into `out`.
    pub fn take_capture(&mut self, out: &mut Vec<Captured>) {
        if let Some(c) = self.capture.as_mut() {
            out.append(c);
        }
    }

    /// Numbers a packet and, when capturing, keeps a copy.
    fn capture_packet(&mut self, now: Instant, inbound: bool, data: &[u8]) -> Option<u64> {
        let cap = self.capture.as_mut()?;
        self.frames += 1;
        cap.push(Captured {
            ts: now,
            frame: self.frames,
            inbound,
            data: data.to_vec(),
        });
        Some(self.frames)
    }

    /// Queues a packet for the device.
    fn transmit(&mut self, now: Instant, mut packet: Vec<u8>) -> Option<u64> {
        segment::align_timestamp(&mut packet);
        let frame = self.capture_packet(now, false, &packet);
        self.stats.packets_out += 1;
        self.tx.push_back(packet);
        frame
    }

    // ----- outputs -------------------------------------------------------

    /// Whether packets wait to be written to the device.
    pub fn has_transmit(&self) -> bool {
        !self.tx.is_empty()
    }

    /// The next packet to write to the device.
    pub fn take_transmit(&mut self) -> Option<Vec<u8>> {
        self.tx.pop_front()
    }

    /// Moves the recorded events into `out`.
    pub fn drain_events(&mut self, out: &mut Vec<Record>) {
        out.append(&mut self.records);
    }

    /// Moves the sockets and listeners whose readiness may have changed into `out`.
    pub fn drain_ready(&mut self, out: &mut Vec<Ready>) {
        out.append(&mut self.ready);
    }

    /// Whether events or captured packets are waiting to be written out.
    pub fn has_records(&self) -> bool {
        !self.records.is_empty() || self.capture.as_ref().is_some_and(|c| !c.is_empty())
    }

    /// When [`poll_timers`](Self::poll_timers) should next be called.
    pub fn poll_at(&self) -> Option<Instant> {
        self.timers.next()
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Live sockets (not counting TIME-WAIT records).
    pub fn socket_count(&self) -> usize {
        self.conns.values().filter(|c| c.sockets.is_some()).count()
    }

    // ----- inputs: packets and time ------------------------------------------
}

/// Drops up to `max` received bytes from `socket`, from both pieces of its
/// ring; returns how many.
fn drop_received(socket: &mut tcp::Socket<'static>, max: usize) -> usize {
    let mut n = 0;
    for _ in 0..2 {
        let left = max - n;
        n += socket
            .recv(|b| {
                let k = b.len().min(left);
                (k, k)
            })
            .unwrap_or(0);
    }
    n
}
