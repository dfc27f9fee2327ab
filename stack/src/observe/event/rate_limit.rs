//! How a SYN flood stays one line a second: a token bucket per event kind.

use smoltcp::time::Instant;

use super::kinds::{Event, Record};

/// Per-kind token buckets: `burst` events at once, refilled at `per_second`.
/// What a bucket leaves out is counted and reported by [`RateLimiter::flush`]
/// at most once a second per kind, as one `suppressed` event.
#[derive(Debug)]
pub struct RateLimiter {
    burst: f64,
    per_second: f64,
    /// One per event kind seen, in the order first seen: a couple of dozen
    /// at most, found by a short scan (cheaper than hashing the name, on
    /// the path of every event).
    buckets: Vec<(&'static str, Bucket)>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
    suppressed: u64,
    last_summary: Instant,
}

impl RateLimiter {
    /// `per_second == 0` turns rate limiting off.
    pub fn new(burst: u32, per_second: u32) -> RateLimiter {
        RateLimiter {
            burst: f64::from(burst.max(1)),
            per_second: f64::from(per_second),
            buckets: Vec::new(),
        }
    }

    /// Records `event`, or counts it if its kind is over its rate.
    pub fn admit(&mut self, now: Instant, frame: Option<u64>, event: Event, out: &mut Vec<Record>) {
        if self.allow(now, event.class()) {
            out.push(Record {
                ts: now,
                event,
                frame,
            });
        }
    }

    /// Whether one more event of `class` fits its rate now; if not, it is
    /// counted for the next summary ([`RateLimiter::flush`]).
    pub fn allow(&mut self, now: Instant, class: &'static str) -> bool {
        if self.per_second > 0.0 {
            let (burst, rate) = (self.burst, self.per_second);
            let i = match self
                .buckets
                .iter()
                .position(|(c, _)| std::ptr::eq(*c, class) || *c == class)
            {
                Some(i) => i,
                None => {
                    self.buckets.push((
                        class,
                        Bucket {
                            tokens: burst,
                            last: now,
                            suppressed: 0,
                            last_summary: now,
                        },
                    ));
                    self.buckets.len() - 1
                }
            };
            let b = &mut self.buckets[i].1;
            if now > b.last {
                let elapsed = (now - b.last).total_micros() as f64 / 1e6;
                b.tokens = (b.tokens + elapsed * rate).min(burst);
                b.last = now;
            }
            if b.tokens < 1.0 {
                b.suppressed += 1;
                return false;
            }
            b.tokens -= 1.0;
        }
        true
    }

    /// Reports, once a second per kind, how many events were left out.
    pub fn flush(&mut self, now: Instant, out: &mut Vec<Record>) {
        let first = out.len();
        for (class, b) in self.buckets.iter_mut() {
            if b.suppressed > 0 && (now - b.last_summary).total_millis() >= 1000 {
                out.push(Record {
                    ts: now,
                    event: Event::Suppressed {
                        kind: class,
                        count: std::mem::take(&mut b.suppressed),
                    },
                    frame: None,
                });
                b.last_summary = now;
            }
        }
        // In the order of their names, as before.
        out[first..].sort_by_key(|r| match r.event {
            Event::Suppressed { kind, .. } => kind,
            _ => "",
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::event::SynDropReason;
    use crate::wire::quad::Quad;

    #[test]
    fn rate_limiter_counts_what_it_leaves_out() {
        let mut rl = RateLimiter::new(3, 1);
        let mut out = Vec::new();
        let t0 = Instant::from_secs(100);
        for _ in 0..10 {
            let ev = Event::SynDropped {
                quad: Quad::new(
                    "10.0.0.2:80".parse().unwrap(),
                    "10.0.0.1:40000".parse().unwrap(),
                ),
                reason: SynDropReason::SynQueueFull,
            };
            rl.admit(t0, None, ev, &mut out);
        }
        assert_eq!(out.len(), 3);
        rl.flush(Instant::from_secs(102), &mut out);
        assert_eq!(
            out.last().map(|r| r.event.clone()),
            Some(Event::Suppressed {
                kind: "syn_dropped",
                count: 7
            })
        );
    }
}
