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

use crate::event::{DropReason, SynOptions};
use crate::quad::Quad;

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
    })
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

/// The Internet checksum (RFC 1071) of `data`; 0 when a header's own
/// checksum field is correct.
pub fn internet_checksum(data: &[u8]) -> u16 {
    !fold(ones_sum(0, data))
}

/// Adds `data` to a ones'-complement sum (RFC 1071) as 16-bit big-endian
/// words, an odd last byte padded with zero; the result is folded to 16 bits
/// (so callers may add to it).
///
/// Every byte of a bulk transfer passes through here, so it adds four-byte
/// words, in the machine's byte order, into four 64-bit lanes: no addition
/// can carry out of a lane (a packet has far fewer than 2^32 words), so the
/// additions are independent and the compiler makes vector additions of
/// them. The ones'-complement sum does not depend on how the words are
/// grouped (2^16 is 1 modulo 2^16 - 1), and summing byte-swapped words gives
/// the byte-swapped sum (RFC 1071, 2(B)), swapped back at the end.
pub fn ones_sum(acc: u32, data: &[u8]) -> u32 {
    let word = |w: &[u8]| u64::from(u32::from_ne_bytes([w[0], w[1], w[2], w[3]]));
    let mut lanes = [0u64; 4];
    let mut blocks = data.chunks_exact(16);
    for b in &mut blocks {
        for (i, lane) in lanes.iter_mut().enumerate() {
            *lane += word(&b[4 * i..]);
        }
    }
    let mut words = blocks.remainder().chunks_exact(4);
    for w in &mut words {
        lanes[0] += word(w);
    }
    let mut last = [0u8; 4];
    last[..words.remainder().len()].copy_from_slice(words.remainder());
    lanes[1] += word(&last);
    // Fold the lanes to 16 bits, still in machine order.
    let mut folded = lanes.iter().map(|&l| u128::from(l)).sum::<u128>();
    while folded > 0xffff {
        folded = (folded & 0xffff) + (folded >> 16);
    }
    let data_sum = u16::from_be(folded as u16);
    let mut total = u64::from(acc) + u64::from(data_sum);
    while total > 0xffff {
        total = (total & 0xffff) + (total >> 16);
    }
    total as u32
}

/// Whether the TCP checksum of `tcp` (header and payload) from `src` to
/// `dst` is right: the sum over the pseudo-header and the segment, its own
/// checksum included, is all ones.
fn tcp_checksum_ok(src: IpAddr, dst: IpAddr, tcp: &[u8]) -> bool {
    let Ok(len) = u32::try_from(tcp.len()) else {
        return false;
    };
    let addrs = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => ones_sum(ones_sum(0, &s.octets()), &d.octets()),
        (IpAddr::V6(s), IpAddr::V6(d)) => ones_sum(ones_sum(0, &s.octets()), &d.octets()),
        _ => return false,
    };
    // The length goes in as 32 bits (IPv6) or 16 (IPv4): the same sum.
    let pseudo = addrs + 6 + (len >> 16) + (len & 0xffff);
    fold(ones_sum(pseudo, tcp)) == 0xffff
}

/// Folds a ones'-complement sum into 16 bits (not inverted).
pub fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// Writes the checksum of `region` (which includes its own checksum field at
/// `at`) given the pseudo-header sum; a UDP checksum of 0 is sent as all
/// ones (0 means "none").
pub fn write_checksum(region: &mut [u8], at: usize, pseudo: u32, udp: bool) {
    if region.len() < at + 2 {
        return;
    }
    region[at..at + 2].fill(0);
    let mut c = !fold(ones_sum(pseudo, region));
    if udp && c == 0 {
        c = 0xffff;
    }
    region[at..at + 2].copy_from_slice(&c.to_be_bytes());
}

/// Writes the IPv4 header checksum and the TCP, UDP or ICMP checksum of a
/// packet, as far as its lengths allow: for packets our layer builds or
/// rewrites, and for raw fuzz input that must get past checksum verification
/// into the demux and the engine.
pub fn fill_checksums(p: &mut [u8]) {
    match p.first().map(|b| b >> 4) {
        Some(4) if p.len() >= 20 => {
            let ihl = usize::from(p[0] & 0xf) * 4;
            if ihl < 20 || ihl > p.len() {
                return;
            }
            write_checksum(&mut p[..ihl], 10, 0, false);
            let total = usize::from(u16::from_be_bytes([p[2], p[3]])).min(p.len());
            if total <= ihl {
                return;
            }
            let proto = p[9];
            let mut pseudo = ones_sum(0, &p[12..20]);
            pseudo += u32::from(proto) + (total - ihl) as u32;
            let l4 = &mut p[ihl..total];
            match proto {
                6 => write_checksum(l4, 16, pseudo, false),
                17 => write_checksum(l4, 6, pseudo, true),
                1 => write_checksum(l4, 2, 0, false),
                _ => {}
            }
        }
        Some(6) if p.len() >= 40 => {
            let len = usize::from(u16::from_be_bytes([p[4], p[5]])).min(p.len() - 40);
            let next = p[6];
            let mut pseudo = ones_sum(0, &p[8..40]);
            pseudo += u32::from(next) + len as u32;
            let l4 = &mut p[40..40 + len];
            match next {
                6 => write_checksum(l4, 16, pseudo, false),
                17 => write_checksum(l4, 6, pseudo, true),
                58 => write_checksum(l4, 2, pseudo, false),
                _ => {}
            }
        }
        _ => {}
    }
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

    /// The eight-bytes-at-a-time sum is the RFC 1071 sum of 16-bit words,
    /// for every length and every starting sum.
    #[test]
    fn ones_sum_matches_the_word_by_word_definition() {
        fn reference(acc: u32, data: &[u8]) -> u16 {
            let mut sum = acc;
            for c in data.chunks(2) {
                sum += u32::from(c[0]) << 8 | u32::from(*c.get(1).unwrap_or(&0));
                sum = (sum & 0xffff) + (sum >> 16);
            }
            fold(sum)
        }
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let data: Vec<u8> = (0..300)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        for len in 0..data.len() {
            for acc in [0, 1, 0xffff, 0x1_fffe] {
                let d = &data[..len];
                assert_eq!(fold(ones_sum(acc, d)), reference(acc, d), "len {len}");
            }
        }
        assert_eq!(fold(ones_sum(0, &[0xff; 64])), 0xffff);
    }

    /// Our verification agrees with etherparse's checksums, both families,
    /// odd lengths included.
    #[test]
    fn tcp_checksums_verify_over_both_families() {
        for len in [0, 1, 7, 1400] {
            let payload = vec![0xa5; len];
            let mut v4 = Vec::new();
            PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
                .tcp(40000, 80, 7, 1000)
                .write(&mut v4, &payload)
                .unwrap();
            let mut v6 = Vec::new();
            PacketBuilder::ipv6([0xfd; 16], [0xfe; 16], 64)
                .tcp(40000, 80, 7, 1000)
                .write(&mut v6, &payload)
                .unwrap();
            let (s4, d4) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
            let (s6, d6) = (IpAddr::from([0xfd; 16]), IpAddr::from([0xfe; 16]));
            assert!(tcp_checksum_ok(s4, d4, &v4[20..]), "v4 {len}");
            assert!(tcp_checksum_ok(s6, d6, &v6[40..]), "v6 {len}");
            let elsewhere = IpAddr::from([10, 0, 0, 3]);
            assert!(
                !tcp_checksum_ok(s4, elsewhere, &v4[20..]),
                "v4 {len} to another address"
            );
            let last = v4.len() - 1;
            v4[last] ^= 1;
            assert!(!tcp_checksum_ok(s4, d4, &v4[20..]), "v4 {len} corrupted");
        }
    }
}
