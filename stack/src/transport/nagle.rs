//! Nagle's algorithm the way Linux runs it: Minshall's variant, and
//! `TCP_NODELAY`.
//!
//! Nagle's algorithm (RFC 896; RFC 9293 3.7.4) keeps a sender from filling
//! the network with tiny segments: a segment smaller than the MSS waits
//! while earlier data is unacknowledged, so that more bytes can join it. Its
//! classic form — the one smoltcp implements — holds the partial segment
//! while *anything* is unacknowledged. That meets the receiver's delayed ACK
//! (RFC 1122 4.2.3.2: a receiver may wait up to 500 ms, Linux up to 40 ms,
//! before acknowledging a lone segment) head on: an HTTP response of three
//! full segments and a partial one sends the full ones, holds the partial one
//! for an ACK, and the client, having received an odd number of segments,
//! holds its ACK for its timer. Every such response then costs 40 ms.
//!
//! Minshall's variant (Greg Minshall, "A Suggested Modification to Nagle's
//! Algorithm", 1999; Linux's `tcp_minshall_check`) holds a partial segment
//! only while an earlier *partial* segment is unacknowledged. A response
//! written in one call leaves whole: its full segments never count, and its
//! one partial segment finds no other in flight. Tiny writes still coalesce:
//! the second of two small writes in a row waits for the first's ACK.
//!
//! `TCP_NODELAY` (`TcpStream::set_nodelay`, the name and meaning std and
//! Linux give it) turns the hold off altogether; nginx sets it on every
//! keep-alive connection, and portlab's HTTP server does too.
//!
//! This module keeps what the rule needs per connection — the end of the last
//! partial segment sent (Linux's `snd_sml`) and the highest acknowledgement —
//! and tells the engine, before each time it may send, whether to hold a
//! partial segment (smoltcp's own switch, `set_nagle_enabled`, holds while
//! anything is in flight; our rule decides when to turn it on). It also
//! notices a hold and its release, which the event log reports
//! (`nagle_held`, `nagle_released`).

use smoltcp::time::Instant;

use crate::observe::event::SynOptions;

/// Which form of Nagle's algorithm a connection without `TCP_NODELAY` uses
/// (`NetConfig::nagle`, `portlab serve --nagle`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum NagleRule {
    /// Hold a partial segment only while an earlier partial segment is
    /// unacknowledged (Linux).
    #[default]
    Minshall,
    /// Hold a partial segment while any data is unacknowledged (RFC 896 as
    /// written; smoltcp's own rule).
    Classic,
}

impl NagleRule {
    pub fn as_str(self) -> &'static str {
        match self {
            NagleRule::Minshall => "minshall",
            NagleRule::Classic => "classic",
        }
    }
}

/// smoltcp's MSS for a peer that sent no MSS option (RFC 9293 3.7.1).
const DEFAULT_MSS: u16 = 536;

/// One connection's Nagle state.
#[derive(Debug, Clone, Default)]
pub struct Nagle {
    /// `TCP_NODELAY`: never hold.
    nodelay: bool,
    /// The payload of a full segment, once the handshake told it (`None`:
    /// nothing was sent yet, so nothing can be partial).
    mss: Option<u32>,
    /// The highest acknowledgement received that acknowledged data we sent.
    snd_una: Option<u32>,
    /// The sequence number after the last partial segment we sent, while it
    /// is unacknowledged (Linux's `snd_sml`).
    snd_sml: Option<u32>,
    /// Whether the engine was told to hold a partial segment for its last send.
    holding: bool,
    /// A partial segment being held: since when, and how many bytes.
    held: Option<(Instant, u32)>,
}

/// What a send changed, for the event log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A partial segment of `bytes` waits for the acknowledgement of
    /// `until_ack` (the sequence number that releases it).
    Held { bytes: u32, until_ack: u32 },
    /// The held bytes left after `held_us` microseconds.
    Released { bytes: u32, held_us: u64 },
}

impl Nagle {
    pub fn nodelay(&self) -> bool {
        self.nodelay
    }

    pub fn set_nodelay(&mut self, on: bool) {
        self.nodelay = on;
    }

    /// The handshake's options (the peer's SYN, or its SYN-ACK) fix the
    /// size of a full segment: the smaller of our MSS for `mtu` and the
    /// peer's, less the timestamp option when both use it.
    pub fn handshake(&mut self, peer: &SynOptions, mtu: usize, ipv6: bool) {
        let ip_header = if ipv6 { 40 } else { 20 };
        let local = mtu.saturating_sub(ip_header + 20) as u32;
        let remote = u32::from(peer.mss.unwrap_or(DEFAULT_MSS));
        let options = if peer.timestamp.is_some() { 12 } else { 0 };
        self.mss = Some(local.min(remote).saturating_sub(options).max(1));
    }

    /// Whether the engine should hold a partial segment now, under `rule`.
    pub fn hold(&self, rule: NagleRule) -> bool {
        !self.nodelay
            && match rule {
                NagleRule::Classic => true,
                NagleRule::Minshall => self.snd_sml.is_some(),
            }
    }

    /// Before the engine may send: tells its socket whether to hold.
    pub fn apply(&mut self, rule: NagleRule, socket: &mut smoltcp::socket::tcp::Socket<'_>) {
        self.holding = self.hold(rule);
        socket.set_nagle_enabled(self.holding);
    }

    /// A segment we sent: `seq` its first sequence number, `payload` its
    /// length, `new` whether it carried data never sent before.
    pub fn sent(&mut self, seq: u32, payload: u32, new: bool, syn: bool) {
        if syn {
            self.snd_una = Some(seq);
            return;
        }
        if self.snd_una.is_none() {
            self.snd_una = Some(seq);
        }
        if new && payload > 0 && self.mss.is_some_and(|mss| payload < mss) {
            self.snd_sml = Some(seq.wrapping_add(payload));
        }
    }

    /// An acknowledgement arrived; `snd_nxt` is the sequence number after
    /// the highest one we sent (an ACK beyond it acknowledges nothing).
    pub fn acked(&mut self, ack: u32, snd_nxt: Option<u32>) {
        let Some(nxt) = snd_nxt else {
            return;
        };
        if after(ack, nxt) {
            return;
        }
        if self.snd_una.is_none_or(|una| after(ack, una)) {
            self.snd_una = Some(ack);
        }
        if self.snd_sml.is_some_and(|sml| !after(sml, ack)) {
            self.snd_sml = None;
        }
    }

    /// After a send: `queued` is what the socket still holds to send or to
    /// have acknowledged, `snd_nxt` the sequence number after the highest
    /// one sent. Reports a partial segment that the rule now holds, or the
    /// release of one it held.
    pub fn after_send(
        &mut self,
        now: Instant,
        rule: NagleRule,
        queued: usize,
        snd_nxt: Option<u32>,
    ) -> Option<Change> {
        let (Some(una), Some(nxt), Some(mss)) = (self.snd_una, snd_nxt, self.mss) else {
            return None;
        };
        let in_flight = nxt.wrapping_sub(una);
        let unsent = (queued as u64).saturating_sub(u64::from(in_flight)) as u32;
        match self.held {
            None if self.holding && unsent > 0 && unsent < mss && in_flight > 0 => {
                self.held = Some((now, unsent));
                let until_ack = match rule {
                    NagleRule::Classic => nxt,
                    NagleRule::Minshall => self.snd_sml.unwrap_or(nxt),
                };
                Some(Change::Held {
                    bytes: unsent,
                    until_ack,
                })
            }
            Some((since, bytes)) if unsent == 0 => {
                self.held = None;
                Some(Change::Released {
                    bytes,
                    held_us: (now - since).total_micros(),
                })
            }
            _ => None,
        }
    }
}

/// Whether sequence number `a` comes after `b` (RFC 1982 arithmetic).
fn after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn established(mss: u16) -> Nagle {
        let mut n = Nagle::default();
        let peer = SynOptions {
            mss: Some(mss),
            ..SynOptions::default()
        };
        n.handshake(&peer, 1500, false);
        n.sent(1000, 0, true, true);
        n.acked(1001, Some(1001));
        n
    }

    #[test]
    fn full_segments_never_arm_minshall() {
        let mut n = established(1460);
        n.sent(1001, 1460, true, false);
        n.sent(2461, 1460, true, false);
        assert!(!n.hold(NagleRule::Minshall));
        assert!(n.hold(NagleRule::Classic));
    }

    #[test]
    fn a_partial_segment_arms_minshall_until_its_ack() {
        let mut n = established(1460);
        n.sent(1001, 100, true, false);
        assert!(n.hold(NagleRule::Minshall));
        // An ACK short of its end leaves it armed; one past what we sent is ignored.
        n.acked(1050, Some(1101));
        assert!(n.hold(NagleRule::Minshall));
        n.acked(5000, Some(1101));
        assert!(n.hold(NagleRule::Minshall));
        n.acked(1101, Some(1101));
        assert!(!n.hold(NagleRule::Minshall));
    }

    #[test]
    fn a_retransmitted_partial_segment_does_not_rearm() {
        let mut n = established(1460);
        n.sent(1001, 100, true, false);
        n.acked(1101, Some(1101));
        n.sent(1001, 100, false, false);
        assert!(!n.hold(NagleRule::Minshall));
    }

    #[test]
    fn nodelay_never_holds() {
        let mut n = established(1460);
        n.sent(1001, 100, true, false);
        n.set_nodelay(true);
        assert!(!n.hold(NagleRule::Minshall));
        assert!(!n.hold(NagleRule::Classic));
    }

    #[test]
    fn the_full_size_follows_both_ends_and_the_timestamp_option() {
        let mut n = Nagle::default();
        let peer = SynOptions {
            mss: Some(1460),
            timestamp: Some(7),
            ..SynOptions::default()
        };
        n.handshake(&peer, 1500, true);
        assert_eq!(n.mss, Some(1440 - 12));
        n.handshake(&SynOptions::default(), 1500, false);
        assert_eq!(n.mss, Some(536));
    }

    #[test]
    fn a_hold_is_reported_once_and_its_release_with_its_length() {
        let mut n = established(1460);
        let t0 = Instant::from_millis(10);
        n.sent(1001, 1460, true, false);
        n.apply_for_test(NagleRule::Classic);
        // 1460 in flight, 20 more queued: held.
        let held = n.after_send(t0, NagleRule::Classic, 1480, Some(2461));
        assert_eq!(
            held,
            Some(Change::Held {
                bytes: 20,
                until_ack: 2461
            })
        );
        assert_eq!(n.after_send(t0, NagleRule::Classic, 1480, Some(2461)), None);
        n.acked(2461, Some(2461));
        n.sent(2461, 20, true, false);
        let released = n.after_send(
            t0 + smoltcp::time::Duration::from_millis(40),
            NagleRule::Classic,
            20,
            Some(2481),
        );
        assert_eq!(
            released,
            Some(Change::Released {
                bytes: 20,
                held_us: 40_000
            })
        );
    }

    impl Nagle {
        fn apply_for_test(&mut self, rule: NagleRule) {
            self.holding = self.hold(rule);
        }
    }
}
