//! Reading an incoming IP packet just far enough to route it.
//!
//! Before the engine sees a packet, our layer must know which connection it
//! belongs to. [`classify`] parses the IPv4 and TCP headers (with etherparse),
//! checks what the engine would otherwise check later — header and TCP
//! checksums, fragments, impossible addresses — and returns either a TCP
//! [`Segment`] with its 4-tuple, a packet for the engine itself (ICMP echo and
//! anything else that is not TCP), or a reason to drop it.
//!
//! Verifying the TCP checksum here, once, means a corrupted SYN never creates
//! a socket or an event; the engine is then told not to verify it again.
//!
//! IPv4 fragments are dropped and counted: reassembly inside the engine would
//! complete in whichever connection's socket set happened to be passed in.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use etherparse::{IpNumber, Ipv4Slice, Ipv6Slice, TcpOptionElement, TcpSlice};

use crate::wire::checksum::{fold, internet_checksum, tcp_checksum_ok};
use crate::wire::quad::Quad;

/// The TCP options a client put in its SYN.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SynOptions {
    pub mss: Option<u16>,
    pub window_scale: Option<u8>,
    pub sack_permitted: bool,
    /// The client's TSval, when it offered timestamps.
    pub timestamp: Option<u32>,
}

/// Why an incoming packet was dropped before reaching any socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    Malformed,
    BadChecksum,
    Fragment,
    NotForUs,
    /// An IPv6 packet while IPv6 is off.
    Ipv6,
    /// Multicast or broadcast (the kernel's router solicitations and
    /// multicast listener reports on a new link): counted, not logged.
    Multicast,
    /// A segment for a connection still in SYN-RECEIVED was held back
    /// because the listener's accept queue is full.
    AcceptQueueFull,
    /// A reset whose sequence number is not exactly the next one expected
    /// (RFC 5961 3.2): answered with a challenge ACK instead of closing.
    InexactReset,
    /// A SYN on a synchronized connection (RFC 5961 4.2): answered with a
    /// challenge ACK; the connection stays.
    SynOnConnection,
}

impl DropReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::BadChecksum => "bad checksum",
            DropReason::Fragment => "ip fragment",
            DropReason::NotForUs => "not addressed to the stack",
            DropReason::Ipv6 => "ipv6 not enabled",
            DropReason::Multicast => "multicast or broadcast",
            DropReason::AcceptQueueFull => "accept queue full",
            DropReason::InexactReset => "reset not at the expected sequence number",
            DropReason::SynOnConnection => "syn on an established connection",
        }
    }
}

/// The parts of a TCP segment our layer acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub quad: Quad,
    pub seq: u32,
    pub ack_number: u32,
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
    pub payload_len: usize,
    /// The window field, as sent.
    pub window: u16,
    /// Options, parsed only for SYN segments (what the event log reports).
    pub options: SynOptions,
    /// The TSval of the timestamp option, on any segment.
    pub tsval: Option<u32>,
}

impl Segment {
    /// A connection request: SYN without ACK or RST.
    pub fn is_bare_syn(&self) -> bool {
        self.syn && !self.ack && !self.rst
    }
}

/// What to do with an incoming packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inbound {
    /// A TCP segment for the stack: demultiplex it by its 4-tuple.
    Tcp(Segment),
    /// A UDP datagram for the stack: demultiplexed by its local port.
    Udp(Quad),
    /// An ICMP echo request (ping): the engine answers it.
    Ping,
    /// Not TCP but addressed to the stack (e.g. ICMP echo): the engine handles it.
    Engine,
    /// Dropped before anything saw it.
    Drop(DropReason),
}

/// The stack's own addresses: what a packet must be addressed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Local {
    pub v4: Ipv4Addr,
    pub v6: Option<Ipv6Addr>,
}

/// The network layer of a packet, either family.
struct Network<'a> {
    src: IpAddr,
    dst: IpAddr,
    proto: IpNumber,
    payload: &'a [u8],
}

/// Parses and checks the IPv4 or IPv6 header; `Err` is why to drop.
fn network(packet: &[u8], local: Local) -> Result<Network<'_>, DropReason> {
    let net = match packet.first().map(|b| b >> 4) {
        Some(4) => {
            let ip = Ipv4Slice::from_slice(packet).map_err(|_| DropReason::Malformed)?;
            if internet_checksum(ip.header().slice()) != 0 {
                return Err(DropReason::BadChecksum);
            }
            if ip.is_payload_fragmented() {
                return Err(DropReason::Fragment);
            }
            let (src, dst) = (ip.header().source_addr(), ip.header().destination_addr());
            if dst.is_multicast() || dst.is_broadcast() {
                return Err(DropReason::Multicast);
            }
            if dst != local.v4 {
                return Err(DropReason::NotForUs);
            }
            if src.is_unspecified() || src.is_broadcast() || src.is_multicast() || src == dst {
                return Err(DropReason::Malformed);
            }
            Network {
                src: IpAddr::V4(src),
                dst: IpAddr::V4(dst),
                proto: ip.payload_ip_number(),
                payload: ip.payload().payload,
            }
        }
        Some(6) => {
            let ip = Ipv6Slice::from_slice(packet).map_err(|_| DropReason::Malformed)?;
            if ip.is_payload_fragmented() {
                return Err(DropReason::Fragment);
            }
            let (src, dst) = (ip.header().source_addr(), ip.header().destination_addr());
            if dst.is_multicast() {
                return Err(DropReason::Multicast);
            }
            match local.v6 {
                None => return Err(DropReason::Ipv6),
                Some(l) if l != dst => return Err(DropReason::NotForUs),
                Some(_) => {}
            }
            if src.is_unspecified() || src.is_multicast() || src == dst {
                return Err(DropReason::Malformed);
            }
            Network {
                src: IpAddr::V6(src),
                dst: IpAddr::V6(dst),
                proto: ip.payload().ip_number,
                payload: ip.payload().payload,
            }
        }
        _ => return Err(DropReason::Malformed),
    };
    Ok(net)
}

/// Classifies one raw IP packet addressed (we hope) to `local`.
pub fn classify(packet: &[u8], local: Local) -> Inbound {
    classify_with(packet, local, true)
}

/// [`classify`], verifying the TCP checksum only if `verify`.
pub fn classify_with(packet: &[u8], local: Local, verify: bool) -> Inbound {
    let net = match network(packet, local) {
        Ok(n) => n,
        Err(reason) => return Inbound::Drop(reason),
    };
    let (src, dst, payload) = (net.src, net.dst, net.payload);
    match net.proto {
        IpNumber::TCP => {}
        IpNumber::UDP => {
            // The engine verifies the checksum; ports are all we need here.
            let (Some(sp), Some(dp)) = (payload.get(0..2), payload.get(2..4)) else {
                return Inbound::Drop(DropReason::Malformed);
            };
            return Inbound::Udp(Quad::new(
                SocketAddr::new(dst, u16::from_be_bytes([dp[0], dp[1]])),
                SocketAddr::new(src, u16::from_be_bytes([sp[0], sp[1]])),
            ));
        }
        IpNumber::ICMP if payload.first() == Some(&8) => return Inbound::Ping,
        IpNumber::IPV6_ICMP if payload.first() == Some(&128) => return Inbound::Ping,
        _ => return Inbound::Engine,
    }
    let tcp = match TcpSlice::from_slice(payload) {
        Ok(tcp) => tcp,
        Err(_) => return Inbound::Drop(DropReason::Malformed),
    };
    if verify && !tcp_checksum_ok(src, dst, tcp.slice()) {
        return Inbound::Drop(DropReason::BadChecksum);
    }
    if tcp.source_port() == 0 || tcp.destination_port() == 0 || (tcp.syn() && tcp.fin()) {
        return Inbound::Drop(DropReason::Malformed);
    }
    let quad = Quad::new(
        SocketAddr::new(dst, tcp.destination_port()),
        SocketAddr::new(src, tcp.source_port()),
    );
    let mut options = SynOptions::default();
    let raw = tcp.options();
    let tsval = if !tcp.syn() && raw.len() == 12 && raw[..4] == [1, 1, 8, 10] {
        // A lone timestamp as senders lay it out (see `align_timestamp`),
        // on nearly every segment of a connection: read where it is.
        Some(u32::from_be_bytes([raw[4], raw[5], raw[6], raw[7]]))
    } else {
        let mut tsval = None;
        for opt in tcp.options_iterator() {
            match opt {
                Ok(TcpOptionElement::MaximumSegmentSize(m)) => options.mss = Some(m),
                Ok(TcpOptionElement::WindowScale(w)) => options.window_scale = Some(w),
                Ok(TcpOptionElement::SelectiveAcknowledgementPermitted) => {
                    options.sack_permitted = true
                }
                Ok(TcpOptionElement::Timestamp(v, _)) => tsval = Some(v),
                Ok(_) => {}
                Err(_) => break,
            }
            if !tcp.syn() && tsval.is_some() {
                break;
            }
        }
        tsval
    };
    options.timestamp = tsval;
    Inbound::Tcp(Segment {
        quad,
        seq: tcp.sequence_number(),
        ack_number: tcp.acknowledgment_number(),
        syn: tcp.syn(),
        ack: tcp.ack(),
        fin: tcp.fin(),
        rst: tcp.rst(),
        payload_len: tcp.payload().len(),
        window: tcp.window_size(),
        options: if tcp.syn() {
            options
        } else {
            SynOptions::default()
        },
        tsval,
    })
}

/// The flags and acknowledgment number of a segment the engine transmitted:
/// enough to see resets and to remember a connection's last ACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outbound {
    pub rst: bool,
    pub fin: bool,
    pub syn: bool,
    pub ack: bool,
    pub ack_number: u32,
    /// The sequence number after this segment (its data, SYN and FIN).
    pub seq_end: u32,
    /// The length of its data.
    pub payload_len: u32,
    /// The window field, as sent (scaled, except on a SYN).
    pub window: u16,
    /// The window scale option (read on SYN segments only).
    pub window_scale: Option<u8>,
}

/// Reads an outgoing packet's TCP flags, if it is TCP (the engine sends
/// no IPv6 extension headers).
pub fn outbound(packet: &[u8]) -> Option<Outbound> {
    let (header, proto) = match *packet.first()? >> 4 {
        4 => (usize::from(packet[0] & 0x0f) * 4, *packet.get(9)?),
        6 => (40, *packet.get(6)?),
        _ => return None,
    };
    if proto != 6 {
        return None;
    }
    let tcp = packet.get(header..header + 16)?;
    let flags = tcp[13];
    let data_offset = usize::from(tcp[12] >> 4) * 4;
    let payload = packet.len().saturating_sub(header + data_offset) as u32;
    let (fin, syn) = (flags & 0x01 != 0, flags & 0x02 != 0);
    let window_scale = match syn {
        true => TcpSlice::from_slice(&packet[header..]).ok().and_then(|t| {
            t.options_iterator().find_map(|o| match o {
                Ok(TcpOptionElement::WindowScale(w)) => Some(w),
                _ => None,
            })
        }),
        false => None,
    };
    Some(Outbound {
        window: u16::from_be_bytes([tcp[14], tcp[15]]),
        window_scale,
        fin,
        syn,
        rst: flags & 0x04 != 0,
        ack: flags & 0x10 != 0,
        ack_number: u32::from_be_bytes([tcp[8], tcp[9], tcp[10], tcp[11]]),
        seq_end: u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]])
            .wrapping_add(payload + u32::from(fin) + u32::from(syn)),
        payload_len: payload,
    })
}

/// The TCP part (header and payload) of an IPv4 or IPv6 packet that carries
/// TCP, for rewriting in place.
fn tcp_header_on(packet: &mut [u8]) -> Option<&mut [u8]> {
    let header = match packet.first().map(|b| b >> 4) {
        Some(4) if packet.get(9) == Some(&6) => usize::from(packet[0] & 0x0f) * 4,
        Some(6) if packet.get(6) == Some(&6) => 40,
        _ => return None,
    };
    packet.get_mut(header..)
}

/// Puts a lone timestamp option where receivers look for it first.
///
/// smoltcp writes a segment whose only option is the timestamp as
/// `08 0a <tsval> <tsecr> 00 00`: the option, then an end-of-list as
/// padding. RFC 7323 (appendix A) recommends `01 01 08 0a <tsval> <tsecr>`,
/// and that is the layout Linux reads without parsing options: with any
/// other, every segment from us takes its slow path (no header prediction),
/// which costs the peer's CPU on each acknowledgement of a bulk transfer.
/// Rewrites the first layout into the second and returns whether it did.
/// The bytes move by one 16-bit word, so the TCP checksum changes only by
/// the two no-operations that replace the end-of-list.
pub fn align_timestamp(packet: &mut [u8]) -> bool {
    let Some(tcp) = tcp_header_on(packet) else {
        return false;
    };
    if tcp.len() < 32 || tcp[12] >> 4 != 8 {
        return false;
    }
    let options = &mut tcp[20..32];
    if options[..2] != [8, 10] || options[10..] != [0, 0] {
        return false;
    }
    options.copy_within(0..10, 2);
    options[..2].copy_from_slice(&[1, 1]);
    // RFC 1624, eqn. 3, with the old word 0 and the new one 0x0101.
    let old = u16::from_be_bytes([tcp[16], tcp[17]]);
    let new = !fold(u32::from(!old) + 0x0101);
    tcp[16..18].copy_from_slice(&new.to_be_bytes());
    true
}

/// Which of a TCP header's two numbers [`shift_number`] changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Number {
    /// The sequence number (bytes 4..8 of the TCP header).
    Seq,
    /// The acknowledgment number (bytes 8..12); only with ACK set.
    Ack,
}

/// Adds `delta` (wrapping) to a TCP packet's sequence or acknowledgment
/// number and keeps its checksum right (RFC 1624, eqn. 3, one 16-bit word
/// at a time), or, with `partial`, leaves the checksum alone: a packet
/// whose checksum the kernel will finish (offload) holds only the
/// pseudo-header's sum, which has no sequence numbers in it. Returns
/// whether it changed the packet (not for a packet that is not TCP, is too
/// short, or, for `Ack`, has no ACK flag).
///
/// A connection made from a SYN cookie lives in two sequence spaces: the
/// cookie is the ISN the peer knows, the engine chose its own; every
/// segment crosses between them here.
pub fn shift_number(packet: &mut [u8], which: Number, delta: u32, partial: bool) -> bool {
    let Some(tcp) = tcp_header_on(packet) else {
        return false;
    };
    if tcp.len() < 20 || (which == Number::Ack && tcp[13] & 0x10 == 0) {
        return false;
    }
    let at = match which {
        Number::Seq => 4,
        Number::Ack => 8,
    };
    let old = u32::from_be_bytes([tcp[at], tcp[at + 1], tcp[at + 2], tcp[at + 3]]);
    let new = old.wrapping_add(delta);
    tcp[at..at + 4].copy_from_slice(&new.to_be_bytes());
    if !partial {
        let sum = u16::from_be_bytes([tcp[16], tcp[17]]);
        let mut acc = u32::from(!sum);
        for (o, n) in [(old >> 16, new >> 16), (old & 0xffff, new & 0xffff)] {
            acc += u32::from(!(o as u16)) + n;
        }
        tcp[16..18].copy_from_slice(&(!fold(acc)).to_be_bytes());
    }
    true
}

/// Classifies a packet the stack is sending, as if it arrived at its
/// destination (for the stories: its flags, numbers and options).
pub fn classify_outbound(packet: &[u8]) -> Inbound {
    let local = match packet.first().map(|b| b >> 4) {
        Some(4) => match packet.get(16..20) {
            Some(d) => Local {
                v4: Ipv4Addr::new(d[0], d[1], d[2], d[3]),
                v6: None,
            },
            None => return Inbound::Drop(DropReason::Malformed),
        },
        Some(6) => match packet
            .get(24..40)
            .and_then(|d| <[u8; 16]>::try_from(d).ok())
        {
            Some(d) => Local {
                v4: Ipv4Addr::UNSPECIFIED,
                v6: Some(Ipv6Addr::from(d)),
            },
            None => return Inbound::Drop(DropReason::Malformed),
        },
        _ => return Inbound::Drop(DropReason::Malformed),
    };
    classify(packet, local)
}

/// Wrapping comparison of TCP sequence numbers (RFC 9293 §3.4): `a` after `b`.
pub fn seq_after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    const LOCAL: Local = Local {
        v4: Ipv4Addr::new(10, 0, 0, 2),
        v6: None,
    };

    fn syn_bytes() -> Vec<u8> {
        let b = PacketBuilder::ipv4([10, 0, 0, 1], LOCAL.v4.octets(), 64)
            .tcp(40000, 80, 1000, 64240)
            .syn()
            .options(&[
                TcpOptionElement::MaximumSegmentSize(1460),
                TcpOptionElement::SelectiveAcknowledgementPermitted,
                TcpOptionElement::WindowScale(7),
            ])
            .unwrap();
        let mut v = Vec::new();
        b.write(&mut v, &[]).unwrap();
        v
    }

    /// An ACK from port 80 with `options` as given, as smoltcp would write
    /// it, over IPv4 or IPv6.
    fn ack_with_options(options: &[u8], payload: &[u8], v6: bool) -> Vec<u8> {
        let ip = match v6 {
            false => PacketBuilder::ipv4(LOCAL.v4.octets(), [10, 0, 0, 1], 64),
            true => PacketBuilder::ipv6([0xfd; 16], [0xfe; 16], 64),
        };
        let b = ip
            .tcp(80, 40000, 5000, 501)
            .ack(1001)
            .options_raw(options)
            .unwrap();
        let mut v = Vec::new();
        b.write(&mut v, payload).unwrap();
        v
    }

    #[test]
    fn a_lone_timestamp_is_moved_behind_two_noops() {
        let smoltcp_layout = [8, 10, 0, 0, 0x12, 0x34, 0xfe, 0xdc, 0xba, 0x98, 0, 0];
        let payloads = [&b""[..], b"x", b"hello, world", &[0xff; 1448]];
        for (payload, v6) in payloads.iter().flat_map(|p| [(*p, false), (*p, true)]) {
            let mut p = ack_with_options(&smoltcp_layout, payload, v6);
            let Inbound::Tcp(before) = classify_outbound(&p) else {
                panic!("dropped before the move");
            };
            assert!(align_timestamp(&mut p));
            let options = if v6 { 60 } else { 40 };
            assert_eq!(
                p[options..options + 12],
                [1, 1, 8, 10, 0, 0, 0x12, 0x34, 0xfe, 0xdc, 0xba, 0x98]
            );
            assert_eq!(&p[options + 12..], payload);
            // The checksum still holds: the segment is not dropped on
            // arrival, and etherparse finds the same timestamp.
            let Inbound::Tcp(seg) = classify_outbound(&p) else {
                panic!("dropped: {:?}", classify_outbound(&p));
            };
            assert_eq!((seg.tsval, before.tsval), (Some(0x1234), Some(0x1234)));
            assert_eq!(seg.payload_len, payload.len());
        }
    }

    #[test]
    fn other_option_layouts_are_left_alone() {
        for options in [
            // Already aligned.
            &[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2][..],
            // A timestamp followed by something other than padding.
            &[8, 10, 0, 0, 0, 1, 0, 0, 0, 2, 1, 1],
            // Longer than the timestamp alone.
            &[2, 4, 5, 180, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0],
            // None.
            &[],
        ] {
            let before = ack_with_options(options, b"data", false);
            let mut p = before.clone();
            assert!(!align_timestamp(&mut p));
            assert_eq!(p, before);
        }
        let mut syn = syn_bytes();
        assert!(!align_timestamp(&mut syn));
        assert!(!align_timestamp(&mut [0x45, 0, 0]));
    }

    #[test]
    fn shifted_numbers_keep_the_checksum_and_shift_back() {
        let payloads = [&b""[..], b"x", &[0xa5; 1448]];
        for (payload, v6) in payloads.iter().flat_map(|p| [(*p, false), (*p, true)]) {
            let before = ack_with_options(&[], payload, v6);
            for delta in [1, 0x8000_0000, u32::MAX, 0x1234_5678] {
                let mut p = before.clone();
                assert!(shift_number(&mut p, Number::Seq, delta, false));
                assert!(shift_number(
                    &mut p,
                    Number::Ack,
                    delta.wrapping_neg(),
                    false
                ));
                let Inbound::Tcp(seg) = classify_outbound(&p) else {
                    panic!("checksum broken: {:?}", classify_outbound(&p));
                };
                assert_eq!(seg.seq, 5000u32.wrapping_add(delta));
                assert_eq!(seg.ack_number, 1001u32.wrapping_sub(delta));
                assert!(shift_number(
                    &mut p,
                    Number::Seq,
                    delta.wrapping_neg(),
                    false
                ));
                assert!(shift_number(&mut p, Number::Ack, delta, false));
                assert_eq!(p, before, "and back, byte for byte");
            }
        }
    }

    #[test]
    fn a_partial_checksum_is_left_as_it_is_and_a_syn_has_no_ack_to_shift() {
        let before = ack_with_options(&[], b"data", false);
        let mut p = before.clone();
        assert!(shift_number(&mut p, Number::Seq, 7, true));
        assert_eq!(p[36..38], before[36..38], "checksum untouched");
        let mut syn = syn_bytes();
        assert!(!shift_number(&mut syn, Number::Ack, 7, false));
        assert!(shift_number(&mut syn, Number::Seq, 7, false));
        assert!(!shift_number(&mut [0x45, 0, 0], Number::Seq, 1, false));
    }

    #[test]
    fn syn_is_parsed_with_its_options() {
        let Inbound::Tcp(seg) = classify(&syn_bytes(), LOCAL) else {
            panic!("not tcp")
        };
        assert!(seg.is_bare_syn());
        assert_eq!(seg.seq, 1000);
        assert_eq!(seg.quad.remote, "10.0.0.1:40000".parse().unwrap());
        assert_eq!(seg.options.mss, Some(1460));
        assert_eq!(seg.options.window_scale, Some(7));
        assert!(seg.options.sack_permitted);
    }

    #[test]
    fn corrupted_tcp_checksum_is_dropped() {
        let mut p = syn_bytes();
        let last = p.len() - 1;
        p[last] ^= 0xff;
        assert_eq!(classify(&p, LOCAL), Inbound::Drop(DropReason::BadChecksum));
    }

    #[test]
    fn fragments_and_garbage_are_dropped() {
        let mut p = syn_bytes();
        p[6] |= 0x20; // more fragments
        p[10] = 0;
        p[11] = 0;
        let sum = internet_checksum(&p[..20]);
        p[10..12].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(classify(&p, LOCAL), Inbound::Drop(DropReason::Fragment));
        assert_eq!(classify(&[], LOCAL), Inbound::Drop(DropReason::Malformed));
        assert_eq!(
            classify(&[0x45, 0, 0], LOCAL),
            Inbound::Drop(DropReason::Malformed)
        );
    }

    #[test]
    fn sequence_comparison_wraps() {
        assert!(seq_after(5, u32::MAX - 5));
        assert!(!seq_after(u32::MAX - 5, 5));
    }
}
