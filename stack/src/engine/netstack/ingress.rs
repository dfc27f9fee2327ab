//! Ingress: where an arriving packet goes.
//!
//! [`NetStack::receive`] classifies a packet once (`wire::segment`), then one
//! `match` sends it on: a known 4-tuple (its connection, through the
//! engine), a TIME-WAIT record, a listener (a SYN makes a socket in its SYN
//! queue, or a cookie when the queue is full), UDP, ICMP (the engine
//! answers), or nowhere (a reset, or a silent drop).

use std::net::IpAddr;

use etherparse::PacketBuilder;
use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp::{self, State as TcpState};
use smoltcp::time::Instant;
use smoltcp::wire::{IpAddress, IpListenEndpoint};

use super::{Conn, NetStack, Owner, TimerKey};
use crate::config::Overflow;
use crate::engine::buffers::ConnSockets;
use crate::engine::driver::Engine;
use crate::observe::event::{Closer, DropReason, Event, RstReason, SynDropReason};
use crate::transport::demux::{Demux, Slot};
use crate::transport::listener::Listeners;
use crate::transport::nagle::Nagle;
use crate::transport::ports::Rejection;
use crate::transport::syncookie;
use crate::transport::timewait;
use crate::transport::window::RecvWindow;
use crate::wire::quad::{Quad, SocketId};
use crate::wire::segment::{self, Inbound, Number, Segment};

impl NetStack {
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

    pub(super) fn receive_with(&mut self, now: Instant, packet: &[u8], verify: bool) {
        self.stats.packets_in += 1;
        self.current_frame = self.capture_packet(now, true, packet);
        self.classify_and_handle(now, packet, verify);
        self.current_frame = None;
    }

    pub(super) fn classify_and_handle(&mut self, now: Instant, packet: &[u8], verify: bool) {
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
    pub(super) fn answer_by_engine(&mut self, now: Instant, packet: &[u8]) {
        self.engine
            .ingress(now, packet, &mut self.no_sockets, &mut self.out);
        self.flush_out(now, None, None);
    }

    pub(super) fn on_segment(&mut self, now: Instant, seg: &Segment, packet: &[u8]) {
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
    pub(super) fn answer_without_socket(
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

    /// A SYN for a 4-tuple with no connection.
    pub(super) fn on_syn(&mut self, now: Instant, seg: &Segment, packet: &[u8]) {
        self.on_syn_with(now, seg, packet, None);
    }

    /// [`NetStack::on_syn`], with the ISN the new connection must start
    /// from if it is made (`Conn::chosen_isn`).
    pub(super) fn on_syn_with(
        &mut self,
        now: Instant,
        seg: &Segment,
        packet: &[u8],
        isn: Option<u32>,
    ) {
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
        let isn = isn.map_or(Isn::Engine, Isn::Chosen);
        self.open_passive(now, listener_id, (sockets, handle), seg, packet, isn);
    }

    /// A new socket for the 4-tuple of `seg` (a SYN, real or rebuilt from a
    /// cookie), in `listener`'s SYN queue, and the SYN delivered to it;
    /// `isn` says whose ISN the peer sees.
    pub(super) fn open_passive(
        &mut self,
        now: Instant,
        listener_id: SocketId,
        (mut sockets, handle): (ConnSockets, SocketHandle),
        seg: &Segment,
        packet: &[u8],
        isn: Isn,
    ) -> Option<SocketId> {
        let (cookie, chosen_isn) = match isn {
            Isn::Engine => (None, None),
            Isn::Cookie(c) => (Some(c), None),
            Isn::Chosen(i) => (None, Some(i)),
        };
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
                chosen_isn,
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
    pub(super) fn deliver(&mut self, now: Instant, id: SocketId, seg: &Segment, packet: &[u8]) {
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

    pub(super) fn on_time_wait_segment(
        &mut self,
        now: Instant,
        seg: &Segment,
        packet: &[u8],
        action: timewait::Action,
    ) {
        let quad = seg.quad;
        match action {
            timewait::Action::Reuse => {
                let mut isn = None;
                if let Some(tw) = self.demux.remove_time_wait(&quad) {
                    self.timers.set(TimerKey::TimeWait(quad), None);
                    self.stats.time_wait_reused += 1;
                    self.emit(now, Event::TimeWaitReused { id: tw.id, quad });
                    isn = Some(tw.snd_nxt.wrapping_add(65537));
                }
                self.on_syn_with(now, seg, packet, isn);
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
}

/// Whose initial sequence number a passive connection shows the peer.
#[derive(Debug, Clone, Copy)]
pub(super) enum Isn {
    /// The engine's own.
    Engine,
    /// The SYN cookie the peer was given (its SYN-ACK already left).
    Cookie(u32),
    /// One chosen for it: a reused TIME-WAIT 4-tuple's (`Conn::chosen_isn`).
    Chosen(u32),
}

/// A segment as a connection's engine sees it: its acknowledgment moved
/// into the engine's sequence space (by `-shift`, see `Conn::seq_shift`).
pub(super) fn engine_view(p: &[u8], shift: u32) -> std::borrow::Cow<'_, [u8]> {
    if shift == 0 {
        return p.into();
    }
    let mut v = p.to_vec();
    segment::shift_number(&mut v, Number::Ack, shift.wrapping_neg(), false);
    v.into()
}

/// Why the 4-tuple `quad` cannot be used for a new outbound connection.
pub(super) fn taken(demux: &Demux, listeners: &Listeners, quad: &Quad) -> Option<Rejection> {
    match demux.get(quad) {
        Some(Slot::Conn(_)) => Some(Rejection::InUse),
        Some(Slot::TimeWait(_)) => Some(Rejection::TimeWait),
        None if listeners.has_port(quad.local.port()) => Some(Rejection::Listener),
        None => None,
    }
}

/// For a reset that is not at exactly the next expected sequence number, or
/// a SYN, on a synchronized connection: why it is refused, and a segment
/// that makes the engine send a challenge ACK (its acknowledgement number is
/// far beyond anything we sent, and smoltcp answers such a segment with its
/// current numbers). smoltcp alone would accept any in-window reset and drop
/// a SYN without ACK silently.
pub(super) fn challenge(conn: &Conn, seg: &Segment) -> Option<(DropReason, Vec<u8>)> {
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
pub(super) fn synchronized(state: TcpState) -> bool {
    !matches!(
        state,
        TcpState::Listen | TcpState::SynSent | TcpState::SynReceived | TcpState::Closed
    )
}
