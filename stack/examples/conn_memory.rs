//! Resident memory per idle established connection in the sans-IO core:
//! N clients complete a handshake and are accepted, then nothing happens.
//!
//!     cargo run --release --example conn_memory -- [N]
//!
//! Reads VmRSS and VmSize from /proc/self/status before and after; the
//! difference divided by N is what one idle connection costs the core
//! (the socket, its buffers as far as they are touched, the demux entry,
//! its story). `scripts/bench.sh` measures the whole process instead.

use std::net::Ipv4Addr;

use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};
use portlab::time::Instant;
use portlab::{NetConfig, NetStack};

fn status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn tcp(port: u16, seq: u32, ack: Option<u32>, syn: bool) -> Vec<u8> {
    let client = [10, 0, 0, 1 + (port / 50000) as u8];
    let mut b = PacketBuilder::ipv4(client, [10, 0, 0, 2], 64).tcp(port, 80, seq, 64240);
    if syn {
        b = b.syn();
    }
    if let Some(a) = ack {
        b = b.ack(a);
    }
    let mut v = Vec::new();
    let _ = b.write(&mut v, &[]);
    v
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let mut cfg = NetConfig::new(Ipv4Addr::new(10, 0, 0, 2), 24);
    cfg.max_sockets = n + 10;
    cfg.syn_queue_cap = n + 10;
    let now = Instant::from_secs(1_000);
    let mut stack = NetStack::new(cfg, now);
    let listener = stack.listen(now, 80, n + 10).expect("listen");
    let (rss0, vsz0) = (status_kib("VmRSS:"), status_kib("VmSize:"));
    let mut accepted = Vec::with_capacity(n);
    for i in 0..n {
        let port = 10_000 + (i % 50_000) as u16;
        let isn = 1_000 + i as u32;
        stack.receive(now, &tcp(port, isn, None, true));
        let mut server_isn = None;
        while let Some(p) = stack.take_transmit() {
            if let Ok(s) = SlicedPacket::from_ip(&p)
                && let Some(TransportSlice::Tcp(t)) = s.transport
                && t.syn()
            {
                server_isn = Some(t.sequence_number());
            }
        }
        let Some(server_isn) = server_isn else {
            eprintln!("no SYN-ACK for client {i}");
            std::process::exit(1);
        };
        stack.receive(now, &tcp(port, isn + 1, Some(server_isn + 1), false));
        while stack.take_transmit().is_some() {}
        match stack.accept(now, listener, None) {
            Ok(Some((id, _))) => accepted.push(id),
            _ => {
                eprintln!("connection {i} was not accepted");
                std::process::exit(1);
            }
        }
    }
    let mut events = Vec::new();
    stack.drain_events(&mut events);
    drop(events);
    let (rss1, vsz1) = (status_kib("VmRSS:"), status_kib("VmSize:"));
    println!(
        "{{\"connections\":{},\"rss_kib_per_conn\":{:.2},\"vsz_kib_per_conn\":{:.2}}}",
        accepted.len(),
        (rss1.saturating_sub(rss0)) as f64 / n as f64,
        (vsz1.saturating_sub(vsz0)) as f64 / n as f64
    );
}
