//! Fixed-seed sweeps of hostile and random input, so that every `cargo test`
//! exercises what a fuzzer would: random bytes, mutated packets, crafted TCP
//! headers with absurd options, and random sessions against a small backlog
//! with time jumps and application calls. Asserted throughout: no panic, the
//! SYN queue within its cap, the accept queue within the backlog, sockets
//! within the limit, every packet the stack sends well-formed; and at the end
//! of a session, every socket closed and freed.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use etherparse::{PacketBuilder, SlicedPacket, TcpOptionElement, TransportSlice};
use portlab::{NetConfig, NetStack, SocketId};
use smoltcp::time::{Duration, Instant};

const STACK: [u8; 4] = [10, 0, 0, 2];
const STACK6: [u8; 16] = [0xfd, 0x70, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
const SYN_CAP: usize = 8;
const BACKLOG: usize = 3;
const MAX_SOCKETS: usize = 48;

/// A small deterministic generator (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn u32(&mut self) -> u32 {
        self.next() as u32
    }
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

/// The invariants that must hold after every step.
fn check(stack: &mut NetStack) {
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
    while let Some(p) = stack.take_transmit() {
        assert!(
            SlicedPacket::from_ip(&p).is_ok(),
            "the stack sent a malformed packet: {p:?}"
        );
    }
}

/// A TCP segment with random fields and options, from a random client.
fn crafted_tcp(rng: &mut Rng) -> Vec<u8> {
    let port = 40000 + rng.below(16) as u16;
    let dst = [80, 81, 7, 9][rng.below(4) as usize];
    let mut b = if rng.chance(20) {
        let mut src = STACK6;
        src[15] = 1 + rng.below(3) as u8;
        PacketBuilder::ipv6(src, STACK6, 64).tcp(port, dst, rng.u32(), rng.below(65536) as u16)
    } else {
        PacketBuilder::ipv4([10, 0, 0, 1 + rng.below(3) as u8], STACK, 64).tcp(
            port,
            dst,
            rng.u32(),
            rng.below(65536) as u16,
        )
    };
    if rng.chance(50) {
        b = b.syn();
    }
    if rng.chance(60) {
        b = b.ack(rng.u32());
    }
    if rng.chance(10) {
        b = b.fin();
    }
    if rng.chance(10) {
        b = b.rst();
    }
    let mut opts = Vec::new();
    if rng.chance(50) {
        opts.push(TcpOptionElement::MaximumSegmentSize(
            [0, 1, 536, 1460, 65535][rng.below(5) as usize],
        ));
    }
    if rng.chance(40) {
        opts.push(TcpOptionElement::WindowScale(
            [0, 7, 14, 255][rng.below(4) as usize],
        ));
    }
    if rng.chance(30) {
        opts.push(TcpOptionElement::SelectiveAcknowledgementPermitted);
    }
    if rng.chance(30) {
        opts.push(TcpOptionElement::Timestamp(rng.u32(), rng.u32()));
    }
    if rng.chance(20) {
        let edge = u32::MAX - rng.below(10) as u32;
        opts.push(TcpOptionElement::SelectiveAcknowledgement(
            (edge, edge.wrapping_add(5)),
            [None; 3],
        ));
    }
    let b = match b.options(&opts) {
        Ok(b) => b,
        Err(_) => return Vec::new(),
    };
    let payload: Vec<u8> = (0..rng.below(40)).map(|_| rng.next() as u8).collect();
    let mut v = Vec::new();
    let _ = b.write(&mut v, &payload);
    v
}

/// Random damage: flipped bits, truncation, or garbage.
fn mutate(rng: &mut Rng, mut p: Vec<u8>) -> Vec<u8> {
    match rng.below(4) {
        0 => (0..rng.below(80)).map(|_| rng.next() as u8).collect(),
        1 => {
            let cut = rng.below(p.len() as u64 + 1) as usize;
            p.truncate(cut);
            p
        }
        _ => {
            for _ in 0..1 + rng.below(4) {
                if !p.is_empty() {
                    let i = rng.below(p.len() as u64) as usize;
                    p[i] ^= 1 << rng.below(8);
                }
            }
            p
        }
    }
}

fn ingress_sweep(seed: u64) {
    let mut rng = Rng(seed);
    let (mut stack, mut now) = new_stack(seed);
    let l80 = stack.listen(now, 80, BACKLOG).unwrap();
    stack.listen_reuse(now, 81, BACKLOG).unwrap();
    stack.listen_reuse(now, 81, BACKLOG).unwrap();
    stack.udp_bind(now, 7, false).unwrap();
    let mut accepted: Vec<SocketId> = Vec::new();
    for _ in 0..1500 {
        let p = crafted_tcp(&mut rng);
        let p = if rng.chance(40) {
            mutate(&mut rng, p)
        } else {
            p
        };
        stack.receive(now, &p);
        if rng.chance(10) {
            now += Duration::from_millis(rng.below(5000));
            stack.poll_timers(now);
        }
        if rng.chance(10)
            && let Ok(Some((id, _))) = stack.accept(now, l80, None)
        {
            accepted.push(id);
        }
        if rng.chance(5) && !accepted.is_empty() {
            let id = accepted.swap_remove(rng.below(accepted.len() as u64) as usize);
            let mut buf = [0u8; 64];
            let _ = stack.recv(now, id, &mut buf);
            let _ = stack.send(now, id, b"hello");
            stack.close(now, id);
        }
        check(&mut stack);
    }
}

#[test]
fn hostile_ingress_never_panics_and_keeps_the_bounds() {
    for seed in 0..16 {
        ingress_sweep(seed);
    }
}

/// A client of the session sweep, tracking the stack's sequence numbers.
struct Peer {
    port: u16,
    seq: u32,
    ack: Option<u32>,
}

fn segment(peer: &Peer, flags: u8, payload: &[u8], seq: u32) -> Vec<u8> {
    let mut b = PacketBuilder::ipv4([10, 0, 0, 1], STACK, 64).tcp(peer.port, 80, seq, 64240);
    if flags & 1 != 0 {
        b = b.syn();
    }
    if let Some(a) = peer.ack
        && flags & 2 != 0
    {
        b = b.ack(a);
    }
    if flags & 4 != 0 {
        b = b.fin();
    }
    if flags & 8 != 0 {
        b = b.rst();
    }
    let mut v = Vec::new();
    b.write(&mut v, payload).unwrap();
    v
}

/// Runs one random session; returns how many connections the application accepted.
fn session_sweep(seed: u64) -> usize {
    let mut rng = Rng(seed ^ 0xabcdef);
    let (mut stack, mut now) = new_stack(seed);
    let mut listener = Some(stack.listen(now, 80, BACKLOG).unwrap());
    let mut peers: Vec<Peer> = Vec::new();
    let mut apps: Vec<SocketId> = Vec::new();
    let mut accepted = 0;
    for _ in 0..800 {
        match rng.below(12) {
            0 if peers.len() < 24 => {
                let p = Peer {
                    port: 30000 + peers.len() as u16,
                    seq: rng.u32(),
                    ack: None,
                };
                stack.receive(now, &segment(&p, 1, &[], p.seq));
                peers.push(p);
            }
            1..=4 if !peers.is_empty() => {
                let i = rng.below(peers.len() as u64) as usize;
                let flags = [2, 2, 2 | 4, 8, 1][rng.below(5) as usize];
                let payload: Vec<u8> = if flags == 2 && rng.chance(60) {
                    b"GET / HTTP/1.1\r\n\r\n".to_vec()
                } else {
                    Vec::new()
                };
                let p = &mut peers[i];
                // Mostly in sequence; sometimes stale or far ahead.
                let seq = match rng.below(10) {
                    0 => p.seq.wrapping_sub(rng.below(100_000) as u32),
                    1 => p.seq.wrapping_add(rng.below(1 << 30) as u32),
                    _ => p.seq.wrapping_add(1),
                };
                stack.receive(now, &segment(p, flags, &payload, seq));
                if seq == p.seq.wrapping_add(1) {
                    p.seq = p
                        .seq
                        .wrapping_add(payload.len() as u32 + u32::from(flags & 4 != 0));
                }
            }
            5 => {
                now += Duration::from_millis([1, 20, 300, 3000, 20_000][rng.below(5) as usize]);
                stack.poll_timers(now);
            }
            6 => {
                if let Some(l) = listener
                    && let Ok(Some((id, _))) = stack.accept(now, l, None)
                {
                    apps.push(id);
                    accepted += 1;
                }
            }
            7 if !apps.is_empty() => {
                let id = apps[rng.below(apps.len() as u64) as usize];
                let mut buf = [0u8; 128];
                let _ = stack.recv(now, id, &mut buf);
                let _ = stack.send(now, id, b"HTTP/1.1 200 OK\r\n\r\n");
            }
            8 if !apps.is_empty() => {
                let id = apps.swap_remove(rng.below(apps.len() as u64) as usize);
                if rng.chance(50) {
                    let _ = stack.shutdown(now, id, std::net::Shutdown::Write);
                }
                stack.close(now, id);
            }
            9 if rng.chance(10) => {
                if let Some(l) = listener.take() {
                    stack.close_listener(now, l);
                } else {
                    listener = Some(stack.listen(now, 80, BACKLOG).unwrap());
                }
            }
            _ => {}
        }
        // The peers learn the stack's sequence numbers from what it sends.
        let t = stack.table();
        for l in &t.listeners {
            assert!(l.syn_queue <= SYN_CAP && l.accept_queue <= l.backlog + 1);
        }
        let mut sent = Vec::new();
        while let Some(p) = stack.take_transmit() {
            sent.push(p);
        }
        let by_port: HashMap<u16, usize> =
            peers.iter().enumerate().map(|(i, p)| (p.port, i)).collect();
        for p in sent {
            let s = SlicedPacket::from_ip(&p).expect("the stack sent a malformed packet");
            if let Some(TransportSlice::Tcp(t)) = s.transport
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
    // The sweep must have done real work, not bounced off the stack.
    let st = stack.stats().clone();
    assert!(
        st.sockets_created >= 3,
        "seed {seed}: only {} sockets created",
        st.sockets_created
    );
    eprintln!(
        "seed {seed}: {} sockets, {accepted} accepted, {} resets, {} SYNs dropped, {} handshakes held",
        st.sockets_created, st.resets_sent, st.syns_dropped, st.handshakes_held
    );
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
    assert!(left.is_empty(), "seed {seed}: sockets left: {left:?}");
    accepted
}

#[test]
fn random_sessions_end_with_every_socket_closed_and_freed() {
    let accepted: usize = (0..24).map(session_sweep).sum();
    // The sweep must have reached the interesting states, not bounced off.
    assert!(
        accepted >= 50,
        "only {accepted} connections accepted in all sessions"
    );
}
