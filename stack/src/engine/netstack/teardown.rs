//! A connection's end: its timers, TIME-WAIT, and freeing what it held.

use smoltcp::socket::tcp::State as TcpState;
use smoltcp::time::Instant;

use super::{NetStack, Owner, TimerKey};
use crate::observe::event::{Closer, Event, RstReason};
use crate::transport::demux::Slot;
use crate::transport::timewait::TimeWait;
use crate::wire::quad::{Quad, SocketId};
use crate::wire::segment;

impl NetStack {
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

    pub(super) fn on_conn_timer(&mut self, now: Instant, id: SocketId) {
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

    pub(super) fn on_time_wait_timer(&mut self, now: Instant, quad: Quad) {
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

    pub(super) fn enter_time_wait(&mut self, now: Instant, id: SocketId) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let last_ack = conn.last_ack.take();
        let last = last_ack.as_deref().and_then(segment::outbound);
        let rcv_nxt = last.as_ref().map_or(0, |o| o.ack_number);
        let snd_nxt = last.as_ref().map_or(0, |o| o.seq_end);
        let expires = now + self.cfg.time_wait;
        let quad = conn.quad;
        let record = TimeWait {
            id,
            expires,
            rcv_nxt,
            snd_nxt,
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
    pub(super) fn finish(&mut self, now: Instant, id: SocketId) {
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
    pub(super) fn free(&mut self, now: Instant, id: SocketId, by: Closer) {
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
    pub(super) fn abort(&mut self, now: Instant, id: SocketId, reason: RstReason) {
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
}
