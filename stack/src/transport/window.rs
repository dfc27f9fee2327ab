//! The receive window's edge, and the acknowledgements just past it.
//!
//! smoltcp advertises its free buffer space shifted right by the window
//! scale (RFC 7323), rounding down. As data arrives, the edge it advertises
//! (the acknowledged number plus the window) can move back by up to
//! 2^scale - 1 bytes. A peer that sent up to the old edge did nothing wrong,
//! yet its next segments, including its pure ACKs (which carry its next
//! sequence number), now start past the new one. smoltcp refuses them, as it
//! refuses any segment with data while its window is zero, and answers with
//! an ACK of its own without reading theirs.
//!
//! Linux reads the acknowledgement of such segments (RFC 9293 3.10.7.4: with
//! a zero window, "special allowance should be made to accept valid ACKs").
//! smoltcp not doing so deadlocks a busy two-way connection. Seen on an echo
//! through a lossy link with 256 KiB buffers:
//! - the stack's window rounded to 0 with 4 bytes free, while the peer's
//!   next byte was 4 past the stack's;
//! - the peer's ACKs of the stack's data were refused, so the stack's send
//!   buffer stayed full, the application could not write its echo and so did
//!   not read;
//! - the window stayed 0 and the stack retransmitted on its timer forever.
//!
//! [`RecvWindow`] follows the edge the stack advertised, from its outgoing
//! segments. For a segment that smoltcp refuses only for lying past that edge
//! by no more than rounding explains, or for bringing data into a zero
//! window, [`RecvWindow::ack_past_edge`] gives the same acknowledgement as a
//! pure ACK at the next expected sequence number, which smoltcp accepts. The
//! sequence numbers accepted grow by one window-scale unit and no more, so a
//! blind attacker's odds of injecting an ACK stay what they were.

use crate::wire::checksum::fill_checksums;
use crate::wire::segment::{Outbound, Segment};

/// What the stack last advertised to one peer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RecvWindow {
    /// The window scale we offered, and whether the peer offered one too
    /// (without, neither side scales).
    offered: u8,
    peer_scales: bool,
    /// What our last segment acknowledged, and the edge of the window it
    /// advertised.
    rcv_nxt: Option<u32>,
    edge: Option<u32>,
    /// `rcv_nxt` less the bytes the application had read or had waiting when
    /// we sent it. Adding the current figure gives the engine's next
    /// expected byte, also while an ACK is delayed.
    origin: Option<u32>,
    /// The peer's acknowledgement and window the engine last read.
    peer: Option<(u32, u16)>,
}

impl RecvWindow {
    /// Follows a segment the stack sent (not a reset). `consumed` counts
    /// (wrapping) the bytes the application has read from the connection
    /// plus those waiting in its receive buffer.
    pub fn sent(&mut self, f: &Outbound, consumed: u32) {
        if f.syn {
            self.offered = f.window_scale.unwrap_or(0);
            if f.ack {
                // Our SYN-ACK offers a scale only if the peer's SYN did.
                self.peer_scales = f.window_scale.is_some();
            }
        }
        if f.ack {
            // The window of a SYN is never scaled.
            let window = match f.syn {
                true => u32::from(f.window),
                false => u32::from(f.window) << self.shift(),
            };
            self.rcv_nxt = Some(f.ack_number);
            self.edge = Some(f.ack_number.wrapping_add(window));
            self.origin = Some(f.ack_number.wrapping_sub(consumed));
        }
    }

    /// Follows the peer's SYN-ACK to our SYN: whether it scales its window.
    pub fn peer_syn(&mut self, seg: &Segment) {
        self.peer_scales = seg.options.window_scale.is_some();
    }

    fn shift(&self) -> u8 {
        if self.peer_scales { self.offered } else { 0 }
    }

    /// The next sequence number our last segment acknowledged.
    pub fn rcv_nxt(&self) -> Option<u32> {
        self.rcv_nxt
    }

    /// For a segment of a synchronized connection that smoltcp would refuse
    /// without reading its acknowledgement, although the peer sent it within
    /// what we advertised (see the module documentation): the same segment
    /// as a pure ACK at the engine's next expected sequence number.
    /// `consumed` is as for [`RecvWindow::sent`].
    pub fn ack_past_edge(
        &mut self,
        seg: &Segment,
        packet: &[u8],
        consumed: u32,
    ) -> Option<Vec<u8>> {
        if !seg.ack || seg.syn || seg.rst {
            return None;
        }
        let (origin, edge) = (self.origin?, self.edge?);
        // smoltcp's window: from the byte it expects next to the edge it
        // last advertised.
        let start = origin.wrapping_add(consumed);
        let window = i64::from((edge.wrapping_sub(start) as i32).max(0));
        let past = i64::from(seg.seq.wrapping_sub(start) as i32);
        if past < 0 {
            return None;
        }
        let refused = match seg.payload_len {
            0 if window == 0 => past != 0,
            0 => past >= window,
            _ => window == 0 || past >= window,
        };
        let ack = (seg.ack_number, seg.window);
        if !refused {
            self.peer = Some(ack);
            return None;
        }
        if past >= window + (1 << self.shift()) {
            return None;
        }
        // A segment with data is no duplicate ACK to Linux; made into a pure
        // ACK that tells smoltcp nothing new, it would count as one (three
        // start a fast retransmit).
        if seg.payload_len > 0 && self.peer == Some(ack) {
            return None;
        }
        self.peer = Some(ack);
        pure_ack(packet, start)
    }
}

/// `packet` (IPv4 or IPv6 without extension headers, TCP) cut to its headers,
/// at sequence number `seq`, without FIN, PSH or URG: what remains is its
/// acknowledgement, window and options.
fn pure_ack(packet: &[u8], seq: u32) -> Option<Vec<u8>> {
    let ip_len = match *packet.first()? >> 4 {
        4 => usize::from(packet[0] & 0x0f) * 4,
        6 if packet.get(6) == Some(&6) => 40,
        _ => return None,
    };
    let tcp_len = usize::from(*packet.get(ip_len + 12)? >> 4) * 4;
    let mut p = packet.get(..ip_len + tcp_len)?.to_vec();
    match p[0] >> 4 {
        4 => p[2..4].copy_from_slice(&((ip_len + tcp_len) as u16).to_be_bytes()),
        _ => p[4..6].copy_from_slice(&(tcp_len as u16).to_be_bytes()),
    }
    p[ip_len + 4..ip_len + 8].copy_from_slice(&seq.to_be_bytes());
    p[ip_len + 13] &= !(0x01 | 0x08 | 0x20);
    fill_checksums(&mut p);
    Some(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::segment::{Inbound, Local, classify};
    use etherparse::PacketBuilder;

    const STACK: [u8; 4] = [10, 0, 0, 2];

    fn local() -> Local {
        Local {
            v4: STACK.into(),
            v6: None,
        }
    }

    fn inbound(seq: u32, payload: &[u8], fin: bool) -> (Segment, Vec<u8>) {
        let b = PacketBuilder::ipv4([10, 0, 0, 1], STACK, 64)
            .tcp(40000, 80, seq, 5000)
            .ack(777)
            .psh();
        let b = if fin { b.fin() } else { b };
        let mut p = Vec::new();
        b.write(&mut p, payload).unwrap();
        let Inbound::Tcp(seg) = classify(&p, local()) else {
            panic!("not a segment");
        };
        (seg, p)
    }

    /// The synthesized ACK as our layer reads it: its checksums must be right.
    fn accepted(ack: &[u8]) -> Segment {
        let Inbound::Tcp(a) = classify(ack, local()) else {
            panic!("checksums must be right");
        };
        a
    }

    /// The stack acknowledged 1000 and advertised `window` units of 8 bytes.
    fn advertised(window: u16) -> RecvWindow {
        let mut w = RecvWindow::default();
        let syn = |ack| Outbound {
            rst: false,
            fin: false,
            syn: true,
            ack: true,
            ack_number: ack,
            seq_end: 1,
            payload_len: 0,
            window: 64240,
            window_scale: Some(3),
        };
        w.sent(&syn(500), 0);
        w.sent(
            &Outbound {
                syn: false,
                window,
                ..syn(1000)
            },
            0,
        );
        w
    }

    #[test]
    fn an_ack_just_past_a_zero_window_is_read_at_the_next_expected_number() {
        let mut w = advertised(0);
        let (seg, packet) = inbound(1004, &[], false);
        let ack = w.ack_past_edge(&seg, &packet, 0).expect("a pure ACK");
        let a = accepted(&ack);
        assert_eq!((a.seq, a.ack_number, a.payload_len), (1000, 777, 0));
    }

    #[test]
    fn data_into_a_zero_window_gives_its_ack_without_data_or_fin() {
        let mut w = advertised(0);
        let (seg, packet) = inbound(1000, b"late", true);
        let ack = w.ack_past_edge(&seg, &packet, 0).expect("a pure ACK");
        let a = accepted(&ack);
        assert_eq!((a.seq, a.payload_len, a.fin), (1000, 0, false));
        // Its retransmission carries the same acknowledgement: nothing new,
        // and as a pure ACK it would pass for a duplicate.
        assert_eq!(w.ack_past_edge(&seg, &packet, 0), None);
    }

    #[test]
    fn the_edge_counts_from_what_the_engine_took_since_our_last_ack() {
        // 2 units (16 bytes) advertised at 1000; 12 bytes arrived since,
        // not yet acknowledged: the engine expects 1012, its window is 4.
        let mut w = advertised(2);
        let (seg, p) = inbound(1016, &[], false);
        let ack = w.ack_past_edge(&seg, &p, 12).expect("a pure ACK");
        let a = accepted(&ack);
        assert_eq!(a.seq, 1012);
        let (seg, p) = inbound(1014, &[], false);
        assert_eq!(w.ack_past_edge(&seg, &p, 12), None, "inside the window");
    }

    #[test]
    fn what_smoltcp_accepts_or_rounding_cannot_explain_is_left_alone() {
        let mut w = advertised(0);
        // At the edge exactly: accepted as it is.
        let (seg, p) = inbound(1000, &[], false);
        assert_eq!(w.ack_past_edge(&seg, &p, 0), None);
        // More than one unit (8 bytes) past, or before: not the peer's
        // honest next number.
        for seq in [1008, 999, 0x8000_0000] {
            let (seg, p) = inbound(seq, &[], false);
            assert_eq!(w.ack_past_edge(&seg, &p, 0), None, "seq {seq}");
        }
        // An open window of 2 units takes 1000..1016; 1016..1023 are past it.
        let mut w = advertised(2);
        for (seq, expect) in [(1010, false), (1016, true), (1023, true), (1024, false)] {
            let (seg, p) = inbound(seq, &[], false);
            assert_eq!(w.ack_past_edge(&seg, &p, 0).is_some(), expect, "seq {seq}");
        }
    }
}
