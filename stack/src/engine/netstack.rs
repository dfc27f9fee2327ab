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
//! # Where smoltcp and Linux differ, and what this layer does about it
//!
//! * TIME-WAIT is ours (`timewait`): a compact record that lets a newer SYN
//!   reuse the 4-tuple, where smoltcp would drop it for 10 s.
//! * A socket in SYN-RECEIVED that receives a reset falls back to LISTEN in
//!   smoltcp; here it is freed silently (its listener is ours, not the socket).
//! * SYN-RECEIVED expires on our own timer (`NetConfig::syn_timeout`) and the
//!   socket is freed without a reset.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr};

use etherparse::PacketBuilder;
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp::{self, State as TcpState};
use smoltcp::time::Instant;
use smoltcp::wire::{IpAddress, IpListenEndpoint};

use crate::config::{NetConfig, Overflow, SOMAXCONN};
use crate::engine::buffers::ConnSockets;
use crate::engine::driver::Engine;
use crate::engine::timers::Timers;
use crate::observe::event::{
    Closer, DropReason, Event, RateLimiter, Record, RstReason, SynDropReason,
};
use crate::observe::story::{Stories, Story};
use crate::transport::demux::{Demux, Slot};
use crate::transport::listener::{Listener, Listeners};
use crate::transport::nagle::{self, Nagle};
use crate::transport::ports::{PortChooser, Purpose, Rejection};
use crate::transport::syncookie::{self, Flood, KeySource, SynCookies};
use crate::transport::timewait::{self, TimeWait};
use crate::transport::udp::Udp;
use crate::transport::window::RecvWindow;
use crate::wire::quad::{IdMap, Quad, SocketId};
use crate::wire::segment::{self, Inbound, Number, Segment};

/// Something whose readiness may have changed: wake whoever waits on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ready {
    Socket(SocketId),
    Listener(SocketId),
    /// A sink's end (see [`NetStack::sink`]): only its state changes.
    Sink(SocketId),
}

pub use crate::transport::reuseport::ListenError;

use crate::observe::table::{self, TableIndex};
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
    accepted_by: Option<String>,
    served_by: Option<String>,
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

    /// A packet arrived from the device.
    pub fn receive(&mut self, now: Instant, packet: &[u8]) {
        self.receive_with(now, packet, true);
    }

    /// [`NetStack::receive`] for a packet whose TCP checksum the caller has
    /// just computed itself (the kernel's partial checksums, completed by
    /// `gso::received`): it is not verified again.
    pub fn receive_checksummed(&mut self, now: Instant, packet: &[u8]) {
        self.receive_with(now, packet, false);
    }

    fn receive_with(&mut self, now: Instant, packet: &[u8], verify: bool) {
        self.stats.packets_in += 1;
        self.current_frame = self.capture_packet(now, true, packet);
        self.classify_and_handle(now, packet, verify);
        self.current_frame = None;
    }

    fn classify_and_handle(&mut self, now: Instant, packet: &[u8], verify: bool) {
        let local = segment::Local {
            v4: self.cfg.addr,
            v6: self.cfg.addr6,
        };
        match segment::classify_with(packet, local, verify) {
            Inbound::Drop(reason) => {
                self.stats.packets_dropped += 1;
                if reason == DropReason::Fragment {
                    self.stats.fragments_dropped += 1;
                }
                if reason != DropReason::Multicast {
                    self.emit(now, Event::PacketDropped { reason, quad: None });
                }
            }
            Inbound::Engine => self.answer_by_engine(now, packet),
            Inbound::Ping => {
                self.stats.pings += 1;
                self.answer_by_engine(now, packet);
            }
            Inbound::Udp(quad) => self.on_datagram(now, quad, packet),
            Inbound::Tcp(seg) => self.on_segment(now, &seg, packet),
        }
    }

    /// Lets the engine answer a packet that needs no socket (echo requests).
    fn answer_by_engine(&mut self, now: Instant, packet: &[u8]) {
        self.engine
            .ingress(now, packet, &mut self.no_sockets, &mut self.out);
        self.flush_out(now, None, None);
    }

    /// A UDP datagram: to the socket bound to its port (a group member by
    /// sender), or an ICMP port unreachable.
    fn on_datagram(&mut self, now: Instant, quad: Quad, packet: &[u8]) {
        self.stats.datagrams_in += 1;
        let Some(id) = self.udp.pick(&quad) else {
            if self.udp.may_send_unreachable(now) {
                self.stats.port_unreachable += 1;
                self.emit(now, Event::PortUnreachable { quad });
                self.answer_by_engine(now, packet);
            }
            return;
        };
        let Some(sock) = self.udp.get_mut(id) else {
            return;
        };
        self.engine
            .ingress(now, packet, &mut sock.sockets, &mut self.out);
        let first = sock.note_sender(quad.remote);
        self.flush_out(now, None, None);
        if first {
            self.emit(now, Event::UdpFlow { id, quad });
        }
        self.ready.push(Ready::Socket(id));
    }

    /// Runs every timer that is due.
    pub fn poll_timers(&mut self, now: Instant) {
        while let Some(key) = self.timers.pop_due(now) {
            match key {
                TimerKey::Conn(id) => self.on_conn_timer(now, id),
                TimerKey::TimeWait(quad) => self.on_time_wait_timer(now, quad),
                TimerKey::Flood(listener) => self.on_flood_timer(now, listener),
            }
        }
        self.limiter.flush(now, &mut self.records);
    }

    fn on_segment(&mut self, now: Instant, seg: &Segment, packet: &[u8]) {
        match self.demux.get(&seg.quad) {
            Some(Slot::Conn(id)) => {
                let id = *id;
                self.deliver(now, id, seg, packet);
            }
            Some(Slot::TimeWait(tw)) => {
                let action = tw.on_segment(seg);
                self.on_time_wait_segment(now, seg, packet, action);
            }
            None if seg.is_bare_syn() => self.on_syn(now, seg, packet),
            None if seg.ack && !seg.syn && !seg.rst && self.cookies.active(now) => {
                self.on_cookie_ack(now, seg, packet)
            }
            None => {
                let reason = if self.listeners.has_port(seg.quad.local.port()) {
                    RstReason::NoConnection
                } else {
                    RstReason::NoListener
                };
                self.answer_without_socket(now, seg, packet, reason);
            }
        }
    }

    /// Lets the engine answer a segment that belongs to no socket (a reset).
    fn answer_without_socket(
        &mut self,
        now: Instant,
        seg: &Segment,
        packet: &[u8],
        reason: RstReason,
    ) {
        self.rst_reason = Some(reason);
        self.engine
            .ingress(now, packet, &mut self.no_sockets, &mut self.out);
        self.flush_out(now, None, Some(seg.quad));
        self.rst_reason = None;
    }

    /// Answers a SYN with a cookie: a SYN-ACK and nothing kept.
    fn send_cookie(&mut self, now: Instant, seg: &Segment, listener: SocketId, local: SocketAddr) {
        let quad = seg.quad;
        let mss = syncookie::client_mss(&seg.options, quad.local.is_ipv6(), self.cfg.mtu);
        let (cookie, mss) = self.cookies.make(now, &quad, seg.seq, mss);
        let packet = syncookie::syn_ack(&quad, cookie, seg.seq, mss);
        if packet.is_empty() {
            return;
        }
        self.stats.cookies_sent += 1;
        self.transmit(now, packet);
        // One event when a flood starts and one when it ends, not one per
        // cookie: a flood is hundreds of thousands of them.
        let flood = self.floods.entry(listener).or_insert(Flood {
            local,
            started: now,
            last: now,
            sent: 0,
            validated: 0,
            rejected: 0,
        });
        flood.sent += 1;
        flood.last = now;
        if flood.sent == 1 {
            self.timers.set(
                TimerKey::Flood(listener),
                Some(now + syncookie::FLOOD_QUIET),
            );
            self.emit(
                now,
                flood_event(listener, &self.floods[&listener], "start", now),
            );
        }
    }

    fn on_flood_timer(&mut self, now: Instant, listener: SocketId) {
        let Some(flood) = self.floods.get(&listener) else {
            return;
        };
        let over = flood.last + syncookie::FLOOD_QUIET;
        if now < over {
            self.timers.set(TimerKey::Flood(listener), Some(over));
            return;
        }
        if let Some(flood) = self.floods.remove(&listener) {
            self.emit(now, flood_event(listener, &flood, "end", now));
        }
    }

    /// An ACK for a 4-tuple with no connection, while cookies are out: one
    /// that returns a good cookie becomes the connection its SYN asked for;
    /// any other is answered with a reset, as Linux does, and leaves nothing.
    fn on_cookie_ack(&mut self, now: Instant, seg: &Segment, packet: &[u8]) {
        let quad = seg.quad;
        let listener_id = self.listeners.pick(&quad);
        let checked = self.cookies.check(
            now,
            &quad,
            seg.seq.wrapping_sub(1),
            seg.ack_number.wrapping_sub(1),
        );
        let (Some(listener_id), Ok(accepted)) = (listener_id, checked) else {
            let reason = if let Some(l) = listener_id {
                self.stats.cookies_rejected += 1;
                if let Some(f) = self.floods.get_mut(&l) {
                    f.rejected += 1;
                }
                RstReason::NoConnection
            } else {
                RstReason::NoListener
            };
            self.answer_without_socket(now, seg, packet, reason);
            return;
        };
        let room = self
            .listeners
            .get(listener_id)
            .is_some_and(|l| !l.accept_queue_full());
        let made = (room && self.conns.len() < self.cfg.max_sockets)
            .then(|| Engine::new_socket(self.cfg.rx_buffer, self.cfg.tx_buffer))
            .flatten();
        let Some(made) = made else {
            // No room: dropped, as the completing ACK of a full accept queue
            // is; the client retransmits and its cookie is still good.
            self.stats.handshakes_held += 1;
            return;
        };
        self.stats.cookies_validated += 1;
        if let Some(f) = self.floods.get_mut(&listener_id) {
            f.validated += 1;
        }
        let cookie = seg.ack_number.wrapping_sub(1);
        let (syn, syn_packet) = syncookie::rebuilt_syn(seg, accepted.mss);
        if let Some(id) = self.open_passive(now, listener_id, made, &syn, &syn_packet, Some(cookie))
        {
            // The engine's SYN-ACK now, also within a batch (where it would
            // wait for the batch's end): it tells the shift the ACK needs.
            self.egress(now, id);
            self.flush_out(now, Some(id), Some(quad));
            self.deliver(now, id, seg, packet);
            // Made for this ACK alone: if the engine did not take it as the
            // end of the handshake, nothing is kept (the SYN queue is full).
            if self
                .conns
                .get(&id)
                .is_some_and(|c| c.owner == Owner::SynQueue)
            {
                self.free(now, id, Closer::Reset);
            }
        }
    }

    /// A SYN for a 4-tuple with no connection.
    fn on_syn(&mut self, now: Instant, seg: &Segment, packet: &[u8]) {
        let quad = seg.quad;
        let Some(listener_id) = self.listeners.pick(&quad) else {
            self.answer_without_socket(now, seg, packet, RstReason::NoListener);
            return;
        };
        self.stats.syns += 1;
        self.emit(
            now,
            Event::Syn {
                quad,
                isn: seg.seq,
                options: seg.options,
            },
        );
        let Some(listener) = self.listeners.get(listener_id) else {
            return;
        };
        // A full SYN queue answers with a cookie and keeps nothing (Linux's
        // tcp_syncookies=1); an accept queue that is full drops the SYN as
        // Linux does, cookie or not: there would be no room for the connection.
        let queue_full = listener.syn_queue.len() >= self.cfg.syn_queue_cap;
        let cookie = match self.cfg.syn_cookies {
            syncookie::Mode::Auto => queue_full,
            syncookie::Mode::Always => true,
            syncookie::Mode::Never => false,
        };
        if cookie && !listener.accept_queue_full() {
            let local = listener.local;
            self.send_cookie(now, seg, listener_id, local);
            return;
        }
        // With cookies off, a full SYN queue makes room by evicting its
        // oldest half-open connection: under a SYN flood new clients keep
        // getting in while the flood's entries age out.
        let evict = (listener.syn_queue.len() >= self.cfg.syn_queue_cap)
            .then(|| listener.syn_queue.first().copied())
            .flatten();
        if let Some(oldest) = evict
            && !listener.accept_queue_full()
        {
            self.free(now, oldest, Closer::Evicted);
        }
        let Some(listener) = self.listeners.get(listener_id) else {
            return;
        };
        let drop = if listener.accept_queue_full() {
            Some(SynDropReason::AcceptQueueFull)
        } else if listener.syn_queue.len() >= self.cfg.syn_queue_cap {
            Some(SynDropReason::SynQueueFull)
        } else if self.conns.len() >= self.cfg.max_sockets {
            Some(SynDropReason::SocketLimit)
        } else {
            None
        };
        // Out of memory for its buffers is a limit on sockets too.
        let made = match drop {
            None => Engine::new_socket(self.cfg.rx_buffer, self.cfg.tx_buffer)
                .ok_or(SynDropReason::SocketLimit),
            Some(reason) => Err(reason),
        };
        let (sockets, handle) = match made {
            Ok(made) => made,
            Err(reason) => {
                self.stats.syns_dropped += 1;
                self.emit(now, Event::SynDropped { quad, reason });
                return;
            }
        };
        self.open_passive(now, listener_id, (sockets, handle), seg, packet, None);
    }

    /// A new socket for the 4-tuple of `seg` (a SYN, real or rebuilt from a
    /// cookie: then `cookie` is the ISN the peer was given), in `listener`'s
    /// SYN queue, and the SYN delivered to it.
    fn open_passive(
        &mut self,
        now: Instant,
        listener_id: SocketId,
        (mut sockets, handle): (ConnSockets, SocketHandle),
        seg: &Segment,
        packet: &[u8],
        cookie: Option<u32>,
    ) -> Option<SocketId> {
        let quad = seg.quad;
        let port = quad.local.port();
        let listener_addr = self.listeners.get(listener_id)?.local;
        let id = SocketId(self.next_id);
        self.next_id += 1;
        let endpoint = IpListenEndpoint {
            addr: Some(IpAddress::from(quad.local.ip())),
            port,
        };
        if sockets
            .get_mut::<tcp::Socket>(handle)
            .listen(endpoint)
            .is_err()
        {
            return None;
        }
        if !self.demux.insert_conn(quad, id) {
            return None;
        }
        let mut nagle = Nagle::default();
        nagle.handshake(&seg.options, self.cfg.mtu, quad.local.is_ipv6());
        self.conns.insert(
            id,
            Conn {
                quad,
                sockets: Some(sockets),
                handle,
                state: TcpState::Listen,
                owner: Owner::SynQueue,
                listener: Some(listener_id),
                created: now,
                closer: None,
                reset: false,
                peer_tsval: seg.tsval,
                last_ack: None,
                read_closed: false,
                accepted_by: None,
                served_by: None,
                orphaned_at: None,
                window: RecvWindow::default(),
                snd_nxt: None,
                egress_pending: false,
                read_total: 0,
                sunk: None,
                nagle,
                cookie,
                seq_shift: 0,
            },
        );
        if let Some(l) = self.listeners.get_mut(listener_id) {
            l.syn_queue.insert(id);
        }
        self.stories.begin(id, quad);
        self.stats.sockets_created += 1;
        self.emit(
            now,
            Event::SocketCreated {
                id,
                quad,
                listener: Some((listener_id, listener_addr)),
                cookie: cookie.is_some(),
            },
        );
        self.deliver(now, id, seg, packet);
        // The engine may refuse a SYN our parser let through (SYN with FIN,
        // a malformed option): the socket is still listening. Free it.
        if self
            .conns
            .get_mut(&id)
            .and_then(|c| c.socket().map(|s| s.state()))
            == Some(TcpState::Listen)
        {
            self.stats.packets_dropped += 1;
            self.free(now, id, Closer::Reset);
            return None;
        }
        Some(id)
    }

    /// A segment for a live connection.
    fn deliver(&mut self, now: Instant, id: SocketId, seg: &Segment, packet: &[u8]) {
        self.stories.segment(id, now, true, seg);
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        // The ACK that would complete a handshake while the accept queue is full.
        if conn.state == TcpState::SynReceived && seg.ack && !seg.syn && !seg.rst {
            let full = conn
                .listener
                .and_then(|l| self.listeners.get(l))
                .is_some_and(|l| l.accept_queue_full());
            if full {
                let quad = conn.quad;
                match self.cfg.overflow {
                    Overflow::Drop => {
                        self.stats.handshakes_held += 1;
                        self.emit(now, Event::HandshakeHeld { id, quad });
                    }
                    Overflow::Rst => self.abort(now, id, RstReason::AcceptQueueOverflow),
                }
                return;
            }
        }
        if seg.tsval.is_some() {
            conn.peer_tsval = seg.tsval;
        }
        // An orphan whose peer still answers is making progress (a long
        // response through a lossy link): its timeout counts from now.
        if conn.orphaned_at.is_some() && seg.ack && !seg.rst {
            conn.orphaned_at = Some(now);
        }
        if seg.syn && seg.ack && conn.state == TcpState::SynSent {
            conn.window.peer_syn(seg);
            conn.nagle
                .handshake(&seg.options, self.cfg.mtu, conn.quad.local.is_ipv6());
        }
        if seg.ack && !seg.rst {
            conn.nagle.acked(seg.ack_number, conn.snd_nxt);
        }
        let challenge = challenge(conn, seg);
        let past_edge = match synchronized(conn.state) && challenge.is_none() {
            true => {
                let consumed = conn.consumed();
                conn.window.ack_past_edge(seg, packet, consumed)
            }
            false => None,
        };
        let Some(sockets) = conn.sockets.as_mut() else {
            return;
        };
        // The engine's sequence space, for a connection made from a cookie.
        let shift = conn.seq_shift;
        if let Some((reason, probe)) = challenge {
            // RFC 5961: only a reset at exactly the next expected sequence
            // number closes the connection (3.2); any other one, and any SYN
            // (4.2), gets a challenge ACK instead, which the engine
            // rate-limits to one per second. A peer that really lost the
            // connection answers it with an exact reset; a blind attacker
            // cannot.
            self.engine
                .ingress(now, &engine_view(&probe, shift), sockets, &mut self.out);
            let quad = conn.quad;
            self.stats.packets_dropped += 1;
            self.emit(
                now,
                Event::PacketDropped {
                    reason,
                    quad: Some(quad),
                },
            );
            self.flush_out(now, Some(id), Some(quad));
            return;
        }
        if let Some(ack) = past_edge {
            // Its acknowledgement first, which smoltcp would not read (see
            // `window`); then the segment itself, which it refuses with an ACK.
            self.engine
                .ingress(now, &engine_view(&ack, shift), sockets, &mut self.out);
        }
        self.engine
            .ingress(now, &engine_view(packet, shift), sockets, &mut self.out);
        conn.sink_received();
        if seg.rst
            && let Some(s) = conn.socket()
            && matches!(s.state(), TcpState::Closed | TcpState::Listen)
        {
            conn.reset = true;
        }
        match self.batch.as_mut() {
            // Within a batch, what the engine answered at once (a reset, a
            // challenge) goes out now, the rest (the ACK for the data) once
            // for the whole batch: one ACK for many segments, as stock
            // smoltcp polling a device does, instead of one per two.
            Some(batch) => {
                if !conn.egress_pending {
                    conn.egress_pending = true;
                    batch.push(id);
                }
                let quad = conn.quad;
                self.flush_out(now, Some(id), Some(quad));
                // A change of state is reported in order, at once; timers
                // and waking the application wait for the batch's end,
                // where `settle` observes the connection again.
                let changed = self.conns.get_mut(&id).is_some_and(|c| {
                    let known = c.state;
                    c.socket().is_some_and(|s| s.state() != known)
                });
                if changed {
                    self.observe(now, id);
                }
            }
            None => self.settle(now, id),
        }
    }

    /// Starts a batch of received packets: until [`NetStack::end_batch`],
    /// the connections' replies that can wait (ACKs, window updates, data)
    /// are sent once per connection at the end instead of after each
    /// packet. The runtime batches what one wake-up reads from the device.
    pub fn begin_batch(&mut self) {
        if self.batch.is_none() {
            self.batch = Some(std::mem::take(&mut self.batch_spare));
        }
    }

    /// Ends a batch: every connection that received something sends what it
    /// has to.
    pub fn end_batch(&mut self, now: Instant) {
        let Some(mut ids) = self.batch.take() else {
            return;
        };
        for id in ids.drain(..) {
            if let Some(c) = self.conns.get_mut(&id) {
                c.egress_pending = false;
                self.settle(now, id);
            }
        }
        self.batch_spare = ids;
    }

    fn on_time_wait_segment(
        &mut self,
        now: Instant,
        seg: &Segment,
        packet: &[u8],
        action: timewait::Action,
    ) {
        let quad = seg.quad;
        match action {
            timewait::Action::Reuse => {
                if let Some(tw) = self.demux.remove_time_wait(&quad) {
                    self.timers.set(TimerKey::TimeWait(quad), None);
                    self.stats.time_wait_reused += 1;
                    self.emit(now, Event::TimeWaitReused { id: tw.id, quad });
                }
                self.on_syn(now, seg, packet);
            }
            timewait::Action::Ack => {
                let expires = now + self.cfg.time_wait;
                if let Some(Slot::TimeWait(tw)) = self.demux.get_mut(&quad) {
                    if seg.fin {
                        tw.expires = expires;
                    }
                    if let Some(ack) = tw.last_ack.clone() {
                        self.transmit(now, ack);
                    }
                }
                if seg.fin {
                    self.timers.set(TimerKey::TimeWait(quad), Some(expires));
                }
            }
            timewait::Action::Kill => {
                if let Some(tw) = self.demux.remove_time_wait(&quad) {
                    self.timers.set(TimerKey::TimeWait(quad), None);
                    self.emit(now, Event::TimeWaitExpired { id: tw.id, quad });
                }
            }
            timewait::Action::Ignore => {}
        }
    }

    fn on_conn_timer(&mut self, now: Instant, id: SocketId) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if matches!(conn.state, TcpState::SynReceived | TcpState::Listen)
            && now >= conn.created + self.cfg.syn_timeout
        {
            self.free(now, id, Closer::Timeout);
            return;
        }
        if conn
            .orphaned_at
            .is_some_and(|t| now >= t + self.cfg.orphan_timeout)
        {
            self.abort(now, id, RstReason::OrphanTimeout);
            return;
        }
        self.settle(now, id);
    }

    fn on_time_wait_timer(&mut self, now: Instant, quad: Quad) {
        let Some(Slot::TimeWait(tw)) = self.demux.get(&quad) else {
            return;
        };
        if tw.expires > now {
            let at = tw.expires;
            self.timers.set(TimerKey::TimeWait(quad), Some(at));
            return;
        }
        if let Some(tw) = self.demux.remove_time_wait(&quad) {
            self.emit(now, Event::TimeWaitExpired { id: tw.id, quad });
        }
    }

    // ----- after the engine ran ----------------------------------------------

    /// Sends what the connection's socket wants to send, then reports and
    /// acts on any change of state, and schedules its next timer.
    fn settle(&mut self, now: Instant, id: SocketId) {
        let Some(quad) = self.conns.get(&id).map(|c| c.quad) else {
            return;
        };
        self.egress(now, id);
        let frame = self.flush_out(now, Some(id), Some(quad));
        self.after_send(now, id, frame);
        self.observe(now, id);
    }

    /// Lets the connection's socket send what it has to, under the
    /// connection's Nagle rule.
    fn egress(&mut self, now: Instant, id: SocketId) {
        let rule = self.cfg.nagle;
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let handle = conn.handle;
        if let Some(sockets) = conn.sockets.as_mut() {
            conn.nagle
                .apply(rule, sockets.get_mut::<tcp::Socket>(handle));
            self.engine.egress(now, sockets, &mut self.out);
        }
    }

    /// Reports a partial segment that Nagle's algorithm began to hold, or
    /// the release of one; `frame` is the last data segment just sent (the
    /// one the held bytes would have followed, or the released bytes), and
    /// the event names it.
    fn after_send(&mut self, now: Instant, id: SocketId, frame: Option<u64>) {
        let rule = self.cfg.nagle;
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let Some(queued) = conn.socket().map(|s| s.send_queue()) else {
            return;
        };
        let quad = conn.quad;
        let event = match conn.nagle.after_send(now, rule, queued, conn.snd_nxt) {
            Some(nagle::Change::Held { bytes, until_ack }) => Event::NagleHeld {
                id,
                quad,
                bytes,
                until_ack,
                rule: rule.as_str(),
            },
            Some(nagle::Change::Released { bytes, held_us }) => Event::NagleReleased {
                id,
                quad,
                bytes,
                held_us,
            },
            None => return,
        };
        let cause = self.current_frame;
        self.current_frame = frame.or(cause);
        self.emit(now, event);
        self.current_frame = cause;
    }

    /// Moves what the engine transmitted to the transmit queue, reporting
    /// resets; returns the capture frame of the last segment with data.
    fn flush_out(&mut self, now: Instant, id: Option<SocketId>, quad: Option<Quad>) -> Option<u64> {
        if self.out.is_empty() {
            return None;
        }
        let mut last_data = None;
        let mut out = std::mem::take(&mut self.out);
        let closing = id
            .and_then(|id| self.conns.get_mut(&id))
            .and_then(|c| c.socket().map(|s| s.state()))
            .is_some_and(|s| {
                matches!(
                    s,
                    TcpState::FinWait1
                        | TcpState::FinWait2
                        | TcpState::Closing
                        | TcpState::TimeWait
                )
            });
        for mut packet in out.drain(..) {
            // A connection made from a cookie: its engine's ISN is not the
            // one the peer knows. Its SYN-ACK (the cookie already was one)
            // tells the difference and is not sent again.
            let mut sent_before = false;
            if let Some(c) = id.and_then(|id| self.conns.get_mut(&id)) {
                if let Some(cookie) = c.cookie
                    && let Some(f) = segment::outbound(&packet)
                    && f.syn
                {
                    c.seq_shift = cookie.wrapping_sub(f.seq_end.wrapping_sub(1));
                    c.cookie = None;
                    sent_before = true;
                }
                if c.seq_shift != 0 {
                    segment::shift_number(&mut packet, Number::Seq, c.seq_shift, false);
                }
            }
            let flags = segment::outbound(&packet);
            if let Some(id) = id {
                self.note_outbound(now, id, &packet, flags);
                if let (Some(f), Some(c)) = (flags, self.conns.get_mut(&id))
                    && !f.rst
                {
                    let consumed = c.consumed();
                    c.window.sent(&f, consumed);
                    let ahead = c
                        .snd_nxt
                        .is_none_or(|n| (f.seq_end.wrapping_sub(n) as i32) > 0);
                    let seq = f
                        .seq_end
                        .wrapping_sub(f.payload_len + u32::from(f.fin) + u32::from(f.syn));
                    c.nagle.sent(seq, f.payload_len, ahead, f.syn);
                    if ahead {
                        c.snd_nxt = Some(f.seq_end);
                    }
                }
            }
            if closing
                && flags.is_some_and(|f| !f.rst && !f.syn)
                && let Some(c) = id.and_then(|id| self.conns.get_mut(&id))
            {
                c.last_ack = Some(packet.clone());
            }
            let frame = match sent_before {
                true => None,
                false => self.transmit(now, packet),
            };
            if flags.is_some_and(|f| f.payload_len > 0) {
                last_data = frame.or(last_data);
            }
            if let (Some(f), Some(quad)) = (flags, quad)
                && f.rst
            {
                self.stats.resets_sent += 1;
                let reason = self.rst_reason.unwrap_or(RstReason::Engine);
                // Caused by the packet being processed, or (a reset the
                // application asked for) by nothing but itself.
                let cause = self.current_frame;
                self.current_frame = cause.or(frame);
                self.emit(now, Event::RstSent { quad, id, reason });
                self.current_frame = cause;
                if let Some(c) = id.and_then(|id| self.conns.get_mut(&id)) {
                    c.reset = true;
                }
            }
        }
        self.out = out;
        last_data
    }

    /// Adds an outgoing segment to the connection's story: parsed when the
    /// story keeps it (SYN, FIN, RST, handshake, teardown), else counted.
    fn note_outbound(
        &mut self,
        now: Instant,
        id: SocketId,
        packet: &[u8],
        flags: Option<segment::Outbound>,
    ) {
        let keep =
            flags.is_some_and(|f| f.syn || f.fin || f.rst) || self.stories.wants_outbound(id);
        if !keep {
            self.stories.count_outbound(id);
            return;
        }
        if let Inbound::Tcp(seg) = segment::classify_outbound(packet) {
            self.stories.segment(id, now, false, &seg);
        }
    }

    /// Reports a change of TCP state and moves the connection along its life.
    fn observe(&mut self, now: Instant, id: SocketId) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let Some(new) = conn.socket().map(|s| s.state()) else {
            return;
        };
        let old = conn.state;
        let quad = conn.quad;
        self.ready.push(Ready::Socket(id));
        if new != old {
            if conn.sunk.is_some() {
                self.ready.push(Ready::Sink(id));
            }
            conn.state = new;
            if conn.closer.is_none() {
                conn.closer = match new {
                    TcpState::FinWait1
                    | TcpState::FinWait2
                    | TcpState::Closing
                    | TcpState::TimeWait => Some(Closer::Local),
                    TcpState::CloseWait | TcpState::LastAck => Some(Closer::Remote),
                    _ => None,
                };
            }
            let listener = conn.listener;
            self.emit(
                now,
                Event::State {
                    id,
                    quad,
                    from: old,
                    to: new,
                },
            );
            match new {
                TcpState::Listen => {
                    // smoltcp turns a SYN-RECEIVED socket that got a reset back
                    // into a listener; the listener is ours, so free it.
                    self.free(now, id, Closer::Reset);
                    return;
                }
                TcpState::Closed => {
                    self.finish(now, id);
                    return;
                }
                TcpState::Established | TcpState::CloseWait if old == TcpState::SynReceived => {
                    if let Some(l) = listener.and_then(|l| self.listeners.get_mut(l)) {
                        l.established(id, now);
                        self.ready.push(Ready::Listener(l.id));
                    }
                    if let Some(c) = self.conns.get_mut(&id) {
                        c.owner = Owner::AcceptQueue;
                    }
                }
                _ => {}
            }
        }
        self.schedule(now, id);
    }

    /// Sets the connection's timer from the engine's wish and our own deadlines.
    fn schedule(&mut self, now: Instant, id: SocketId) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let Some(sockets) = conn.sockets.as_ref() else {
            self.timers.set(TimerKey::Conn(id), None);
            return;
        };
        let mut at = self.engine.poll_at(now, sockets);
        if conn.state == TcpState::TimeWait {
            // The engine's only remaining wish is its own TIME-WAIT timer:
            // replace the socket by our record.
            if at.is_none_or(|t| t > now + smoltcp::time::Duration::from_secs(1)) {
                self.enter_time_wait(now, id);
                return;
            }
        }
        let own = match (conn.state, conn.orphaned_at) {
            (TcpState::SynReceived | TcpState::Listen, _) => {
                Some(conn.created + self.cfg.syn_timeout)
            }
            (_, Some(t)) => Some(t + self.cfg.orphan_timeout),
            _ => None,
        };
        if let Some(expiry) = own {
            at = Some(at.map_or(expiry, |t| t.min(expiry)));
        }
        // Everything due was just sent: a deadline that is already past
        // would make `poll_timers` spin, so it waits a millisecond.
        let at = at.map(|t| t.max(now + smoltcp::time::Duration::from_millis(1)));
        self.timers.set(TimerKey::Conn(id), at);
    }

    fn enter_time_wait(&mut self, now: Instant, id: SocketId) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let last_ack = conn.last_ack.take();
        let rcv_nxt = last_ack
            .as_deref()
            .and_then(segment::outbound)
            .map_or(0, |o| o.ack_number);
        let expires = now + self.cfg.time_wait;
        let quad = conn.quad;
        let record = TimeWait {
            id,
            expires,
            rcv_nxt,
            ts_recent: conn.peer_tsval,
            last_ack,
        };
        conn.sockets = None;
        let keep = conn.owner == Owner::App;
        self.demux.enter_time_wait(quad, record);
        self.timers.set(TimerKey::Conn(id), None);
        self.timers.set(TimerKey::TimeWait(quad), Some(expires));
        self.emit(
            now,
            Event::Closed {
                id,
                quad,
                by: Closer::Local,
            },
        );
        if !keep {
            self.conns.remove(&id);
        }
    }

    /// The socket reached CLOSED: free the 4-tuple, and the socket unless the
    /// application (or an accept queue) still holds it.
    fn finish(&mut self, now: Instant, id: SocketId) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let quad = conn.quad;
        let by = if conn.reset {
            Closer::Reset
        } else {
            conn.closer.unwrap_or(Closer::Reset)
        };
        // Keep unread data readable for an application that still holds the socket.
        let unread = conn.socket().is_some_and(|s| s.recv_queue() > 0);
        if !(unread && !conn.reset && matches!(conn.owner, Owner::App | Owner::AcceptQueue)) {
            conn.sockets = None;
        }
        let owner = conn.owner;
        let listener = conn.listener;
        self.demux.remove_conn(&quad, id);
        self.timers.set(TimerKey::Conn(id), None);
        self.emit(now, Event::Closed { id, quad, by });
        match owner {
            Owner::SynQueue | Owner::Orphan => {
                if let Some(l) = listener.and_then(|l| self.listeners.get_mut(l)) {
                    l.remove(id);
                }
                self.conns.remove(&id);
            }
            Owner::AcceptQueue | Owner::App => {}
        }
    }

    /// Frees a connection without sending anything.
    fn free(&mut self, now: Instant, id: SocketId, by: Closer) {
        let Some(conn) = self.conns.remove(&id) else {
            return;
        };
        if let Some(l) = conn.listener.and_then(|l| self.listeners.get_mut(l)) {
            l.remove(id);
        }
        self.demux.remove_conn(&conn.quad, id);
        self.timers.set(TimerKey::Conn(id), None);
        self.emit(
            now,
            Event::Closed {
                id,
                quad: conn.quad,
                by,
            },
        );
    }

    /// Resets a connection (one RST to the peer) and reports why.
    fn abort(&mut self, now: Instant, id: SocketId, reason: RstReason) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        conn.reset = true;
        if let Some(s) = conn.socket() {
            s.abort();
        }
        self.rst_reason = Some(reason);
        self.settle(now, id);
        self.rst_reason = None;
    }

    // ----- the application's calls -------------------------------------------

    /// Opens a listening socket on `port`. A second listen on the same port
    /// fails with [`ListenError::AddrInUse`].
    pub fn listen(
        &mut self,
        now: Instant,
        port: u16,
        backlog: usize,
    ) -> Result<SocketId, ListenError> {
        self.open_listener(now, port, backlog, false)
    }

    /// Joins (or starts) the reuse-port group on `port`: every member must
    /// have joined this way; new connections are spread over the members by
    /// a hash of their 4-tuple.
    pub fn listen_reuse(
        &mut self,
        now: Instant,
        port: u16,
        backlog: usize,
    ) -> Result<SocketId, ListenError> {
        self.open_listener(now, port, backlog, true)
    }

    fn open_listener(
        &mut self,
        now: Instant,
        port: u16,
        backlog: usize,
        reuse: bool,
    ) -> Result<SocketId, ListenError> {
        let backlog = backlog.min(SOMAXCONN);
        let (id, local) = self.bind_socket(now, port, "address in use", |s, id, local| {
            s.listeners.add(Listener::new(id, local, backlog, reuse))
        })?;
        self.emit(
            now,
            Event::Listen {
                id,
                local,
                backlog,
                reuse,
            },
        );
        Ok(id)
    }

    /// What listening and UDP binding share: a port chosen for port 0, the
    /// new socket registered by `add` under the next id, and a
    /// `listen_failed` event when the port is taken.
    fn bind_socket(
        &mut self,
        now: Instant,
        port: u16,
        reason: &'static str,
        add: impl FnOnce(&mut NetStack, SocketId, SocketAddr) -> Result<(), ListenError>,
    ) -> Result<(SocketId, SocketAddr), ListenError> {
        let port = if port == 0 {
            self.bind_any_port(now)?
        } else {
            port
        };
        let local = SocketAddr::new(self.any_addr(), port);
        let id = SocketId(self.next_id);
        if let Err(e) = add(self, id, local) {
            if let ListenError::AddrInUse(_) = e {
                self.emit(now, Event::ListenFailed { local, reason });
            }
            return Err(e);
        }
        self.next_id += 1;
        Ok((id, local))
    }

    /// The `port_chosen` event for a choice of the port chooser.
    fn port_chosen(&self, quad: Quad, choice: &crate::transport::ports::Choice) -> Event {
        Event::PortChosen {
            quad,
            algorithm: self.cfg.port_algorithm.as_str(),
            tried: choice.tried,
            rejected: choice
                .rejected
                .iter()
                .map(|(p, why)| (*p, why.as_str()))
                .collect(),
        }
    }

    /// A listen on port 0: the stack chooses a free port, as a bind to port
    /// 0 does (odd ports first with the Linux-like algorithm).
    fn bind_any_port(&mut self, now: Instant) -> Result<u16, ListenError> {
        let local_ip = IpAddr::V4(self.cfg.addr);
        let any = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);
        let (demux, listeners, udp) = (&self.demux, &self.listeners, &self.udp);
        let choice = self
            .ports
            .choose(local_ip, any, Purpose::Bind, |p| {
                if listeners.has_port(p) || udp.has_port(p) {
                    Some(Rejection::Listener)
                } else if demux.port_in_use(p) {
                    Some(Rejection::InUse)
                } else {
                    None
                }
            })
            .map_err(|_| ListenError::NoFreePort)?;
        let event = self.port_chosen(
            Quad::new(SocketAddr::new(local_ip, choice.port), any),
            &choice,
        );
        self.emit(now, event);
        Ok(choice.port)
    }

    /// What a listening or bound socket's address shows: it takes every
    /// address of the stack, both families when IPv6 is on (like Linux's
    /// dual-stack `[::]` sockets).
    fn any_addr(&self) -> IpAddr {
        if self.cfg.addr6.is_some() {
            IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
        } else {
            IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
        }
    }

    /// The port a listener listens on (for a listen on port 0: the chosen one).
    pub fn listener_port(&self, listener: SocketId) -> Option<u16> {
        self.listeners.get(listener).map(|l| l.local.port())
    }

    /// Closes a listener, resetting every connection still queued on it.
    pub fn close_listener(&mut self, now: Instant, listener: SocketId) {
        let Some(listener) = self.listeners.remove(listener) else {
            return;
        };
        let queued = listener.queued();
        for &id in &queued {
            if let Some(c) = self.conns.get_mut(&id) {
                c.owner = Owner::Orphan;
            }
            self.abort(now, id, RstReason::ListenerClosed);
            // A socket already closed by its peer is freed here.
            if self
                .conns
                .get(&id)
                .is_some_and(|c| c.sockets.is_none() || c.state == TcpState::Closed)
            {
                self.conns.remove(&id);
            }
        }
        self.ready.push(Ready::Listener(listener.id));
        self.emit(
            now,
            Event::ListenClosed {
                id: listener.id,
                local: listener.local,
                reset: queued.len(),
            },
        );
    }

    /// Takes the oldest established connection from the listener's accept
    /// queue. `Ok(None)`: nothing to accept yet. `by` names the accepting
    /// thread in the events.
    pub fn accept(
        &mut self,
        now: Instant,
        listener: SocketId,
        by: Option<String>,
    ) -> io::Result<Option<(SocketId, Quad)>> {
        let Some(listener) = self.listeners.get_mut(listener) else {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the listener is closed",
            ));
        };
        // Skip entries whose connection is gone (none should be).
        let (id, queued_at, conn) = loop {
            let Some((id, queued_at)) = listener.accept_queue.pop_front() else {
                return Ok(None);
            };
            if self.conns.contains_key(&id) {
                let Some(conn) = self.conns.get_mut(&id) else {
                    return Ok(None);
                };
                break (id, queued_at, conn);
            }
        };
        conn.owner = Owner::App;
        conn.accepted_by = by.clone();
        let quad = conn.quad;
        let queued_us = (now - queued_at).total_micros();
        self.emit(
            now,
            Event::Accepted {
                id,
                quad,
                queued_us,
                by,
            },
        );
        Ok(Some((id, quad)))
    }

    /// Opens a connection to `remote` (an active open: SYN-SENT). Without
    /// `local_port` the stack chooses one (see `ports`); either way only the
    /// 4-tuple must be free, so one local port can serve several remotes.
    /// Completion is reported by [`connect_result`](Self::connect_result).
    pub fn connect(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        local_port: Option<u16>,
    ) -> io::Result<(SocketId, Quad)> {
        if !self.cfg.reaches_ip(remote.ip()) || remote.port() == 0 {
            return Err(io::Error::new(
                io::ErrorKind::NetworkUnreachable,
                format!(
                    "no route to {remote}: the stack reaches only its own subnet {}/{} \
                     (a default route needs --default-route)",
                    self.cfg.network(),
                    self.cfg.prefix_len
                ),
            ));
        }
        if self.conns.len() >= self.cfg.max_sockets {
            return Err(io::Error::other("socket limit reached"));
        }
        let Some(local_ip) = self.cfg.own_addr_for(remote.ip()) else {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "IPv6 is not enabled",
            ));
        };
        let quad_for = |port: u16| Quad::new(SocketAddr::new(local_ip, port), remote);
        let (port, choice_event) = match local_port {
            Some(0) | None => {
                let (demux, listeners) = (&self.demux, &self.listeners);
                let choice = self
                    .ports
                    .choose(local_ip, remote, Purpose::Connect, |p| {
                        taken(demux, listeners, &quad_for(p))
                    })
                    .map_err(|e| {
                        io::Error::new(
                            io::ErrorKind::AddrNotAvailable,
                            format!(
                                "no free local port towards {remote}: all {} candidates in {}-{} \
                                 are taken",
                                e.tried, self.cfg.port_range.lo, self.cfg.port_range.hi
                            ),
                        )
                    })?;
                (
                    choice.port,
                    self.port_chosen(quad_for(choice.port), &choice),
                )
            }
            Some(p) => {
                if let Some(why) = taken(&self.demux, &self.listeners, &quad_for(p)) {
                    return Err(io::Error::new(
                        io::ErrorKind::AddrInUse,
                        format!("cannot connect from port {p} to {remote}: {}", why.as_str()),
                    ));
                }
                let event = Event::PortChosen {
                    quad: quad_for(p),
                    algorithm: "explicit",
                    tried: 1,
                    rejected: Vec::new(),
                };
                (p, event)
            }
        };
        let quad = quad_for(port);
        let (mut sockets, handle) = Engine::new_socket(self.cfg.rx_buffer, self.cfg.tx_buffer)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::OutOfMemory,
                    "no memory for the connection's buffers: lower --buffer or close connections",
                )
            })?;
        self.engine
            .connect(
                sockets.get_mut::<tcp::Socket>(handle),
                (IpAddress::from(remote.ip()), remote.port()),
                port,
            )
            .map_err(|e| io::Error::other(format!("connect: {e}")))?;
        let id = SocketId(self.next_id);
        self.next_id += 1;
        self.demux.insert_conn(quad, id);
        // The full segment's size is known from the SYN-ACK (`deliver`).
        let nagle = Nagle::default();
        self.conns.insert(
            id,
            Conn {
                quad,
                sockets: Some(sockets),
                handle,
                state: TcpState::Closed,
                owner: Owner::App,
                listener: None,
                created: now,
                closer: None,
                reset: false,
                peer_tsval: None,
                last_ack: None,
                read_closed: false,
                accepted_by: None,
                served_by: None,
                orphaned_at: None,
                window: RecvWindow::default(),
                snd_nxt: None,
                egress_pending: false,
                read_total: 0,
                sunk: None,
                nagle,
                cookie: None,
                seq_shift: 0,
            },
        );
        self.stats.sockets_created += 1;
        self.stories.begin(id, quad);
        self.emit(now, choice_event);
        self.emit(
            now,
            Event::SocketCreated {
                id,
                quad,
                listener: None,
                cookie: false,
            },
        );
        self.settle(now, id);
        Ok((id, quad))
    }

    /// How an active open ended: `None` while the handshake is under way,
    /// `Some(Ok)` once established, `Some(Err)` if it was refused (a reset)
    /// or failed.
    pub fn connect_result(&mut self, id: SocketId) -> Option<io::Result<()>> {
        let conn = self.conns.get_mut(&id)?;
        let reset = conn.reset;
        match conn.socket().map(|s| s.state()) {
            Some(TcpState::SynSent) => None,
            Some(TcpState::Closed) | None if reset => Some(Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                "connection refused",
            ))),
            Some(TcpState::Closed) | None => Some(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "connection failed",
            ))),
            Some(_) => Some(Ok(())),
        }
    }

    /// Records which thread or worker serves the connection (for the table).
    pub fn set_served_by(&mut self, id: SocketId, name: String) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.served_by = Some(name);
        } else if let Some(u) = self.udp.get_mut(id) {
            u.served_by = Some(name);
        }
    }

    /// Reads into `buf`. `Ok(0)` is the end of the stream;
    /// `ErrorKind::WouldBlock` means wait for readiness.
    pub fn recv(&mut self, now: Instant, id: SocketId, buf: &mut [u8]) -> io::Result<usize> {
        let max = buf.len();
        self.take_received(now, id, max, |socket| socket.recv_slice(buf).unwrap_or(0))
    }

    /// Drops up to `max` received bytes without copying them (what `recv`
    /// with `MSG_TRUNC` does on a Linux TCP socket); returns how many.
    pub fn discard(&mut self, now: Instant, id: SocketId, max: usize) -> io::Result<usize> {
        self.take_received(now, id, max, |socket| drop_received(socket, max))
    }

    /// Makes the connection a sink: from now on what arrives is dropped
    /// where it arrives, as the engine takes it in, so that no application
    /// thread has to wake for it (a discard service). Returns how many
    /// bytes it dropped once the peer has finished sending (its FIN);
    /// `WouldBlock` until then, when a change of state wakes
    /// [`Ready::Sink`]. A reset is an error, as for `recv`.
    pub fn sink(&mut self, now: Instant, id: SocketId) -> io::Result<u64> {
        let conn = self.conns.get_mut(&id).ok_or_else(not_connected)?;
        conn.sunk.get_or_insert(0);
        conn.sink_received();
        let total = conn.sunk.unwrap_or(0);
        // Nothing is left to take: what `recv` would say now is the end of
        // the stream, a reset, or to wait.
        let end = self.take_received(now, id, usize::MAX, |_| 0);
        // The window the dropped bytes opened goes out.
        self.settle(now, id);
        end.map(|_| total)
    }

    /// The bytes a sink has dropped so far (`None` if it is not one).
    pub fn sunk(&self, id: SocketId) -> Option<u64> {
        self.conns.get(&id).and_then(|c| c.sunk)
    }

    /// The reading half of `recv` and `discard`: `take` removes bytes from
    /// a socket that has some and says how many.
    fn take_received(
        &mut self,
        now: Instant,
        id: SocketId,
        max: usize,
        take: impl FnOnce(&mut tcp::Socket<'static>) -> usize,
    ) -> io::Result<usize> {
        let conn = self.conns.get_mut(&id).ok_or_else(not_connected)?;
        if conn.read_closed || max == 0 {
            return Ok(0);
        }
        let reset = conn.reset;
        let Some(socket) = conn.socket() else {
            return if reset { Err(reset_error()) } else { Ok(0) };
        };
        if socket.can_recv() {
            let n = take(socket);
            conn.read_total = conn.read_total.wrapping_add(n as u32);
            self.settle(now, id);
            return Ok(n);
        }
        if reset || socket.state() == TcpState::Closed {
            return if reset { Err(reset_error()) } else { Ok(0) };
        }
        if !socket.may_recv() {
            return Ok(0);
        }
        Err(io::ErrorKind::WouldBlock.into())
    }

    /// Queues bytes for sending; returns how many were taken.
    /// `ErrorKind::WouldBlock` means the send buffer is full.
    pub fn send(&mut self, now: Instant, id: SocketId, data: &[u8]) -> io::Result<usize> {
        let conn = self.conns.get_mut(&id).ok_or_else(not_connected)?;
        let reset = conn.reset;
        let Some(socket) = conn.socket() else {
            return Err(if reset {
                reset_error()
            } else {
                io::ErrorKind::BrokenPipe.into()
            });
        };
        if !socket.may_send() {
            return Err(if reset {
                reset_error()
            } else {
                io::ErrorKind::BrokenPipe.into()
            });
        }
        if data.is_empty() {
            return Ok(0);
        }
        if !socket.can_send() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = socket.send_slice(data).unwrap_or(0);
        self.settle(now, id);
        Ok(n)
    }

    /// `TCP_NODELAY`: with `on`, a partial segment never waits for an
    /// acknowledgement (Nagle's algorithm off, see `nagle`); what was held
    /// leaves now, as in Linux.
    pub fn set_nodelay(&mut self, now: Instant, id: SocketId, on: bool) -> io::Result<()> {
        let conn = self.conns.get_mut(&id).ok_or_else(not_connected)?;
        conn.nagle.set_nodelay(on);
        self.settle(now, id);
        Ok(())
    }

    /// Whether `TCP_NODELAY` is set.
    pub fn nodelay(&self, id: SocketId) -> io::Result<bool> {
        let conn = self.conns.get(&id).ok_or_else(not_connected)?;
        Ok(conn.nagle.nodelay())
    }

    /// Whether a read would not block (data, end of stream, or an error).
    pub fn readable(&mut self, id: SocketId) -> bool {
        if self.udp.get_mut(id).is_some() {
            return self.udp_readable(id);
        }
        match self.conns.get_mut(&id) {
            None => true,
            Some(c) if c.read_closed || c.reset => true,
            Some(c) => c
                .socket()
                .is_none_or(|s| s.can_recv() || !s.may_recv() || s.state() == TcpState::Closed),
        }
    }

    /// Whether a write would not block (room, or an error).
    pub fn writable(&mut self, id: SocketId) -> bool {
        if self.udp.get_mut(id).is_some() {
            return self.udp_writable(id);
        }
        match self.conns.get_mut(&id) {
            None => true,
            Some(c) => c.socket().is_none_or(|s| s.can_send() || !s.may_send()),
        }
    }

    /// Whether the listener has a connection to accept (or is gone).
    pub fn acceptable(&self, listener: SocketId) -> bool {
        self.listeners
            .get(listener)
            .is_none_or(|l| !l.accept_queue.is_empty())
    }

    /// Half-closes: `Write` sends FIN after pending data, `Read` makes
    /// further reads return end of stream.
    pub fn shutdown(
        &mut self,
        now: Instant,
        id: SocketId,
        how: std::net::Shutdown,
    ) -> io::Result<()> {
        let conn = self.conns.get_mut(&id).ok_or_else(not_connected)?;
        if matches!(how, std::net::Shutdown::Read | std::net::Shutdown::Both) {
            conn.read_closed = true;
        }
        if matches!(how, std::net::Shutdown::Write | std::net::Shutdown::Both)
            && let Some(s) = conn.socket()
        {
            s.close();
        }
        self.settle(now, id);
        Ok(())
    }

    /// The application let go of the socket: close it gracefully (FIN), or
    /// with a reset if unread data remains, as Linux does.
    pub fn close(&mut self, now: Instant, id: SocketId) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        conn.owner = Owner::Orphan;
        conn.orphaned_at = Some(now);
        let Some(socket) = conn.socket() else {
            self.conns.remove(&id);
            return;
        };
        if socket.state() == TcpState::Closed {
            self.conns.remove(&id);
            return;
        }
        if socket.recv_queue() > 0 {
            self.abort(now, id, RstReason::UnreadData);
        } else {
            socket.close();
            self.settle(now, id);
        }
    }

    /// Resets the connection.
    pub fn abort_socket(&mut self, now: Instant, id: SocketId) {
        self.abort(now, id, RstReason::Aborted);
    }

    // ----- UDP ------------------------------------------------------------------

    /// Binds a UDP socket to `port` (0: the stack chooses); with `reuse`,
    /// joins the port's reuse-port group.
    pub fn udp_bind(
        &mut self,
        now: Instant,
        port: u16,
        reuse: bool,
    ) -> Result<SocketId, ListenError> {
        let (id, local) = self.bind_socket(now, port, "udp address in use", |s, id, local| {
            s.udp.bind(id, local, reuse)
        })?;
        self.emit(now, Event::UdpBind { id, local, reuse });
        Ok(id)
    }

    /// The address a UDP socket is bound to.
    pub fn udp_local(&mut self, id: SocketId) -> Option<SocketAddr> {
        self.udp.get_mut(id).map(|s| s.local)
    }

    /// Sends one datagram to `to`. `WouldBlock` when the send buffer is full.
    pub fn udp_send_to(
        &mut self,
        now: Instant,
        id: SocketId,
        data: &[u8],
        to: SocketAddr,
    ) -> io::Result<usize> {
        if !self.cfg.reaches_ip(to.ip()) || to.port() == 0 {
            return Err(io::Error::new(
                io::ErrorKind::NetworkUnreachable,
                format!("no route to {to}: the stack reaches only its own subnets"),
            ));
        }
        // No fragmentation: a datagram must fit one packet.
        let headers = if to.is_ipv4() { 20 + 8 } else { 40 + 8 };
        let max = self.cfg.mtu.saturating_sub(headers);
        if data.len() > max {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a datagram of {} bytes does not fit one packet (at most {max})",
                    data.len()
                ),
            ));
        }
        let sock = self.udp.get_mut(id).ok_or_else(not_connected)?;
        let endpoint = smoltcp::wire::IpEndpoint::new(IpAddress::from(to.ip()), to.port());
        match sock.socket().send_slice(data, endpoint) {
            Ok(()) => {}
            Err(smoltcp::socket::udp::SendError::BufferFull) => {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{e}"))),
        }
        sock.sent += 1;
        self.engine.egress(now, &mut sock.sockets, &mut self.out);
        self.flush_out(now, None, None);
        Ok(data.len())
    }

    /// Connects a UDP socket to `peer`: it then receives only from `peer`,
    /// and `udp_send_to` may name `peer` implicitly (see `udp_peer`).
    pub fn udp_connect(&mut self, id: SocketId, peer: SocketAddr) -> io::Result<()> {
        if !self.cfg.reaches_ip(peer.ip()) || peer.port() == 0 {
            return Err(io::Error::new(
                io::ErrorKind::NetworkUnreachable,
                format!("no route to {peer}"),
            ));
        }
        self.udp.connect(id, peer).map_err(io::Error::from)
    }

    /// The peer of a connected UDP socket.
    pub fn udp_peer(&mut self, id: SocketId) -> Option<SocketAddr> {
        self.udp.get_mut(id).and_then(|s| s.peer)
    }

    /// Receives one datagram. `WouldBlock` when none is waiting.
    pub fn udp_recv_from(
        &mut self,
        id: SocketId,
        buf: &mut [u8],
    ) -> io::Result<(usize, SocketAddr)> {
        let sock = self.udp.get_mut(id).ok_or_else(not_connected)?;
        // As std::net: a datagram longer than `buf` is truncated.
        match sock.socket().recv().map(|(data, meta)| {
            let n = data.len().min(buf.len());
            buf[..n].copy_from_slice(&data[..n]);
            (n, meta)
        }) {
            Ok((n, meta)) => {
                let from = SocketAddr::new(IpAddr::from(meta.endpoint.addr), meta.endpoint.port);
                Ok((n, from))
            }
            Err(smoltcp::socket::udp::RecvError::Exhausted) => {
                Err(io::ErrorKind::WouldBlock.into())
            }
            Err(e) => Err(io::Error::other(format!("{e}"))),
        }
    }

    /// Whether a datagram is waiting.
    pub fn udp_readable(&mut self, id: SocketId) -> bool {
        self.udp.get_mut(id).is_none_or(|s| s.socket().can_recv())
    }

    /// Whether a datagram can be queued for sending.
    pub fn udp_writable(&mut self, id: SocketId) -> bool {
        self.udp.get_mut(id).is_none_or(|s| s.socket().can_send())
    }

    /// Closes a UDP socket.
    pub fn udp_close(&mut self, now: Instant, id: SocketId) {
        if let Some(s) = self.udp.close(id) {
            self.emit(
                now,
                Event::UdpClosed {
                    id,
                    local: s.local,
                    received: s.received,
                    sent: s.sent,
                },
            );
        }
    }

    // ----- shutdown of the whole stack -----------------------------------------

    /// First step of a clean stop: close every listener (resetting what is
    /// queued) and send FIN on every connection.
    pub fn begin_shutdown(&mut self, now: Instant) {
        for id in self.listeners.ids() {
            self.close_listener(now, id);
        }
        let ids: Vec<SocketId> = self.conns.keys().copied().collect();
        for id in ids {
            if let Some(s) = self.conns.get_mut(&id).and_then(|c| c.socket()) {
                s.close();
            }
            self.settle(now, id);
        }
    }

    /// Connections still open (not yet closed, not in TIME-WAIT).
    pub fn open_connections(&self) -> usize {
        self.conns
            .values()
            .filter(|c| {
                c.sockets.is_some() && !matches!(c.state, TcpState::Closed | TcpState::TimeWait)
            })
            .count()
    }

    /// Last step: reset whatever did not finish closing; returns
    /// `(closed cleanly, reset)`.
    pub fn finish_shutdown(&mut self, now: Instant, closed: usize) -> (usize, usize) {
        let ids: Vec<SocketId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.sockets.is_some() && c.state != TcpState::Closed)
            .map(|(id, _)| *id)
            .collect();
        let reset = ids.len();
        for id in ids {
            self.abort(now, id, RstReason::Shutdown);
        }
        self.emit(now, Event::StackStopped { closed, reset });
        (closed, reset)
    }

    // ----- the connection table ------------------------------------------------

    /// A snapshot of every listener and socket (sorted by id).
    pub fn table(&mut self) -> Table {
        debug_assert_eq!(self.index_by_walk(), self.index.rows().collect::<Vec<_>>());
        let listeners = self.listener_infos();
        let mut sockets: Vec<SocketInfo> = Vec::new();
        for (id, conn) in self.conns.iter_mut() {
            if conn.sockets.is_some() {
                sockets.push(conn_info(*id, conn));
            }
        }
        for (quad, tw) in self.demux.time_waits() {
            sockets.push(time_wait_info(tw.id, *quad));
        }
        sockets.extend(self.udp.iter().map(udp_info));
        sockets.sort_by_key(|s| s.id);
        Table {
            listeners,
            sockets,
            stats: self.stats.clone(),
        }
    }

    /// A page of the table: the counts of every row, the visitor's own
    /// row, and the rows `q` asks for, newest first, read off the index
    /// (see [`TableIndex`]): without a filter, or with a state alone, the
    /// page costs what it shows, whatever the table holds.
    pub fn table_page(&mut self, q: &Query) -> TablePage {
        debug_assert_eq!(self.index_by_walk(), self.index.rows().collect::<Vec<_>>());
        let udp: Vec<(SocketId, &'static str, Quad)> = self
            .udp
            .iter()
            .map(|u| {
                let info = udp_info(u);
                (u.id, info.state, info.quad)
            })
            .collect();
        let limit = q.limit.min(Query::MAX_LIMIT);
        let (counts, page) = self.index.select(&Query { limit, ..q.clone() }, &udp);
        let sockets = page.iter().filter_map(|id| self.row_info(*id)).collect();
        let you = q.you.and_then(|y| self.row_info(y));
        TablePage {
            listeners: self.listener_infos(),
            counts,
            you,
            sockets,
            offset: q.offset,
            limit,
            stats: self.stats.clone(),
        }
    }

    /// The index's rows as the sockets themselves say (a check, in debug
    /// builds, that the events kept it right): live connections and
    /// TIME-WAIT records, by id.
    fn index_by_walk(&self) -> Vec<(SocketId, table::Row)> {
        let mut check = TableIndex::default();
        for (id, conn) in &self.conns {
            if conn.sockets.is_some() && conn.state != TcpState::Closed {
                check.insert(*id, conn.quad, conn.state);
            }
        }
        for (quad, tw) in self.demux.time_waits() {
            check.insert(tw.id, *quad, TcpState::TimeWait);
        }
        check.rows().collect()
    }

    /// The row of a live connection, a TIME-WAIT record or a UDP socket.
    fn row_info(&mut self, id: SocketId) -> Option<SocketInfo> {
        if let Some(conn) = self.conns.get_mut(&id).filter(|c| c.sockets.is_some()) {
            return Some(conn_info(id, conn));
        }
        if let Some(row) = self.index.get(id).filter(|r| r.state() == "TIME-WAIT") {
            return Some(time_wait_info(id, row.quad));
        }
        self.udp.iter().find(|u| u.id == id).map(udp_info)
    }

    fn listener_infos(&self) -> Vec<ListenerInfo> {
        let mut listeners: Vec<ListenerInfo> = self
            .listeners
            .iter()
            .map(|l| ListenerInfo {
                id: l.id,
                reuse: l.reuse,
                local: l.local,
                backlog: l.backlog,
                syn_queue: l.syn_queue.len(),
                accept_queue: l.accept_queue.len(),
                syn_cookies: self.floods.contains_key(&l.id),
            })
            .collect();
        listeners.sort_by_key(|l| (l.local.port(), l.id));
        listeners
    }
}

/// A live connection's row of the table.
fn conn_info(id: SocketId, conn: &mut Conn) -> SocketInfo {
    let owner = match conn.owner {
        Owner::SynQueue => "syn queue",
        Owner::AcceptQueue => "accept queue",
        Owner::App => "application",
        Owner::Orphan => "closing",
    };
    let (recv_queue, send_queue, state) = conn
        .socket()
        .map(|s| (s.recv_queue(), s.send_queue(), table::tcp_state(s.state())))
        .unwrap_or_default();
    SocketInfo {
        id,
        quad: conn.quad,
        state,
        owner,
        accepted_by: conn.accepted_by.clone(),
        served_by: conn.served_by.clone().or_else(|| conn.accepted_by.clone()),
        recv_queue,
        send_queue,
    }
}

fn time_wait_info(id: SocketId, quad: Quad) -> SocketInfo {
    SocketInfo {
        id,
        quad,
        state: table::tcp_state(TcpState::TimeWait),
        owner: "time-wait",
        accepted_by: None,
        served_by: None,
        recv_queue: 0,
        send_queue: 0,
    }
}

/// A `syn_flood` event for `listener`'s flood.
fn flood_event(listener: SocketId, f: &Flood, phase: &'static str, now: Instant) -> Event {
    Event::SynFlood {
        id: listener,
        local: f.local,
        phase,
        cookies_sent: f.sent,
        validated: f.validated,
        rejected: f.rejected,
        duration_ms: (now - f.started).total_millis(),
    }
}

/// A segment as a connection's engine sees it: its acknowledgment moved
/// into the engine's sequence space (by `-shift`, see `Conn::seq_shift`).
fn engine_view(p: &[u8], shift: u32) -> std::borrow::Cow<'_, [u8]> {
    if shift == 0 {
        return p.into();
    }
    let mut v = p.to_vec();
    segment::shift_number(&mut v, Number::Ack, shift.wrapping_neg(), false);
    v.into()
}

fn udp_info(u: &crate::transport::udp::UdpSock) -> SocketInfo {
    let unspecified = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);
    SocketInfo {
        id: u.id,
        quad: Quad::new(u.local, u.peer.unwrap_or(unspecified)),
        state: if u.peer.is_some() {
            "ESTABLISHED"
        } else {
            "UNCONN"
        },
        owner: "udp",
        accepted_by: None,
        served_by: u.served_by.clone(),
        recv_queue: 0,
        send_queue: 0,
    }
}

/// Why the 4-tuple `quad` cannot be used for a new outbound connection.
fn taken(demux: &Demux, listeners: &Listeners, quad: &Quad) -> Option<Rejection> {
    match demux.get(quad) {
        Some(Slot::Conn(_)) => Some(Rejection::InUse),
        Some(Slot::TimeWait(_)) => Some(Rejection::TimeWait),
        None if listeners.has_port(quad.local.port()) => Some(Rejection::Listener),
        None => None,
    }
}

fn not_connected() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "no such socket")
}

/// For a reset that is not at exactly the next expected sequence number, or
/// a SYN, on a synchronized connection: why it is refused, and a segment
/// that makes the engine send a challenge ACK (its acknowledgement number is
/// far beyond anything we sent, and smoltcp answers such a segment with its
/// current numbers). smoltcp alone would accept any in-window reset and drop
/// a SYN without ACK silently.
fn challenge(conn: &Conn, seg: &Segment) -> Option<(DropReason, Vec<u8>)> {
    let (rcv_nxt, snd_nxt) = (conn.window.rcv_nxt()?, conn.snd_nxt?);
    let reason = if seg.rst && seg.seq != rcv_nxt {
        DropReason::InexactReset
    } else if seg.is_bare_syn() {
        DropReason::SynOnConnection
    } else {
        return None;
    };
    if !synchronized(conn.state) {
        return None;
    }
    let (local, remote) = (conn.quad.local, conn.quad.remote);
    let builder = match (local.ip(), remote.ip()) {
        (IpAddr::V4(l), IpAddr::V4(r)) => PacketBuilder::ipv4(r.octets(), l.octets(), 64),
        (IpAddr::V6(l), IpAddr::V6(r)) => PacketBuilder::ipv6(r.octets(), l.octets(), 64),
        _ => return None,
    };
    let mut probe = Vec::new();
    builder
        .tcp(remote.port(), local.port(), seg.seq, 0)
        .ack(snd_nxt.wrapping_add(1 << 30))
        .write(&mut probe, &[])
        .ok()?;
    Some((reason, probe))
}

/// Past the handshake: both sides' sequence numbers are known.
fn synchronized(state: TcpState) -> bool {
    !matches!(
        state,
        TcpState::Listen | TcpState::SynSent | TcpState::SynReceived | TcpState::Closed
    )
}

fn reset_error() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, "connection reset")
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
