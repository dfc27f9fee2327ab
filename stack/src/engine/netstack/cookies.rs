//! SYN cookies at the stack's edge: sending one when a listener's SYN queue
//! is full, and turning the ACK that returns one into a connection. The
//! cookie itself (its hash, its counter, its MSS index) is
//! `transport::syncookie`.

use std::net::SocketAddr;

use smoltcp::time::Instant;

use super::ingress::Isn;
use super::{NetStack, Owner, TimerKey};
use crate::engine::driver::Engine;
use crate::observe::event::{Closer, Event, RstReason};
use crate::transport::syncookie::{self, Flood};
use crate::wire::quad::SocketId;
use crate::wire::segment::Segment;

impl NetStack {
    /// Answers a SYN with a cookie: a SYN-ACK and nothing kept.
    pub(super) fn send_cookie(
        &mut self,
        now: Instant,
        seg: &Segment,
        listener: SocketId,
        local: SocketAddr,
    ) {
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

    pub(super) fn on_flood_timer(&mut self, now: Instant, listener: SocketId) {
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
    pub(super) fn on_cookie_ack(&mut self, now: Instant, seg: &Segment, packet: &[u8]) {
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
        if let Some(id) = self.open_passive(
            now,
            listener_id,
            made,
            &syn,
            &syn_packet,
            Isn::Cookie(cookie),
        ) {
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
}

/// A `syn_flood` event for `listener`'s flood.
pub(super) fn flood_event(
    listener: SocketId,
    f: &Flood,
    phase: &'static str,
    now: Instant,
) -> Event {
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
