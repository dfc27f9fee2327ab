//! Fuzz harnesses: the sans-IO core driven by arbitrary bytes, with its
//! bounds asserted after every step.
//!
//! Two harnesses, each a function of one byte string so that `cargo fuzz`
//! (see `fuzz/`) and the fixed-seed sweeps of `cargo test`
//! (`tests/fuzz_sweep.rs`) run exactly the same code:
//!
//! * [`ingress`] — hostile packets: raw bytes (with or without repaired
//!   checksums), crafted TCP headers with absurd options, damaged copies of
//!   them, UDP and ICMP, interleaved with time jumps and application calls;
//! * [`session`] — clients that track the stack's live sequence numbers and
//!   send in-window, stale and far-ahead segments, SYNs, FINs and RSTs
//!   against a small backlog, while the application accepts, reads, writes,
//!   shuts down and closes; at the end every socket must be closed and freed.
//!
//! The input is read as a stream of choices ([`Choices`]); once it runs out
//! every choice is zero, so any input is valid and short inputs are cheap.
//! Asserted after every step: no panic, each SYN queue within its cap, each
//! accept queue within its backlog, sockets within the limit, and every
//! packet the stack sends well-formed.
//!
//! May use: wire, observe, transport, device, engine, api, config.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown};

use etherparse::{PacketBuilder, SlicedPacket, TcpOptionElement, TransportSlice};
use smoltcp::time::{Duration, Instant};

use crate::observe::table::Stats;
use crate::wire::checksum::fill_checksums;
use crate::{NetConfig, NetStack, SocketId};

/// The stack's addresses in the harnesses.
pub const STACK: [u8; 4] = [10, 0, 0, 2];
pub const STACK6: [u8; 16] = [0xfd, 0x70, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
/// Small limits, so that the fuzzer reaches them.
pub const SYN_CAP: usize = 8;
pub const BACKLOG: usize = 3;
pub const MAX_SOCKETS: usize = 48;
/// Steps per input at most, so that one input cannot run for long.
const MAX_STEPS: usize = 4096;

/// The fuzzer's input read as a stream of choices.
pub struct Choices<'a> {
    data: &'a [u8],
}

impl<'a> Choices<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Choices { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        let raw = if n <= 256 {
            u64::from(self.byte())
        } else if n <= 65536 {
            u64::from(self.u16())
        } else {
            u64::from(self.u32())
        };
        raw % n.max(1)
    }

    /// True with about `percent` percent probability for random input.
    pub fn chance(&mut self, percent: u64) -> bool {
        u64::from(self.byte()) * 100 / 256 < percent
    }

    /// Up to `n` raw bytes.
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }
}

/// Pseudo-random input for a fixed-seed sweep (splitmix64): what a fuzzer
/// would pass, reproducible from the seed.
pub fn seeded_input(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn new_stack(seed: u64) -> (NetStack, Instant) {
    let mut cfg = NetConfig::new(Ipv4Addr::from(STACK), 24);
    cfg.addr6 = Some(Ipv6Addr::from(STACK6));
    cfg.seed = seed;
    cfg.syn_queue_cap = SYN_CAP;
    cfg.max_sockets = MAX_SOCKETS;
    cfg.rx_buffer = 4096;
    cfg.tx_buffer = 4096;
    let now = Instant::from_secs(1_000_000);
    (NetStack::new(cfg, now), now)
}

/// The bounds that must hold after every step; returns what the stack sent.
fn check(stack: &mut NetStack) -> Vec<Vec<u8>> {
    let t = stack.table();
    for l in &t.listeners {
        assert!(
            l.syn_queue <= SYN_CAP,
            "SYN queue {} over its cap",
            l.syn_queue
        );
        assert!(
            l.accept_queue <= l.backlog + 1,
            "accept queue {} over backlog {}",
            l.accept_queue,
            l.backlog
        );
    }
    assert!(
        stack.socket_count() <= MAX_SOCKETS,
        "{} sockets",
        stack.socket_count()
    );
    let mut sent = Vec::new();
    while let Some(p) = stack.take_transmit() {
        assert!(
            SlicedPacket::from_ip(&p).is_ok(),
            "the stack sent a malformed packet: {p:?}"
        );
        sent.push(p);
    }
    sent
}

/// What one harness run did, so that a sweep can tell that it reached the
/// interesting states rather than bouncing off the stack.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub stats: Stats,
    pub accepted: usize,
}

/// What the ingress harness's clients know of their connections, by client
/// port: their own next sequence number and the stack's, so that some
/// crafted segments are in window and connections get established.
type Known = HashMap<u16, (u32, Option<u32>)>;

/// A TCP segment with chosen fields and options, from one of a few clients.
fn crafted_tcp(c: &mut Choices, known: &mut Known) -> Vec<u8> {
    // Sixteen clients, each with its own 4-tuple: three IPv4 hosts and one
    // IPv6, to ports 80 and 81 (listening), 7 (UDP only) and 9 (closed).
    let client = c.below(16) as u16;
    let port = 40000 + client;
    let dst = [80, 81, 80, 81, 7, 9][usize::from(client % 6)];
    let host = 1 + (client % 3) as u8;
    let syn = c.chance(50);
    let (mut seq, mut ack) = (c.u32(), c.u32());
    if let Some(&(s, a)) = known.get(&port)
        && c.chance(70)
    {
        seq = s;
        ack = a.unwrap_or(ack);
    }
    if syn {
        known.insert(port, (seq.wrapping_add(1), None));
    }
    let mut b = if client % 4 == 3 {
        let mut src = STACK6;
        src[15] = host;
        PacketBuilder::ipv6(src, STACK6, 64).tcp(port, dst, seq, c.u16())
    } else {
        PacketBuilder::ipv4([10, 0, 0, host], STACK, 64).tcp(port, dst, seq, c.u16())
    };
    if syn {
        b = b.syn();
    }
    if c.chance(60) {
        b = b.ack(ack);
    }
    if c.chance(10) {
        b = b.fin();
    }
    if c.chance(10) {
        b = b.rst();
    }
    let mut opts = Vec::new();
    if c.chance(50) {
        opts.push(TcpOptionElement::MaximumSegmentSize(
            [0, 1, 536, 1460, 65535][c.below(5) as usize],
        ));
    }
    if c.chance(40) {
        opts.push(TcpOptionElement::WindowScale(
            [0, 7, 14, 255][c.below(4) as usize],
        ));
    }
    if c.chance(30) {
        opts.push(TcpOptionElement::SelectiveAcknowledgementPermitted);
    }
    if c.chance(30) {
        opts.push(TcpOptionElement::Timestamp(c.u32(), c.u32()));
    }
    if c.chance(20) {
        let edge = u32::MAX - c.below(10) as u32;
        opts.push(TcpOptionElement::SelectiveAcknowledgement(
            (edge, edge.wrapping_add(5)),
            [None; 3],
        ));
    }
    let Ok(b) = b.options(&opts) else {
        return Vec::new();
    };
    let len = c.below(40) as usize;
    let payload = c.bytes(len).to_vec();
    let mut v = Vec::new();
    let _ = b.write(&mut v, &payload);
    v
}

/// The clients learn the stack's sequence numbers from what it sends them.
fn learn(sent: &[Vec<u8>], known: &mut Known) {
    for p in sent {
        if let Ok(s) = SlicedPacket::from_ip(p)
            && let Some(TransportSlice::Tcp(t)) = s.transport
            && let Some(k) = known.get_mut(&t.destination_port())
        {
            let next = t
                .sequence_number()
                .wrapping_add(t.payload().len() as u32)
                .wrapping_add(u32::from(t.syn()) + u32::from(t.fin()));
            k.1 = Some(next);
        }
    }
}

/// A UDP datagram or an ICMP echo request.
fn crafted_other(c: &mut Choices) -> Vec<u8> {
    let b = PacketBuilder::ipv4([10, 0, 0, 1 + c.below(3) as u8], STACK, 64);
    let len = c.below(64) as usize;
    let payload = c.bytes(len).to_vec();
    let mut v = Vec::new();
    let _ = if c.chance(70) {
        b.udp(c.u16(), [7, 9, 53][c.below(3) as usize])
            .write(&mut v, &payload)
    } else {
        b.icmpv4_echo_request(c.u16(), c.u16())
            .write(&mut v, &payload)
    };
    v
}

/// Chosen damage: flipped bits, truncation, or garbage.
fn damage(c: &mut Choices, mut p: Vec<u8>) -> Vec<u8> {
    match c.below(3) {
        0 => {
            let cut = c.below(p.len() as u64 + 1) as usize;
            p.truncate(cut);
        }
        _ => {
            for _ in 0..1 + c.below(4) {
                if !p.is_empty() {
                    let i = c.below(p.len() as u64) as usize;
                    p[i] ^= 1 << c.below(8);
                }
            }
        }
    }
    p
}

/// Sometimes starts or ends a batch: a run of packets handled as the
/// runtime handles what one wake-up reads.
fn maybe_batch(c: &mut Choices, stack: &mut NetStack, now: Instant) {
    match c.below(16) {
        0 => stack.begin_batch(),
        1 => stack.end_batch(now),
        _ => {}
    }
}

/// Hostile packets of every kind, with time jumps and application calls.
pub fn ingress(data: &[u8]) -> Report {
    let mut c = Choices::new(data);
    let (mut stack, mut now) = new_stack(u64::from(c.u32()));
    let mut report = Report::default();
    let (Ok(l80), Ok(l81a), Ok(l81b), Ok(_)) = (
        stack.listen(now, 80, BACKLOG),
        stack.listen_reuse(now, 81, BACKLOG),
        stack.listen_reuse(now, 81, BACKLOG),
        stack.udp_bind(now, 7, false),
    ) else {
        panic!("the harness could not listen on a fresh stack");
    };
    let listeners = [l80, l81a, l81b];
    let mut accepted: Vec<SocketId> = Vec::new();
    let mut known = Known::new();
    let mut steps = 0;
    while !c.is_empty() && steps < MAX_STEPS {
        steps += 1;
        maybe_batch(&mut c, &mut stack, now);
        match c.below(10) {
            0..=3 => {
                let p = crafted_tcp(&mut c, &mut known);
                let p = if c.chance(30) { damage(&mut c, p) } else { p };
                stack.receive(now, &p);
            }
            4 | 5 => {
                let len = c.below(1600) as usize;
                let mut p = c.bytes(len).to_vec();
                if c.chance(70) {
                    fill_checksums(&mut p);
                }
                stack.receive(now, &p);
            }
            6 => {
                let p = crafted_other(&mut c);
                stack.receive(now, &p);
            }
            7 => {
                now += Duration::from_millis(c.below(5000));
                stack.poll_timers(now);
            }
            8 => {
                let l = listeners[c.below(3) as usize];
                if let Ok(Some((id, _))) = stack.accept(now, l, None) {
                    accepted.push(id);
                    report.accepted += 1;
                }
            }
            _ => {
                if !accepted.is_empty() {
                    let id = accepted.swap_remove(c.below(accepted.len() as u64) as usize);
                    let mut buf = [0u8; 64];
                    let _ = stack.recv(now, id, &mut buf);
                    let _ = stack.send(now, id, b"hello");
                    stack.close(now, id);
                }
            }
        }
        learn(&check(&mut stack), &mut known);
    }
    stack.end_batch(now);
    check(&mut stack);
    report.stats = stack.stats().clone();
    report
}

/// A client of the session harness, tracking the stack's sequence numbers.
struct Peer {
    port: u16,
    seq: u32,
    ack: Option<u32>,
}

const SYN: u8 = 1;
const ACK: u8 = 2;
const FIN: u8 = 4;
const RST: u8 = 8;

fn segment(peer: &Peer, flags: u8, payload: &[u8], seq: u32) -> Vec<u8> {
    let mut b = PacketBuilder::ipv4([10, 0, 0, 1], STACK, 64).tcp(peer.port, 80, seq, 64240);
    if flags & SYN != 0 {
        b = b.syn();
    }
    if let Some(a) = peer.ack
        && flags & ACK != 0
    {
        b = b.ack(a);
    }
    if flags & FIN != 0 {
        b = b.fin();
    }
    if flags & RST != 0 {
        b = b.rst();
    }
    let mut v = Vec::new();
    let _ = b.write(&mut v, payload);
    v
}

/// Random sessions against a small backlog; at the end, after the
/// application has closed everything and time has passed, no socket may be
/// left.
pub fn session(data: &[u8]) -> Report {
    let mut c = Choices::new(data);
    let (mut stack, mut now) = new_stack(u64::from(c.u32()));
    let mut listener = stack.listen(now, 80, BACKLOG).ok();
    assert!(listener.is_some(), "could not listen on a fresh stack");
    let mut peers: Vec<Peer> = Vec::new();
    let mut apps: Vec<SocketId> = Vec::new();
    let mut report = Report::default();
    let mut steps = 0;
    while !c.is_empty() && steps < MAX_STEPS {
        steps += 1;
        maybe_batch(&mut c, &mut stack, now);
        match c.below(12) {
            0 if peers.len() < 24 => {
                let p = Peer {
                    port: 30000 + peers.len() as u16,
                    seq: c.u32(),
                    ack: None,
                };
                stack.receive(now, &segment(&p, SYN, &[], p.seq));
                peers.push(p);
            }
            1..=4 if !peers.is_empty() => {
                let i = c.below(peers.len() as u64) as usize;
                let flags = [ACK, ACK, ACK | FIN, RST, SYN][c.below(5) as usize];
                let payload: &[u8] = if flags == ACK && c.chance(60) {
                    b"GET / HTTP/1.1\r\n\r\n"
                } else {
                    &[]
                };
                let p = &mut peers[i];
                // Mostly in sequence; sometimes stale or far ahead.
                let seq = match c.below(10) {
                    0 => p.seq.wrapping_sub(c.below(100_000) as u32),
                    1 => p.seq.wrapping_add(c.below(1 << 30) as u32),
                    _ => p.seq.wrapping_add(1),
                };
                stack.receive(now, &segment(p, flags, payload, seq));
                if seq == p.seq.wrapping_add(1) {
                    p.seq = p
                        .seq
                        .wrapping_add(payload.len() as u32 + u32::from(flags & FIN != 0));
                }
            }
            5 => {
                now += Duration::from_millis([1, 20, 300, 3000, 20_000][c.below(5) as usize]);
                stack.poll_timers(now);
            }
            6 => {
                if let Some(l) = listener
                    && let Ok(Some((id, _))) = stack.accept(now, l, None)
                {
                    apps.push(id);
                    report.accepted += 1;
                }
            }
            7 if !apps.is_empty() => {
                let id = apps[c.below(apps.len() as u64) as usize];
                let mut buf = [0u8; 128];
                let _ = stack.recv(now, id, &mut buf);
                let _ = stack.send(now, id, b"HTTP/1.1 200 OK\r\n\r\n");
            }
            8 if !apps.is_empty() => {
                let id = apps.swap_remove(c.below(apps.len() as u64) as usize);
                if c.chance(50) {
                    let _ = stack.shutdown(now, id, Shutdown::Write);
                }
                stack.close(now, id);
            }
            9 if c.chance(10) => {
                if let Some(l) = listener.take() {
                    stack.close_listener(now, l);
                } else {
                    listener = stack.listen(now, 80, BACKLOG).ok();
                    assert!(listener.is_some(), "could not listen again on port 80");
                }
            }
            _ => {}
        }
        // The peers learn the stack's sequence numbers from what it sends.
        let by_port: HashMap<u16, usize> =
            peers.iter().enumerate().map(|(i, p)| (p.port, i)).collect();
        for p in check(&mut stack) {
            if let Ok(s) = SlicedPacket::from_ip(&p)
                && let Some(TransportSlice::Tcp(t)) = s.transport
                && let Some(&i) = by_port.get(&t.destination_port())
            {
                let next = t
                    .sequence_number()
                    .wrapping_add(t.payload().len() as u32)
                    .wrapping_add(u32::from(t.syn()) + u32::from(t.fin()));
                peers[i].ack = Some(next);
            }
        }
    }
    stack.end_batch(now);
    report.stats = stack.stats().clone();
    // The end: the application closes everything, then time passes.
    for id in apps.drain(..) {
        stack.close(now, id);
    }
    if let Some(l) = listener {
        stack.close_listener(now, l);
    }
    for _ in 0..200 {
        now += Duration::from_secs(1);
        stack.poll_timers(now);
        while stack.take_transmit().is_some() {}
    }
    let left = stack.table().sockets;
    assert!(left.is_empty(), "sockets left: {left:?}");
    report
}
