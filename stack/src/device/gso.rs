//! Segmentation offload in both directions: many segments of one connection
//! passing the TUN device as one large packet.
//!
//! Without it every TCP segment is one `read` or `write` on the TUN
//! descriptor, and the kernel runs its whole transmit or receive path for
//! each. With `--offload` the device is opened with `IFF_VNET_HDR`: every
//! packet is preceded by a `virtio_net_hdr`, and a packet whose header says
//! "TCP segmentation, segments of N bytes" may be far larger than the MTU.
//!
//! Towards the kernel, [`coalesce`] finds the runs worth merging in what the
//! stack queued: IPv4 TCP segments of one 4-tuple, back to back in sequence,
//! carrying data with nothing but ACK (and PSH) set, with identical headers
//! apart from sequence number, length and PSH, all of the first one's length
//! but the last. The kernel takes the merged packet as one buffer, the way it
//! takes what its own receive offload (GRO) merged, and hands it to TCP in one
//! piece. Its TCP checksum field holds the pseudo-header sum only and the
//! header asks the kernel to complete it (`NEEDS_CSUM`), as a checksum offload
//! would.
//!
//! From the kernel, `TUNSETOFFLOAD` (checksum, TSO for IPv4 and IPv6) lets
//! the kernel's TCP hand us up to 64 KiB in one packet instead of cutting it
//! into MTU-sized segments, with the checksum left for us to complete.
//! [`received`] completes it; the merged packet then stays one segment: the
//! engine takes a segment of any length that fits its window, so one pass
//! through the demux and the engine stands for dozens of segments.

use crate::wire::checksum::{fold, ones_sum, write_checksum};

/// The size of `struct virtio_net_hdr` (without `num_buffers`).
pub const VNET_HDR_LEN: usize = 10;

const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
const VIRTIO_NET_HDR_GSO_TCPV4: u8 = 1;
const VIRTIO_NET_HDR_GSO_TCPV6: u8 = 4;
const VIRTIO_NET_HDR_GSO_ECN: u8 = 0x80;

/// A packet with no offload: the all-zero header.
pub const PLAIN_HDR: [u8; VNET_HDR_LEN] = [0; VNET_HDR_LEN];

/// The largest merged IPv4 packet.
const MAX_MERGED: usize = 65_535;

/// What to write for one or more queued packets.
#[derive(Debug, PartialEq, Eq)]
pub enum Write {
    /// `packets[i]` as it is, behind [`PLAIN_HDR`].
    Single(usize),
    /// Several consecutive packets merged: this header, then these bytes.
    Merged {
        hdr: [u8; VNET_HDR_LEN],
        packet: Vec<u8>,
        /// How many queued packets it replaces.
        count: usize,
    },
}

/// The parts of an IPv4 TCP data segment that decide whether it can join a
/// run.
struct Seg {
    ip_hl: usize,
    tcp_hl: usize,
    seq: u32,
    payload: usize,
}

fn parse(p: &[u8]) -> Option<Seg> {
    if p.len() < 40 || p[0] >> 4 != 4 || p[9] != 6 {
        return None;
    }
    let ip_hl = usize::from(p[0] & 0xf) * 4;
    let total = usize::from(u16::from_be_bytes([p[2], p[3]]));
    // No fragments, and the packet is exactly its IP length.
    if ip_hl < 20 || total != p.len() || u16::from_be_bytes([p[6], p[7]]) & 0x3fff != 0 {
        return None;
    }
    let tcp = p.get(ip_hl..)?;
    if tcp.len() < 20 {
        return None;
    }
    let tcp_hl = usize::from(tcp[12] >> 4) * 4;
    // ACK, optionally PSH; nothing else.
    let flags = tcp[13];
    if tcp_hl < 20 || tcp_hl > tcp.len() || flags & !0x18 != 0 || flags & 0x10 == 0 {
        return None;
    }
    let payload = tcp.len() - tcp_hl;
    (payload > 0).then(|| Seg {
        ip_hl,
        tcp_hl,
        seq: u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]),
        payload,
    })
}

/// Whether `b` continues the run that `a` (its predecessor) belongs to.
fn continues(a: &[u8], sa: &Seg, b: &[u8], sb: &Seg) -> bool {
    let (ha, hb) = (sa.ip_hl + sa.tcp_hl, sb.ip_hl + sb.tcp_hl);
    ha == hb
        // Addresses (IP bytes 12..20) and protocol.
        && a[9] == b[9]
        && a[12..20] == b[12..20]
        // Ports (TCP 0..4), acknowledgement number and data offset through
        // window (TCP 8..16, PSH masked), options (TCP 20..).
        && a[sa.ip_hl..sa.ip_hl + 4] == b[sb.ip_hl..sb.ip_hl + 4]
        && a[sa.ip_hl + 8..sa.ip_hl + 13] == b[sb.ip_hl + 8..sb.ip_hl + 13]
        && a[sa.ip_hl + 14..sa.ip_hl + 16] == b[sb.ip_hl + 14..sb.ip_hl + 16]
        && a[sa.ip_hl + 20..ha] == b[sb.ip_hl + 20..hb]
        && sa.seq.wrapping_add(sa.payload as u32) == sb.seq
}

/// Plans the writes for `packets`, in order, merging what can be merged.
pub fn coalesce(packets: &[Vec<u8>]) -> Vec<Write> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < packets.len() {
        let Some(first) = parse(&packets[i]) else {
            out.push(Write::Single(i));
            i += 1;
            continue;
        };
        // Extend the run while each next segment continues it, every segment
        // but the last is exactly the first one's size, and it fits.
        let hdr_len = first.ip_hl + first.tcp_hl;
        let mut end = i + 1;
        let mut prev = first;
        let mut total = hdr_len + prev.payload;
        let mss = prev.payload;
        while end < packets.len() && prev.payload == mss {
            let Some(next) = parse(&packets[end]) else {
                break;
            };
            if !continues(&packets[end - 1], &prev, &packets[end], &next)
                || next.payload > mss
                || total + next.payload > MAX_MERGED
            {
                break;
            }
            total += next.payload;
            prev = next;
            end += 1;
        }
        if end - i < 2 {
            out.push(Write::Single(i));
        } else {
            out.push(merge(&packets[i..end], mss, total));
        }
        i = end;
    }
    out
}

/// Completes a packet the kernel wrote behind `hdr` (see the module
/// documentation): its partial checksum, and for a merged packet its IP
/// length, which the kernel need not fill in. Returns whether the TCP
/// checksum is ours: computed here over the bytes as they are, it needs no
/// verifying (Linux, too, trusts a partial checksum from its own stack).
/// Only a checksum at the TCP header's place right after the IP header
/// counts; one the header points anywhere else is completed but the
/// packet's TCP checksum is still verified.
pub fn received(hdr: &[u8; VNET_HDR_LEN], packet: &mut [u8]) -> bool {
    let field = |at: usize| usize::from(u16::from_ne_bytes([hdr[at], hdr[at + 1]]));
    let mut tcp_checksummed = false;
    let merged = matches!(
        hdr[1] & !VIRTIO_NET_HDR_GSO_ECN,
        VIRTIO_NET_HDR_GSO_TCPV4 | VIRTIO_NET_HDR_GSO_TCPV6
    );
    if merged {
        let len = packet.len();
        match packet.first().map(|b| b >> 4) {
            Some(4) if (20..=MAX_MERGED).contains(&len) => {
                packet[2..4].copy_from_slice(&(len as u16).to_be_bytes());
                let ihl = usize::from(packet[0] & 0xf) * 4;
                if ihl >= 20
                    && let Some(h) = packet.get_mut(..ihl)
                {
                    write_checksum(h, 10, 0, false);
                }
            }
            Some(6) if len >= 40 && len - 40 <= MAX_MERGED => {
                packet[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
            }
            _ => {}
        }
    }
    if hdr[0] & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0 {
        let (start, at) = (field(6), field(6) + field(8));
        if at + 2 <= packet.len() {
            tcp_checksummed = field(8) == 16 && Some(start) == tcp_start(packet);
            // The field holds the pseudo-header sum; a UDP checksum sits at
            // offset 6.
            let pseudo = u16::from_be_bytes([packet[at], packet[at + 1]]);
            write_checksum(&mut packet[start..], field(8), pseudo.into(), field(8) == 6);
        }
    }
    tcp_checksummed
}

/// Where the TCP header of an IPv4 or IPv6 (no extension header) TCP
/// packet starts.
fn tcp_start(packet: &[u8]) -> Option<usize> {
    match *packet.first()? >> 4 {
        4 if packet.get(9) == Some(&6) => Some(usize::from(packet[0] & 0xf) * 4),
        6 if packet.get(6) == Some(&6) => Some(40),
        _ => None,
    }
}

fn merge(run: &[Vec<u8>], mss: usize, total: usize) -> Write {
    let first = &run[0];
    let ip_hl = usize::from(first[0] & 0xf) * 4;
    let tcp_hl = usize::from(first[ip_hl + 12] >> 4) * 4;
    let hdr_len = ip_hl + tcp_hl;
    let mut packet = Vec::with_capacity(total);
    packet.extend_from_slice(&first[..hdr_len]);
    let mut psh = 0;
    for p in run {
        psh |= p[ip_hl + 13] & 0x08;
        packet.extend_from_slice(&p[hdr_len..]);
    }
    // IP: total length, header checksum.
    packet[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    write_checksum(&mut packet[..ip_hl], 10, 0, false);
    // TCP: PSH if any had it; the checksum field holds the pseudo-header
    // sum for the kernel to complete.
    packet[ip_hl + 13] |= psh;
    let tcp_len = (total - ip_hl) as u32;
    let pseudo = fold(ones_sum(0, &packet[12..20]) + 6 + tcp_len);
    packet[ip_hl + 16..ip_hl + 18].copy_from_slice(&pseudo.to_be_bytes());
    let mut hdr = [0u8; VNET_HDR_LEN];
    hdr[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
    hdr[1] = VIRTIO_NET_HDR_GSO_TCPV4;
    // Little-endian fields (the device is in the host's byte order, and
    // TUNSETVNETLE is not needed on little-endian machines).
    hdr[2..4].copy_from_slice(&(hdr_len as u16).to_ne_bytes());
    hdr[4..6].copy_from_slice(&(mss as u16).to_ne_bytes());
    hdr[6..8].copy_from_slice(&(ip_hl as u16).to_ne_bytes());
    hdr[8..10].copy_from_slice(&16u16.to_ne_bytes());
    Write::Merged {
        hdr,
        packet,
        count: run.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn seg(seq: u32, len: usize, psh: bool, port: u16) -> Vec<u8> {
        let mut b = PacketBuilder::ipv4([10, 0, 0, 2], [10, 0, 0, 1], 64)
            .tcp(80, port, seq, 1000)
            .ack(77);
        if psh {
            b = b.psh();
        }
        let mut v = Vec::new();
        b.write(&mut v, &vec![b'x'; len]).unwrap();
        v
    }

    #[test]
    fn a_run_of_full_segments_and_a_short_last_one_is_merged() {
        let q = vec![
            seg(1000, 1448, false, 5000),
            seg(2448, 1448, false, 5000),
            seg(3896, 100, true, 5000),
        ];
        let w = coalesce(&q);
        assert_eq!(w.len(), 1);
        let Write::Merged { hdr, packet, count } = &w[0] else {
            panic!("{w:?}");
        };
        assert_eq!(*count, 3);
        assert_eq!(packet.len(), 40 + 1448 * 2 + 100);
        assert_eq!(
            u16::from_be_bytes([packet[2], packet[3]]) as usize,
            packet.len()
        );
        assert_eq!(packet[20 + 13] & 0x08, 0x08, "PSH carried over");
        assert_eq!(u16::from_ne_bytes([hdr[4], hdr[5]]), 1448, "segment size");
        // The IP header checksum verifies.
        assert_eq!(fold(ones_sum(0, &packet[..20])), 0xffff);
    }

    #[test]
    fn other_connections_gaps_and_control_segments_break_a_run() {
        let mut fin = seg(5000, 10, false, 5000);
        fin[20 + 13] |= 0x01;
        let q = vec![
            seg(1000, 500, false, 5000),
            seg(1500, 500, false, 6000), // another connection
            seg(2000, 500, false, 5000), // a gap in sequence
            seg(2500, 500, false, 5000),
            fin,
        ];
        let w = coalesce(&q);
        assert_eq!(
            w.iter()
                .map(|w| match w {
                    Write::Single(i) => format!("s{i}"),
                    Write::Merged { count, .. } => format!("m{count}"),
                })
                .collect::<Vec<_>>(),
            ["s0", "s1", "m2", "s4"]
        );
    }

    #[test]
    fn a_short_segment_ends_the_run() {
        let q = vec![seg(1000, 100, false, 5000), seg(1100, 1448, false, 5000)];
        assert_eq!(coalesce(&q), vec![Write::Single(0), Write::Single(1)]);
    }

    /// What the kernel sends with TSO on looks like what we merge: a large
    /// packet with a partial checksum. Completed, the stack takes it as one
    /// segment with its checksum right, whatever the kernel left in the IP
    /// length.
    #[test]
    fn a_merged_packet_from_the_kernel_is_completed_into_one_segment() {
        use crate::wire::segment::{Inbound, Local, classify};
        let q: Vec<_> = (0..3)
            .map(|i| seg(1000 + i * 1448, 1448, false, 5000))
            .collect();
        let Write::Merged {
            hdr, mut packet, ..
        } = coalesce(&q).remove(0)
        else {
            panic!("not merged");
        };
        packet[2..4].fill(0);
        let local = Local {
            v4: [10, 0, 0, 1].into(),
            v6: None,
        };
        assert!(received(&hdr, &mut packet));
        let Inbound::Tcp(s) = classify(&packet, local) else {
            panic!("refused: {:?}", classify(&packet, local));
        };
        assert_eq!((s.seq, s.payload_len), (1000, 3 * 1448));
        // A plain packet is left alone.
        let mut plain = seg(1000, 10, true, 5000);
        let copy = plain.clone();
        assert!(!received(&PLAIN_HDR, &mut plain));
        assert_eq!(plain, copy);
    }

    /// Whatever header and bytes arrive (a packet socket with
    /// `PACKET_VNET_HDR` can write any), completing them never panics, and
    /// only a checksum at the TCP header's place is reported as ours.
    #[test]
    fn any_header_on_any_bytes_is_survived() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut ours = 0;
        for i in 0..20_000 {
            let mut hdr = [0u8; VNET_HDR_LEN];
            for b in hdr.iter_mut() {
                *b = next() as u8;
            }
            // Mostly IPv4 or IPv6 first bytes, any length up to 120.
            let len = (next() % 121) as usize;
            let mut p: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if let Some(first) = p.first_mut() {
                *first = [0x45, 0x41, 0x60, 0x4f, *first][(next() % 5) as usize];
            }
            if p.len() > 9 && next() % 2 == 0 {
                p[9] = 6;
                p[6] = 6;
            }
            if next() % 2 == 0 {
                hdr[1] =
                    [VIRTIO_NET_HDR_GSO_TCPV4, VIRTIO_NET_HDR_GSO_TCPV6][(next() % 2) as usize];
            }
            // Half the time, checksum fields that land inside the packet.
            if i % 2 == 0 {
                hdr[0] |= VIRTIO_NET_HDR_F_NEEDS_CSUM;
                let start = [20, 24, 40, (next() % (len as u64 + 8)) as u16][(next() % 4) as usize];
                let offset = [16, 6, (next() % 24) as u16][(next() % 3) as usize];
                hdr[6..8].copy_from_slice(&start.to_ne_bytes());
                hdr[8..10].copy_from_slice(&offset.to_ne_bytes());
            }
            let (start, offset) = (
                usize::from(u16::from_ne_bytes([hdr[6], hdr[7]])),
                usize::from(u16::from_ne_bytes([hdr[8], hdr[9]])),
            );
            let expect = hdr[0] & VIRTIO_NET_HDR_F_NEEDS_CSUM != 0
                && start + offset + 2 <= len
                && offset == 16
                && Some(start) == tcp_start(&p);
            assert_eq!(received(&hdr, &mut p), expect);
            ours += usize::from(expect);
        }
        assert!(ours > 100, "the sweep reached the checksum {ours} times");
    }
}
