//! Fault injection: a lossy link, inside the stack's own device layer.
//!
//! `tc netem` is not always available (and would need the kernel's help);
//! portlab can instead damage its own traffic where it meets the device, in
//! both directions: drop a packet, send it twice, hold it back behind the
//! next one (reorder), or flip one bit (corrupt — the receiver's checksum
//! catches it). Every decision comes from a seeded generator, so a lossy run
//! can be repeated exactly. Like smoltcp's fault injector, this is a
//! middleware around the real device: the protocol code never knows.

/// How often each fault happens, in percent of packets.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FaultConfig {
    pub drop: f64,
    pub duplicate: f64,
    pub reorder: f64,
    pub corrupt: f64,
    pub seed: u64,
}

impl FaultConfig {
    /// Whether any fault is configured.
    pub fn any(&self) -> bool {
        self.drop > 0.0 || self.duplicate > 0.0 || self.reorder > 0.0 || self.corrupt > 0.0
    }
}

/// What the injector did, for the closing summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultStats {
    pub passed: u64,
    pub dropped: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub corrupted: u64,
}

/// One direction's injector.
#[derive(Debug)]
pub struct Faults {
    cfg: FaultConfig,
    rng: u64,
    held: Option<Vec<u8>>,
    pub stats: FaultStats,
}

impl Faults {
    pub fn new(cfg: FaultConfig, stream: u64) -> Faults {
        Faults {
            cfg,
            rng: cfg.seed ^ stream.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            held: None,
            stats: FaultStats::default(),
        }
    }

    fn roll(&mut self, percent: f64) -> bool {
        if percent <= 0.0 {
            return false;
        }
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z % 1_000_000) as f64 / 10_000.0 < percent
    }

    /// Passes `packet` through the faults; what survives is appended to `out`.
    pub fn apply(&mut self, mut packet: Vec<u8>, out: &mut Vec<Vec<u8>>) {
        if self.roll(self.cfg.drop) {
            self.stats.dropped += 1;
            return;
        }
        if self.roll(self.cfg.corrupt) && !packet.is_empty() {
            self.rng = self.rng.rotate_left(7) ^ 0x5bd1_e995;
            let i = (self.rng % packet.len() as u64) as usize;
            packet[i] ^= 1 << ((self.rng >> 32) % 8);
            self.stats.corrupted += 1;
        }
        let duplicate = self.roll(self.cfg.duplicate);
        if self.held.is_none() && self.roll(self.cfg.reorder) {
            // Held back: it goes out after the next packet (or at the end
            // of this batch, see `release`).
            self.stats.reordered += 1;
            self.held = Some(packet);
            return;
        }
        if duplicate {
            self.stats.duplicated += 1;
            out.push(packet.clone());
        }
        self.stats.passed += 1;
        out.push(packet);
        if let Some(h) = self.held.take() {
            out.push(h);
        }
    }

    /// Lets a held packet go (called at the end of every batch, so that
    /// reordering never turns into loss).
    pub fn release(&mut self, out: &mut Vec<Vec<u8>>) {
        if let Some(h) = self.held.take() {
            out.push(h);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(cfg: FaultConfig, n: usize) -> (Vec<Vec<u8>>, FaultStats) {
        let mut f = Faults::new(cfg, 1);
        let mut out = Vec::new();
        for i in 0..n {
            f.apply(vec![i as u8, (i >> 8) as u8, 0, 0], &mut out);
        }
        f.release(&mut out);
        (out, f.stats)
    }

    #[test]
    fn rates_are_roughly_as_asked_and_repeatable() {
        let cfg = FaultConfig {
            drop: 30.0,
            duplicate: 5.0,
            reorder: 5.0,
            corrupt: 0.0,
            seed: 7,
        };
        let (out, st) = run(cfg, 10_000);
        assert!((2700..3300).contains(&st.dropped), "{st:?}");
        assert!(st.duplicated > 200 && st.reordered > 200, "{st:?}");
        assert_eq!(out.len() as u64, 10_000 - st.dropped + st.duplicated);
        assert_eq!(run(cfg, 10_000).0, out, "same seed, same faults");
    }

    #[test]
    fn no_faults_is_a_wire() {
        let (out, st) = run(FaultConfig::default(), 100);
        assert_eq!(out.len(), 100);
        assert_eq!(st.passed, 100);
        assert_eq!(out[5], vec![5, 0, 0, 0]);
    }
}
