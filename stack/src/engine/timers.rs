//! An ordered set of deadlines, one per key.
//!
//! smoltcp tells, per socket set, when it next wants to be polled
//! (`poll_at`). Scanning every connection for that would make each wake-up
//! cost grow with the number of connections, so each connection's deadline
//! lives here instead, in time order: finding the next one is `O(log n)`.

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;

use smoltcp::time::Instant;

#[derive(Debug)]
pub struct Timers<K: Ord + Copy + Hash> {
    order: BTreeSet<(Instant, K)>,
    at: HashMap<K, Instant>,
}

impl<K: Ord + Copy + Hash> Default for Timers<K> {
    fn default() -> Self {
        Timers {
            order: BTreeSet::new(),
            at: HashMap::new(),
        }
    }
}

impl<K: Ord + Copy + Hash> Timers<K> {
    /// Sets (or with `None` clears) the deadline of `key`.
    pub fn set(&mut self, key: K, when: Option<Instant>) {
        let old = match when {
            Some(w) => self.at.insert(key, w),
            None => self.at.remove(&key),
        };
        if old == when {
            return;
        }
        if let Some(old) = old {
            self.order.remove(&(old, key));
        }
        if let Some(w) = when {
            self.order.insert((w, key));
        }
    }

    /// The earliest deadline.
    pub fn next(&self) -> Option<Instant> {
        self.order.first().map(|(t, _)| *t)
    }

    /// Removes and returns a key whose deadline is at or before `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<K> {
        let &(t, key) = self.order.first()?;
        if t > now {
            return None;
        }
        self.order.remove(&(t, key));
        self.at.remove(&key);
        Some(key)
    }

    pub fn len(&self) -> usize {
        self.at.len()
    }

    pub fn is_empty(&self) -> bool {
        self.at.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_first_and_rescheduling_replaces() {
        let mut t = Timers::default();
        t.set(1u32, Some(Instant::from_millis(30)));
        t.set(2u32, Some(Instant::from_millis(10)));
        t.set(1u32, Some(Instant::from_millis(5)));
        assert_eq!(t.next(), Some(Instant::from_millis(5)));
        assert_eq!(t.pop_due(Instant::from_millis(20)), Some(1));
        assert_eq!(t.pop_due(Instant::from_millis(20)), Some(2));
        assert_eq!(t.pop_due(Instant::from_millis(20)), None);
        t.set(3u32, Some(Instant::from_millis(1)));
        t.set(3u32, None);
        assert!(t.is_empty());
        assert_eq!(t.next(), None);
    }
}
