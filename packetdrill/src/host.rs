//! The stack under packetdrill's clock: packets in, packets out, time.
//!
//! portlab's core is sans-IO: it is given `now` and bytes and hands back
//! packets. Here `now` is a virtual clock that only packetdrill moves:
//!
//! * `usleep(n)` moves it `n` µs forward, firing every timer that falls due
//!   on the way, each at its own time, so a retransmission sent 1 s after
//!   the SYN-ACK carries the time of 1 s, not the time the sleep ended;
//! * `gettimeofday` reads it and moves it one microsecond, because
//!   packetdrill spins on the clock for the last 20 µs before each event
//!   and a clock that never moves would spin forever;
//! * sniffing the next outbound packet when none is waiting moves it to the
//!   stack's next timer: the packet leaves when the stack would send it.
//!
//! Every packet the stack sends is kept with the time it left, and
//! packetdrill compares that time with the script's.

use std::collections::VecDeque;

use portlab::time::{Duration, Instant};
use portlab::{NetStack, Record};

use crate::flags::Flags;
use crate::sockets::Sockets;

/// Where the virtual clock starts: a Unix time, so that traces read as
/// ordinary times (2023-11-14).
pub const EPOCH_SECS: i64 = 1_700_000_000;

/// How far sniffing moves the clock looking for the next packet before it
/// gives up: longer than smoltcp's retransmissions back off to.
pub const SNIFF_HORIZON: Duration = Duration::from_secs(600);

/// A packet the stack sent, and when.
#[derive(Debug, Clone, PartialEq)]
pub struct Outbound {
    pub packet: Vec<u8>,
    pub at: Instant,
}

/// The stack, its clock, its sockets as file descriptors, and what it sent.
pub struct Host {
    pub(crate) stack: NetStack,
    now: Instant,
    outbox: VecDeque<Outbound>,
    pub(crate) sockets: Sockets,
    print_events: bool,
    records: Vec<Record>,
    /// Remote ports whose handshakes are completed here (`complete=`).
    complete: Vec<u16>,
}

impl Host {
    pub fn new(flags: &Flags) -> Host {
        let now = Instant::from_secs(EPOCH_SECS);
        Host {
            stack: NetStack::new(flags.config.clone(), now),
            now,
            outbox: VecDeque::new(),
            sockets: Sockets::default(),
            print_events: flags.events,
            records: Vec::new(),
            complete: flags.complete.clone(),
        }
    }

    /// The virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// `gettimeofday`: the time, then one microsecond later.
    pub fn read_clock(&mut self) -> Instant {
        let t = self.now;
        self.advance_to(t + Duration::from_micros(1));
        t
    }

    /// A packet from packetdrill (`netdev_send`): the stack takes it now.
    pub fn inject(&mut self, packet: &[u8]) {
        self.stack.receive(self.now, packet);
        self.settle();
    }

    /// Moves the clock to `t`, firing each timer due on the way at its own
    /// time.
    pub fn advance_to(&mut self, t: Instant) {
        while let Some(due) = self.stack.poll_at() {
            if due > t {
                break;
            }
            // A timer due in the past fires now; time never goes back.
            if due > self.now {
                self.now = due;
            }
            self.settle();
            if self.stack.poll_at().is_some_and(|next| next <= self.now) {
                // Due again at once (the engine asked to be polled now):
                // step a microsecond rather than spin.
                self.now += Duration::from_micros(1);
                if self.now > t {
                    break;
                }
            }
        }
        if t > self.now {
            self.now = t;
        }
        self.settle();
    }

    /// Moves the clock to the stack's next timer, if it has one before
    /// `limit`. Whether it did.
    pub fn advance_to_next_timer(&mut self, limit: Instant) -> bool {
        match self.stack.poll_at() {
            Some(due) if due <= limit => {
                self.advance_to(due.max(self.now + Duration::from_micros(1)));
                true
            }
            _ => false,
        }
    }

    /// The next packet the stack sent (`netdev_receive`). With none waiting
    /// the clock moves on to the stack's next timer, up to
    /// [`SNIFF_HORIZON`]; `None` if the stack stays silent that long.
    pub fn sniff(&mut self) -> Option<Outbound> {
        let limit = self.now + SNIFF_HORIZON;
        loop {
            if let Some(out) = self.outbox.pop_front() {
                return Some(out);
            }
            if !self.advance_to_next_timer(limit) {
                return None;
            }
        }
    }

    /// Whether the stack has sent a packet packetdrill has not sniffed.
    pub fn has_outbound(&self) -> bool {
        !self.outbox.is_empty()
    }

    /// Runs the stack's timers at `now` and keeps what it sent: after every
    /// packet and every socket call.
    pub(crate) fn settle(&mut self) {
        self.stack.poll_timers(self.now);
        while let Some(packet) = self.stack.take_transmit() {
            if let Some(ack) = completing_ack(&packet, &self.complete) {
                // A background client: it acknowledges at once, and
                // packetdrill never sees its SYN-ACK.
                self.stack.receive(self.now, &ack);
                self.stack.poll_timers(self.now);
                continue;
            }
            self.outbox.push_back(Outbound {
                packet,
                at: self.now,
            });
        }
        self.stack.drain_events(&mut self.records);
        if self.print_events {
            for r in &self.records {
                let since = r.ts - Instant::from_secs(EPOCH_SECS);
                eprintln!(
                    "portlab {:>10.6} {}",
                    since.total_micros() as f64 / 1e6,
                    r.human()
                );
            }
        }
        self.records.clear();
    }
}

/// The ACK a background client on one of `ports` sends for `packet`, if
/// `packet` is a SYN-ACK to it.
fn completing_ack(packet: &[u8], ports: &[u16]) -> Option<Vec<u8>> {
    use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
    if ports.is_empty() {
        return None;
    }
    let sliced = SlicedPacket::from_ip(packet).ok()?;
    let Some(TransportSlice::Tcp(tcp)) = sliced.transport else {
        return None;
    };
    if !(tcp.syn() && tcp.ack() && ports.contains(&tcp.destination_port())) {
        return None;
    }
    let builder = match sliced.net? {
        NetSlice::Ipv4(ip) => {
            let h = ip.header();
            PacketBuilder::ipv4(h.destination(), h.source(), 64)
        }
        NetSlice::Ipv6(ip) => {
            let h = ip.header();
            PacketBuilder::ipv6(h.destination(), h.source(), 64)
        }
        _ => return None,
    };
    let builder = builder
        .tcp(
            tcp.destination_port(),
            tcp.source_port(),
            tcp.acknowledgment_number(),
            u16::MAX,
        )
        .ack(tcp.sequence_number().wrapping_add(1));
    let mut out = Vec::with_capacity(builder.size(0));
    builder.write(&mut out, &[]).ok()?;
    Some(out)
}
