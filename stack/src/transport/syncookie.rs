//! SYN cookies (RFC 4987 section 3.6): answering a SYN without keeping
//! anything.
//!
//! When a listener's SYN queue is full, a SYN flood would crowd legitimate
//! clients out. Instead, the stack answers the SYN with a SYN-ACK whose
//! initial sequence number *is* the state: a keyed hash of the 4-tuple and
//! the client's ISN, a time counter and the index of an MSS. It keeps
//! nothing. A client that is real sends the ACK that completes the
//! handshake, acknowledging cookie + 1; the stack recomputes the hash from
//! that ACK's 4-tuple and sequence number (the client's ISN + 1), and only
//! then creates the connection. A flood from spoofed addresses never
//! answers, so it costs one hash per SYN and no memory.
//!
//! The cookie's 32 bits, our layout (Linux's, in `net/ipv4/syncookies.c`,
//! puts a counter in the top byte and adds two hashes; this one keeps more
//! bits of hash):
//!
//! ```text
//!  31                                4 3   2 1   0
//! +-------------------------------------+-----+-----+
//! |  SipHash-2-4(key[c], 4-tuple, ISN)  |  c  | mss |
//! |          top 28 bits                | mod4|index|
//! +-------------------------------------+-----+-----+
//! ```
//!
//! * `c` is the time counter: one step every [`PERIOD_SECS`] seconds. A
//!   cookie is good in the period it was made and the next one (64 to 128 s,
//!   as Linux's two minutes); older ones are *expired*.
//! * Each period has its own key, drawn from the operating system's
//!   randomness when the period's first cookie is made: the secret rotates
//!   every period, and the keys of the last [`KEPT`] periods are kept, so
//!   that a late ACK can be told apart (expired) from a forged one (invalid).
//! * The MSS index picks the largest of four values that the client's MSS
//!   allows ([`MSS_V4`], [`MSS_V6`]).
//!
//! What a cookie connection loses: the SYN's other options. Window scaling,
//! SACK and timestamps are not in the cookie (Linux hides them in the
//! timestamp; we decided not to): the SYN-ACK offers only the MSS, so the
//! connection runs with a window of at most 64 KiB and without SACK. It is
//! the price of an answer under a flood, paid only when the queue is full.

use etherparse::{PacketBuilder, TcpOptionElement};
use siphasher::sip::SipHasher24;
use smoltcp::time::Instant;
use std::hash::Hasher;
use std::net::IpAddr;

use crate::observe::event::SynOptions;
use crate::wire::quad::Quad;
use crate::wire::segment::Segment;

/// Seconds of one step of the time counter (Linux: 60, as jiffies/HZ/60).
pub const PERIOD_SECS: u64 = 64;
/// Periods a cookie stays good: the one it was made in and the next.
pub const MAX_AGE: u64 = 1;
/// Periods whose keys are kept (the counter's two bits tell them apart).
pub const KEPT: usize = 4;

/// The MSS values a cookie can carry, IPv4 (Linux's `msstab`).
pub const MSS_V4: [u16; 4] = [536, 1300, 1440, 1460];
/// The MSS values a cookie can carry, IPv6 (the minimum MTU's 1220 first).
pub const MSS_V6: [u16; 4] = [1220, 1280, 1400, 1440];

/// When a listener answers with cookies: Linux's `net.ipv4.tcp_syncookies`
/// (1, 2, 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Once the listener's SYN queue is full (Linux's 1, its default).
    #[default]
    Auto,
    /// For every SYN (2): no SYN queue at all, a lab setting.
    Always,
    /// Never (0): a full SYN queue evicts its oldest entry, or drops the SYN.
    Never,
}

/// A listener's flood, from its first cookie to a quiet [`FLOOD_QUIET`]
/// after its last: what its `syn_flood` events report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flood {
    pub local: std::net::SocketAddr,
    pub started: Instant,
    pub last: Instant,
    pub sent: u64,
    pub validated: u64,
    pub rejected: u64,
}

/// How long a listener sends no cookie before its flood is over.
pub const FLOOD_QUIET: smoltcp::time::Duration = smoltcp::time::Duration::from_secs(2);

/// Where the keys come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    /// The operating system's randomness (`getrandom`): what the stack uses.
    Os,
    /// Derived from a seed: for tests that must repeat.
    Seeded(u64),
}

/// Why a returning ACK's cookie was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// Made by us, but more than [`MAX_AGE`] periods ago.
    Expired,
    /// Not a cookie of ours: a guess, or an ACK for a connection long gone.
    Invalid,
}

impl Rejected {
    pub fn name(self) -> &'static str {
        match self {
            Rejected::Expired => "expired",
            Rejected::Invalid => "invalid",
        }
    }
}

/// What a valid cookie gave back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// The MSS the SYN-ACK announced and the connection uses.
    pub mss: u16,
    /// Periods since it was made (0 or 1).
    pub age: u64,
}

/// The cookie jar: the keys of the recent periods. No per-connection state.
#[derive(Debug)]
pub struct SynCookies {
    source: KeySource,
    /// (counter, key), newest last, at most [`KEPT`].
    keys: Vec<(u64, [u8; 16])>,
}

impl SynCookies {
    pub fn new(source: KeySource) -> SynCookies {
        SynCookies {
            source,
            keys: Vec::with_capacity(KEPT),
        }
    }

    /// Whether cookies were made recently enough that an ACK may carry one
    /// (Linux checks an ACK for a cookie only after a recent overflow).
    pub fn active(&self, now: Instant) -> bool {
        let c = Self::counter(now);
        self.keys
            .iter()
            .any(|(kc, _)| c.saturating_sub(*kc) <= MAX_AGE)
    }

    /// The time counter at `now`.
    pub fn counter(now: Instant) -> u64 {
        now.total_millis().max(0) as u64 / (PERIOD_SECS * 1000)
    }

    /// The largest MSS of the table that `mss` (the client's, or the
    /// protocol's default when it sent none) allows, and its index.
    pub fn mss_index(mss: u16, ipv6: bool) -> (u8, u16) {
        let table = if ipv6 { &MSS_V6 } else { &MSS_V4 };
        let i = table.iter().rposition(|m| *m <= mss).unwrap_or(0);
        (i as u8, table[i])
    }

    /// The ISN of a SYN-ACK that answers a SYN with ISN `client_isn` on
    /// `quad` (local = ours), whose MSS option allows `mss`; and the MSS
    /// that the SYN-ACK must announce.
    pub fn make(&mut self, now: Instant, quad: &Quad, client_isn: u32, mss: u16) -> (u32, u16) {
        let c = Self::counter(now);
        let key = self.key_for(c);
        let (index, mss) = Self::mss_index(mss, quad.local.is_ipv6());
        let cookie =
            (mac(&key, quad, client_isn, c) & !0xF) | ((c as u32 & 3) << 2) | u32::from(index);
        (cookie, mss)
    }

    /// Checks the cookie that an ACK returned: `ack_number - 1` is the
    /// cookie, `seq_number - 1` the client's ISN.
    pub fn check(
        &self,
        now: Instant,
        quad: &Quad,
        client_isn: u32,
        cookie: u32,
    ) -> Result<Accepted, Rejected> {
        let now_c = Self::counter(now);
        // The one counter of the last four periods with these two bits.
        let low = u64::from((cookie >> 2) & 3);
        let age = (now_c.wrapping_sub(low)) & 3;
        let Some(c) = now_c.checked_sub(age) else {
            return Err(Rejected::Invalid);
        };
        let Some((_, key)) = self.keys.iter().find(|(kc, _)| *kc == c) else {
            return Err(Rejected::Invalid);
        };
        if (mac(key, quad, client_isn, c) ^ cookie) & !0xF != 0 {
            return Err(Rejected::Invalid);
        }
        if age > MAX_AGE {
            return Err(Rejected::Expired);
        }
        let table = if quad.local.is_ipv6() {
            &MSS_V6
        } else {
            &MSS_V4
        };
        Ok(Accepted {
            mss: table[(cookie & 3) as usize],
            age,
        })
    }

    /// The key of period `c`, made when its first cookie is, and the keys
    /// of periods too old to tell apart dropped.
    fn key_for(&mut self, c: u64) -> [u8; 16] {
        if let Some((_, key)) = self.keys.iter().find(|(kc, _)| *kc == c) {
            return *key;
        }
        self.keys
            .retain(|(kc, _)| c.saturating_sub(*kc) < KEPT as u64 && *kc <= c);
        let key = match self.source {
            KeySource::Os => {
                let mut key = [0u8; 16];
                if getrandom::fill(&mut key).is_err() {
                    // No randomness from the OS: derive one from the clock and
                    // the address of this jar rather than refuse to answer.
                    let t = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_nanos() as u64);
                    key[..8].copy_from_slice(&t.to_le_bytes());
                    key[8..].copy_from_slice(&(self as *const _ as u64).to_le_bytes());
                }
                key
            }
            KeySource::Seeded(seed) => {
                let mut h = SipHasher24::new_with_keys(seed, c);
                h.write_u64(seed);
                let a = h.finish();
                h.write_u64(a);
                let b = h.finish();
                let mut key = [0u8; 16];
                key[..8].copy_from_slice(&a.to_le_bytes());
                key[8..].copy_from_slice(&b.to_le_bytes());
                key
            }
        };
        self.keys.push((c, key));
        key
    }
}

/// The MSS a SYN allows, as a cookie's table sees it: its option, or the
/// protocol's default without one (RFC 9293 3.7.1: 536; IPv6: 1220), and
/// never more than our own link carries.
pub fn client_mss(options: &SynOptions, ipv6: bool, mtu: usize) -> u16 {
    let header = if ipv6 { 60 } else { 40 };
    let ours = u16::try_from(mtu.saturating_sub(header)).unwrap_or(u16::MAX);
    let theirs = options
        .mss
        .filter(|m| *m > 0)
        .unwrap_or(if ipv6 { 1220 } else { 536 });
    theirs.min(ours)
}

/// The SYN-ACK that carries a cookie: from `quad.local` to `quad.remote`,
/// ISN `cookie`, acknowledging `client_isn`, announcing `mss` and nothing
/// else (see the module's note), a window of 65,535 bytes unscaled.
pub fn syn_ack(quad: &Quad, cookie: u32, client_isn: u32, mss: u16) -> Vec<u8> {
    let ip = match (quad.local.ip(), quad.remote.ip()) {
        (IpAddr::V4(l), IpAddr::V4(r)) => PacketBuilder::ipv4(l.octets(), r.octets(), 64),
        (IpAddr::V6(l), IpAddr::V6(r)) => PacketBuilder::ipv6(l.octets(), r.octets(), 64),
        _ => return Vec::new(),
    };
    let tcp = ip
        .tcp(quad.local.port(), quad.remote.port(), cookie, u16::MAX)
        .syn()
        .ack(client_isn.wrapping_add(1));
    let Ok(tcp) = tcp.options(&[TcpOptionElement::MaximumSegmentSize(mss)]) else {
        return Vec::new();
    };
    let mut v = Vec::with_capacity(tcp.size(0));
    if tcp.write(&mut v, &[]).is_err() {
        v.clear();
    }
    v
}

/// The SYN that a cookie stands for, rebuilt from the ACK that returned it
/// (`ack`): the client's ISN, its window, the MSS the cookie carried. The
/// engine is given this SYN, then the ACK, and the connection is made as if
/// it had waited in the SYN queue all along.
pub fn rebuilt_syn(ack: &Segment, mss: u16) -> (Segment, Vec<u8>) {
    let quad = ack.quad;
    let isn = ack.seq.wrapping_sub(1);
    let seg = Segment {
        quad,
        seq: isn,
        ack_number: 0,
        syn: true,
        ack: false,
        fin: false,
        rst: false,
        payload_len: 0,
        window: ack.window,
        options: SynOptions {
            mss: Some(mss),
            ..SynOptions::default()
        },
        tsval: None,
    };
    let ip = match (quad.remote.ip(), quad.local.ip()) {
        (IpAddr::V4(r), IpAddr::V4(l)) => PacketBuilder::ipv4(r.octets(), l.octets(), 64),
        (IpAddr::V6(r), IpAddr::V6(l)) => PacketBuilder::ipv6(r.octets(), l.octets(), 64),
        _ => return (seg, Vec::new()),
    };
    let tcp = ip
        .tcp(quad.remote.port(), quad.local.port(), isn, ack.window)
        .syn();
    let mut v = Vec::new();
    if let Ok(tcp) = tcp.options(&[TcpOptionElement::MaximumSegmentSize(mss)]) {
        let _ = tcp.write(&mut v, &[]);
    }
    (seg, v)
}

/// SipHash-2-4 of the 4-tuple, the client's ISN and the counter, under `key`.
fn mac(key: &[u8; 16], quad: &Quad, client_isn: u32, c: u64) -> u32 {
    let mut h = SipHasher24::new_with_key(key);
    for addr in [quad.local, quad.remote] {
        match addr.ip() {
            IpAddr::V4(ip) => h.write(&ip.octets()),
            IpAddr::V6(ip) => h.write(&ip.octets()),
        }
        h.write_u16(addr.port());
    }
    h.write_u32(client_isn);
    h.write_u64(c);
    h.finish() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quad() -> Quad {
        Quad::new(
            "10.203.80.2:80".parse().unwrap(),
            "10.203.80.1:51234".parse().unwrap(),
        )
    }

    fn at(secs: u64) -> Instant {
        Instant::from_secs(secs as i64)
    }

    #[test]
    fn a_cookie_comes_back_with_its_mss() {
        let mut jar = SynCookies::new(KeySource::Seeded(7));
        let (cookie, mss) = jar.make(at(1000), &quad(), 0x1234_5678, 1460);
        assert_eq!(mss, 1460);
        assert_eq!(
            jar.check(at(1000), &quad(), 0x1234_5678, cookie),
            Ok(Accepted { mss: 1460, age: 0 })
        );
    }

    #[test]
    fn another_tuple_or_isn_or_bit_is_invalid() {
        let mut jar = SynCookies::new(KeySource::Seeded(7));
        let q = quad();
        let (cookie, _) = jar.make(at(1000), &q, 99, 1460);
        let other = Quad::new(q.local, "10.203.80.1:51235".parse().unwrap());
        assert_eq!(
            jar.check(at(1000), &other, 99, cookie),
            Err(Rejected::Invalid)
        );
        assert_eq!(jar.check(at(1000), &q, 100, cookie), Err(Rejected::Invalid));
        for bit in 4..32 {
            assert_eq!(
                jar.check(at(1000), &q, 99, cookie ^ (1 << bit)),
                Err(Rejected::Invalid),
                "bit {bit}"
            );
        }
    }

    #[test]
    fn a_cookie_lasts_its_period_and_the_next_then_expires() {
        let mut jar = SynCookies::new(KeySource::Seeded(7));
        let q = quad();
        let start = 10 * PERIOD_SECS; // the start of a period
        let (cookie, _) = jar.make(at(start), &q, 5, 1460);
        let age = |secs| jar.check(at(secs), &q, 5, cookie);
        assert_eq!(age(start + PERIOD_SECS - 1).map(|a| a.age), Ok(0));
        assert_eq!(age(start + PERIOD_SECS).map(|a| a.age), Ok(1));
        assert_eq!(age(start + 2 * PERIOD_SECS - 1).map(|a| a.age), Ok(1));
        assert_eq!(age(start + 2 * PERIOD_SECS), Err(Rejected::Expired));
        assert_eq!(age(start + 3 * PERIOD_SECS), Err(Rejected::Expired));
        // Four periods on, the counter's two bits name a period whose key
        // was never made: indistinguishable from a guess.
        assert_eq!(age(start + 4 * PERIOD_SECS), Err(Rejected::Invalid));
    }

    #[test]
    fn keys_rotate_each_period_and_old_ones_are_dropped() {
        let mut jar = SynCookies::new(KeySource::Seeded(7));
        let q = quad();
        let (a, _) = jar.make(at(0), &q, 5, 1460);
        let (b, _) = jar.make(at(PERIOD_SECS), &q, 5, 1460);
        assert_ne!(a & !0xF, b & !0xF, "a new period, a new key");
        for p in 2..10 {
            jar.make(at(p * PERIOD_SECS), &q, 5, 1460);
        }
        assert_eq!(jar.keys.len(), KEPT);
        assert_eq!(jar.keys[0].0, 9 + 1 - KEPT as u64);
    }

    #[test]
    fn os_keys_differ_between_jars() {
        let q = quad();
        let (a, _) = SynCookies::new(KeySource::Os).make(at(0), &q, 5, 1460);
        let (b, _) = SynCookies::new(KeySource::Os).make(at(0), &q, 5, 1460);
        assert_ne!(a, b);
    }

    #[test]
    fn mss_index_takes_the_largest_the_client_allows() {
        assert_eq!(SynCookies::mss_index(1460, false), (3, 1460));
        assert_eq!(SynCookies::mss_index(1459, false), (2, 1440));
        assert_eq!(SynCookies::mss_index(1440, false), (2, 1440));
        assert_eq!(SynCookies::mss_index(1300, false), (1, 1300));
        assert_eq!(SynCookies::mss_index(1299, false), (0, 536));
        assert_eq!(SynCookies::mss_index(536, false), (0, 536));
        assert_eq!(
            SynCookies::mss_index(100, false),
            (0, 536),
            "never below the table"
        );
        assert_eq!(SynCookies::mss_index(u16::MAX, false), (3, 1460));
        assert_eq!(SynCookies::mss_index(1220, true), (0, 1220));
        assert_eq!(SynCookies::mss_index(65000, true), (3, 1440));
        let mut jar = SynCookies::new(KeySource::Seeded(1));
        let v6 = Quad::new(
            "[fd00::2]:80".parse().unwrap(),
            "[fd00::1]:4000".parse().unwrap(),
        );
        for (mss, want) in [(1220, 1220), (1300, 1280), (1439, 1400), (9000, 1440)] {
            let (cookie, announced) = jar.make(at(0), &v6, 1, mss);
            assert_eq!(announced, want);
            assert_eq!(jar.check(at(0), &v6, 1, cookie).map(|a| a.mss), Ok(want));
        }
    }

    #[test]
    fn guesses_almost_never_pass() {
        let mut jar = SynCookies::new(KeySource::Seeded(3));
        let q = quad();
        jar.make(at(0), &q, 5, 1460);
        let passed = (0..200_000u32)
            .filter(|g| {
                jar.check(at(0), &q, 5, g.wrapping_mul(2_654_435_761))
                    .is_ok()
            })
            .count();
        // 28 bits of hash: one in 2^28 passes; 200,000 guesses, expect 0.
        assert!(passed <= 1, "{passed} guesses passed");
    }
}
