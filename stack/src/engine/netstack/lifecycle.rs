//! The stack's own lifecycle: a clean shutdown closes every connection
//! (within a grace period) before the runtime stops.

use smoltcp::socket::tcp::State as TcpState;
use smoltcp::time::Instant;

use super::NetStack;
use crate::observe::event::{Event, RstReason};
use crate::wire::quad::SocketId;

impl NetStack {
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
}
