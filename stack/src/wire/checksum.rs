//! The Internet checksum (RFC 1071): verifying what arrives, filling in
//! what our layer builds.
//!
//! Every byte of a transfer into the stack is summed here once, so the sum is
//! written for speed: see [`ones_sum`].

use std::net::IpAddr;

/// The Internet checksum (RFC 1071) of `data`; 0 when a header's own
/// checksum field is correct.
pub fn internet_checksum(data: &[u8]) -> u16 {
    !fold(ones_sum(0, data))
}

/// Adds `data` to a ones'-complement sum (RFC 1071) as 16-bit big-endian
/// words, an odd last byte padded with zero; the result is folded to 16 bits
/// (so callers may add to it).
///
/// Every byte of a bulk transfer passes through here. The words are added in
/// the machine's byte order into lanes wide enough that no addition carries
/// out of one, so the additions are independent: the ones'-complement sum
/// does not depend on how the words are grouped (2^16 is 1 modulo 2^16 - 1),
/// and summing byte-swapped words gives the byte-swapped sum (RFC 1071,
/// 2(B)), swapped back at the end. With AVX2 (detected once, at run time)
/// 32 bytes are added per step; otherwise four-byte words go into four
/// 64-bit lanes, which the compiler keeps in registers.
pub fn ones_sum(acc: u32, data: &[u8]) -> u32 {
    let mut total = u64::from(acc) + u64::from(u16::from_be(fold_machine(machine_sum(data))));
    while total > 0xffff {
        total = (total & 0xffff) + (total >> 16);
    }
    total as u32
}

/// The sum of `data`'s 16-bit words in machine byte order, congruent modulo
/// 2^16 - 1 to the ones'-complement sum (not yet folded).
fn machine_sum(data: &[u8]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if data.len() >= 64 && std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is there, just checked.
        let (sum, used) = unsafe { machine_sum_avx2(data) };
        // `used` is a multiple of 32: the rest starts on a word boundary.
        return sum + machine_sum_scalar(&data[used..]);
    }
    machine_sum_scalar(data)
}

fn machine_sum_scalar(data: &[u8]) -> u64 {
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
    // 2^32 is 1 modulo 2^16 - 1: each lane folded to 33 bits, their sum
    // cannot overflow, however long `data`.
    lanes.iter().map(|&l| (l & 0xffff_ffff) + (l >> 32)).sum()
}

/// Sums the 32-byte blocks of `data` as 16-bit words, each split into its
/// own 32-bit lane (the low halves masked, the high halves shifted down):
/// a lane gains at most 2^16 - 1 per block, so runs of 4,096 blocks cannot
/// overflow one. Returns the sum and how many bytes it covered.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn machine_sum_avx2(data: &[u8]) -> (u64, usize) {
    use std::arch::x86_64::{
        __m256i, _mm256_add_epi32, _mm256_and_si256, _mm256_loadu_si256, _mm256_set1_epi32,
        _mm256_setzero_si256, _mm256_srli_epi32, _mm256_storeu_si256,
    };
    const RUN: usize = 32 * 4096;
    let used = data.len() - data.len() % 32;
    let low = _mm256_set1_epi32(0xffff);
    let mut sum = 0u64;
    for run in data[..used].chunks(RUN) {
        let mut lo = _mm256_setzero_si256();
        let mut hi = _mm256_setzero_si256();
        for block in run.chunks_exact(32) {
            // SAFETY: `block` is 32 readable bytes; an unaligned load.
            let v = unsafe { _mm256_loadu_si256(block.as_ptr().cast::<__m256i>()) };
            lo = _mm256_add_epi32(lo, _mm256_and_si256(v, low));
            hi = _mm256_add_epi32(hi, _mm256_srli_epi32::<16>(v));
        }
        let mut lanes = [0u32; 16];
        // SAFETY: `lanes` has room for two 32-byte stores.
        unsafe {
            _mm256_storeu_si256(lanes.as_mut_ptr().cast::<__m256i>(), lo);
            _mm256_storeu_si256(lanes[8..].as_mut_ptr().cast::<__m256i>(), hi);
        }
        sum += lanes.iter().map(|&l| u64::from(l)).sum::<u64>();
    }
    (sum, used)
}

/// Folds a sum in machine byte order to 16 bits, still in machine order.
fn fold_machine(mut folded: u64) -> u16 {
    while folded > 0xffff {
        folded = (folded & 0xffff) + (folded >> 16);
    }
    folded as u16
}

/// Whether the TCP checksum of `tcp` (header and payload) from `src` to
/// `dst` is right: the sum over the pseudo-header and the segment, its own
/// checksum included, is all ones.
pub fn tcp_checksum_ok(src: IpAddr, dst: IpAddr, tcp: &[u8]) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    /// `len` bytes from a xorshift generator started at `seed`.
    fn pseudo_random(mut seed: u64, len: usize) -> Vec<u8> {
        (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect()
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
        let data = pseudo_random(0x2545_f491_4f6c_dd1d, 300);
        for len in 0..data.len() {
            for acc in [0, 1, 0xffff, 0x1_fffe] {
                let d = &data[..len];
                assert_eq!(fold(ones_sum(acc, d)), reference(acc, d), "len {len}");
            }
        }
        assert_eq!(fold(ones_sum(0, &[0xff; 64])), 0xffff);
    }

    /// The vector sum and the scalar sum agree, across the vector runs'
    /// boundaries too, and all-ones words (the largest) overflow no lane.
    #[test]
    fn vector_and_scalar_sums_agree() {
        let random = pseudo_random(0x9e37_79b9_7f4a_7c15, 300_000);
        let ones = vec![0xffu8; 300_000];
        for data in [&random, &ones] {
            for len in (0..200).chain([1500, 65_535, 131_072, 131_105, 300_000]) {
                let d = &data[..len];
                let scalar = fold_machine(machine_sum_scalar(d));
                assert_eq!(fold_machine(machine_sum(d)), scalar, "len {len}");
                #[cfg(target_arch = "x86_64")]
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: AVX2 is there, just checked.
                    let (v, used) = unsafe { machine_sum_avx2(d) };
                    let both = v + machine_sum_scalar(&d[used..]);
                    assert_eq!(fold_machine(both), scalar, "len {len}");
                }
            }
        }
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
