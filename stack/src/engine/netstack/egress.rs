//! Egress: what a connection sends after the engine has run it, and the
//! deadline it wants next. A batch of received packets ends with one pass
//! over the connections it touched, so each answers once.

use smoltcp::socket::tcp::{self, State as TcpState};
use smoltcp::time::Instant;

use super::{NetStack, Owner, Ready, TimerKey};
use crate::observe::event::{Closer, Event, RstReason};
use crate::transport::nagle;
use crate::wire::quad::{Quad, SocketId};
use crate::wire::segment::{self, Inbound, Number};

impl NetStack {
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

    /// Sends what the connection's socket wants to send, then reports and
    /// acts on any change of state, and schedules its next timer.
    pub(super) fn settle(&mut self, now: Instant, id: SocketId) {
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
    pub(super) fn egress(&mut self, now: Instant, id: SocketId) {
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
    pub(super) fn after_send(&mut self, now: Instant, id: SocketId, frame: Option<u64>) {
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
    pub(super) fn flush_out(
        &mut self,
        now: Instant,
        id: Option<SocketId>,
        quad: Option<Quad>,
    ) -> Option<u64> {
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
                // A reused TIME-WAIT 4-tuple: the SYN-ACK leaves, from the
                // ISN chosen for it.
                if let Some(isn) = c.chosen_isn
                    && let Some(f) = segment::outbound(&packet)
                    && f.syn
                {
                    c.seq_shift = isn.wrapping_sub(f.seq_end.wrapping_sub(1));
                    c.chosen_isn = None;
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
    pub(super) fn note_outbound(
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
    pub(super) fn observe(&mut self, now: Instant, id: SocketId) {
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
    pub(super) fn schedule(&mut self, now: Instant, id: SocketId) {
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
}
