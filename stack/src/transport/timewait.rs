//! TIME-WAIT, kept as a compact record instead of a whole socket.
//!
//! The side that closes a TCP connection first ends in TIME-WAIT: it keeps the
//! 4-tuple reserved for a while so that a late retransmission of the peer's
//! FIN can still be acknowledged, and so that stray old segments do not land
//! in a new connection on the same 4-tuple. A web server that closes first
//! accumulates one such entry per connection.
//!
//! smoltcp keeps a full socket (with its buffers) for 10 seconds and drops a
//! new SYN on that 4-tuple, so a client reconnecting from the same port would
//! wait for its SYN retransmission. Linux instead lets a new SYN reuse the
//! 4-tuple when it is clearly newer — its sequence number is past what the old
//! connection used, or its timestamp is newer — and so do we. The record keeps
//! only what that needs: the next expected sequence number, the peer's last
//! timestamp, and a copy of our last ACK to send again if the peer's FIN is
//! retransmitted.

use smoltcp::time::Instant;

use crate::wire::quad::SocketId;
use crate::wire::segment::{Segment, seq_after};

#[derive(Debug, Clone)]
pub struct TimeWait {
    /// The id of the socket that closed; its buffers are already freed.
    pub id: SocketId,
    pub expires: Instant,
    /// The sequence number after the peer's FIN.
    pub rcv_nxt: u32,
    /// Our sequence number after our FIN: a connection that reuses the
    /// 4-tuple starts above it (see `Conn::chosen_isn`).
    pub snd_nxt: u32,
    /// The peer's most recent TSval, when timestamps are in use.
    pub ts_recent: Option<u32>,
    /// Our final ACK, ready to send again.
    pub last_ack: Option<Vec<u8>>,
}

/// What a segment arriving in TIME-WAIT calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A new SYN that is newer than the old connection: free the record and
    /// treat the SYN as a new connection request.
    Reuse,
    /// Send the final ACK again (and, for a FIN, restart the timer).
    Ack,
    /// A reset ends TIME-WAIT (Linux without RFC 1337 protection).
    Kill,
    /// Nothing to do.
    Ignore,
}

impl TimeWait {
    /// Linux's `tcp_timewait_state_process`, reduced to its decisions.
    pub fn on_segment(&self, seg: &Segment) -> Action {
        if seg.rst {
            // Only an in-window reset (its sequence number exactly the next
            // expected) ends TIME-WAIT; a blind one is ignored.
            return if seg.seq == self.rcv_nxt {
                Action::Kill
            } else {
                Action::Ignore
            };
        }
        if seg.is_bare_syn() {
            // PAWS: a SYN whose timestamp is older than the last one seen
            // is an old duplicate, whatever its sequence number.
            let (newer_ts, older_ts) = match (seg.tsval, self.ts_recent) {
                (Some(new), Some(old)) => {
                    let d = new.wrapping_sub(old) as i32;
                    (d > 0, d < 0)
                }
                _ => (false, false),
            };
            let newer_seq = seq_after(seg.seq, self.rcv_nxt);
            return if !older_ts && (newer_seq || newer_ts) {
                Action::Reuse
            } else {
                Action::Ack
            };
        }
        if seg.fin || seg.payload_len > 0 {
            return Action::Ack;
        }
        Action::Ignore
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::event::SynOptions;
    use crate::wire::quad::Quad;

    fn record() -> TimeWait {
        TimeWait {
            id: SocketId(1),
            expires: Instant::from_secs(10),
            rcv_nxt: 5000,
            snd_nxt: 9000,
            ts_recent: None,
            last_ack: None,
        }
    }

    fn seg(seq: u32) -> Segment {
        Segment {
            quad: Quad::new(
                "10.0.0.2:80".parse().unwrap(),
                "10.0.0.1:40000".parse().unwrap(),
            ),
            seq,
            ack_number: 0,
            syn: true,
            ack: false,
            fin: false,
            rst: false,
            payload_len: 0,
            window: 64240,
            options: SynOptions::default(),
            tsval: None,
        }
    }

    #[test]
    fn newer_syn_reuses_older_syn_is_acked() {
        assert_eq!(record().on_segment(&seg(9000)), Action::Reuse);
        assert_eq!(record().on_segment(&seg(100)), Action::Ack);
    }

    #[test]
    fn newer_timestamp_reuses_even_with_older_sequence() {
        let mut r = record();
        r.ts_recent = Some(100);
        let mut s = seg(100);
        s.tsval = Some(200);
        assert_eq!(r.on_segment(&s), Action::Reuse);
    }

    #[test]
    fn an_older_timestamp_blocks_reuse_even_with_a_newer_sequence() {
        let mut r = record();
        r.ts_recent = Some(500);
        let mut s = seg(9000);
        s.tsval = Some(400);
        assert_eq!(r.on_segment(&s), Action::Ack);
    }

    #[test]
    fn fin_is_acked_rst_kills() {
        let mut s = seg(4999);
        s.syn = false;
        s.ack = true;
        s.fin = true;
        assert_eq!(record().on_segment(&s), Action::Ack);
        s.fin = false;
        s.rst = true;
        s.seq = 5000;
        assert_eq!(record().on_segment(&s), Action::Kill);
        s.seq = 5001;
        assert_eq!(record().on_segment(&s), Action::Ignore, "a blind reset");
    }
}
