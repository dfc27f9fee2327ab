//! Packet capture in the classic pcap format, for Wireshark and tshark.
//!
//! The file starts with a global header (microsecond timestamps, link type
//! `LINKTYPE_RAW` = 101: every record is a bare IPv4 or IPv6 packet, as on the
//! TUN device) and then holds one record per packet. The runtime writes the
//! packets the core hands it — everything read from the device, everything
//! written to it, in the order the core processed them — and flushes after
//! every batch, so the file is complete up to the last batch even if the
//! process is killed. Frames are numbered from 1, as Wireshark shows them;
//! events name the frame of the packet that caused them.

use std::io::{self, Write};

use smoltcp::time::Instant;

/// `LINKTYPE_RAW`: raw IP, no link-layer header.
pub const LINKTYPE_RAW: u32 = 101;
const SNAPLEN: u32 = 65535;

/// Writes pcap records to `out`.
pub struct PcapWriter<W: Write> {
    out: W,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the global header.
    pub fn new(mut out: W) -> io::Result<PcapWriter<W>> {
        let mut h = Vec::with_capacity(24);
        h.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes()); // magic, microseconds
        h.extend_from_slice(&2u16.to_le_bytes()); // version 2.4
        h.extend_from_slice(&4u16.to_le_bytes());
        h.extend_from_slice(&0i32.to_le_bytes()); // GMT offset
        h.extend_from_slice(&0u32.to_le_bytes()); // timestamp accuracy
        h.extend_from_slice(&SNAPLEN.to_le_bytes());
        h.extend_from_slice(&LINKTYPE_RAW.to_le_bytes());
        out.write_all(&h)?;
        out.flush()?;
        Ok(PcapWriter { out })
    }

    /// Appends one packet captured at `ts` (Unix time).
    pub fn write_packet(&mut self, ts: Instant, packet: &[u8]) -> io::Result<()> {
        let micros = ts.total_micros().max(0);
        let len = packet.len().min(SNAPLEN as usize) as u32;
        let mut r = Vec::with_capacity(16);
        r.extend_from_slice(&((micros / 1_000_000) as u32).to_le_bytes());
        r.extend_from_slice(&((micros % 1_000_000) as u32).to_le_bytes());
        r.extend_from_slice(&len.to_le_bytes());
        r.extend_from_slice(&(packet.len() as u32).to_le_bytes());
        self.out.write_all(&r)?;
        self.out.write_all(&packet[..len as usize])
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_record_layout() {
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        w.write_packet(Instant::from_micros(1_500_000i64), &[0x45, 0, 0, 20])
            .unwrap();
        let b = w.out;
        assert_eq!(&b[..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
        assert_eq!(u32::from_le_bytes([b[20], b[21], b[22], b[23]]), 101);
        let rec = &b[24..];
        assert_eq!(u32::from_le_bytes([rec[0], rec[1], rec[2], rec[3]]), 1);
        assert_eq!(
            u32::from_le_bytes([rec[4], rec[5], rec[6], rec[7]]),
            500_000
        );
        assert_eq!(u32::from_le_bytes([rec[8], rec[9], rec[10], rec[11]]), 4);
        assert_eq!(&rec[16..], &[0x45, 0, 0, 20]);
    }
}
