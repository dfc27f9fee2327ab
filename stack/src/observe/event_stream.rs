//! Event streams: the event log pushed to whoever subscribes, as it happens.
//!
//! The live page learns of each SYN, port choice, new socket, accept and
//! close from a Server-Sent Events stream (`GET /events`) instead of
//! polling. Each stream is a [`Subscription`] with a filter; the runtime
//! hands every batch of records it has written to the log to one fan-out
//! thread ([`Streams::publish`]: one bounded, non-blocking send per batch,
//! and nothing at all while no one subscribes), so that the stack's own
//! thread never waits for a subscriber and its cost does not grow with
//! their number.
//!
//! The fan-out thread renders each record once — the JSON line of the
//! event log's schema, framed as an SSE message (`event: <kind>`, `data:
//! <json>`) — and offers it to every subscription whose filter it passes.
//! A subscription holds at most [`BOUND`] messages: one whose reader falls
//! that far behind (a client that reads nothing) is dropped and counted,
//! never kept growing. Opened, closed and dropped streams are counted
//! ([`StreamCounts`]).
//!
//! Each stream is rate-limited per event kind as the log is (a burst of
//! [`STREAM_BURST`], then [`STREAM_RATE`] a second): a browser shows a
//! handful of new connections a second, not twelve thousand, and a hundred
//! open pages must not make the stack send a hundred copies of a flood.
//! What is left out is said, once a second per kind, by a `suppressed`
//! message (`kind`, `count`), as in the log.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

use crate::observe::event::{RateLimiter, Record};
use crate::observe::table::Remote;

/// Messages a subscription may hold before it is dropped.
pub const BOUND: usize = 1024;

/// Events of one kind a stream carries at once before its rate applies.
pub const STREAM_BURST: u32 = 200;
/// Events of one kind a stream carries each second after the burst.
pub const STREAM_RATE: u32 = 100;

/// Batches of records the fan-out thread may have waiting.
const BATCHES: usize = 256;

/// Which events a stream carries: each part optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Only these kinds (`syn`, `socket_created`, …).
    pub kinds: Option<Vec<String>>,
    /// Only events whose local port is this one.
    pub port: Option<u16>,
    /// Only events whose remote end is this host or socket.
    pub remote: Option<Remote>,
}

impl EventFilter {
    pub fn matches(&self, r: &Record) -> bool {
        let quad = r.event.quad();
        self.kinds
            .as_ref()
            .is_none_or(|k| k.iter().any(|k| k == r.event.kind()))
            && self
                .port
                .is_none_or(|p| quad.is_some_and(|q| q.local.port() == p))
            && self
                .remote
                .is_none_or(|rm| quad.is_some_and(|q| rm.matches(&q.remote)))
    }
}

/// How many streams there were.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamCounts {
    /// Open now.
    pub open: usize,
    /// Opened since the stack started.
    pub opened: u64,
    /// Ended by their reader (the client went away, or the server stopped).
    pub closed: u64,
    /// Dropped because their reader fell [`BOUND`] messages behind.
    pub dropped: u64,
    /// Batches of events the fan-out thread was too far behind to take.
    pub lost_batches: u64,
}

/// One stream's queue: the fan-out thread fills it a batch at a time and
/// wakes its reader once per batch, not once per message.
#[derive(Default)]
struct Mailbox {
    q: Mutex<Queue>,
    cv: Condvar,
}

#[derive(Default)]
struct Queue {
    frames: VecDeque<Arc<str>>,
    /// No more messages will come (dropped, or the stack stopped).
    over: bool,
    /// The reader sleeps in `next`: a wake-up is needed.
    waiting: bool,
}

impl Mailbox {
    fn end(&self) {
        if let Ok(mut q) = self.q.lock() {
            q.over = true;
        }
        self.cv.notify_all();
    }
}

struct Sub {
    id: u64,
    filter: EventFilter,
    mailbox: Arc<Mailbox>,
    limiter: RateLimiter,
}

#[derive(Default)]
struct Inner {
    subs: Mutex<Vec<Sub>>,
    open: AtomicUsize,
    next_id: AtomicU64,
    opened: AtomicU64,
    closed: AtomicU64,
    dropped: AtomicU64,
    lost: AtomicU64,
    /// The fan-out thread's queue, once the first subscriber came.
    fanout: OnceLock<Option<SyncSender<Vec<Record>>>>,
}

/// Every event stream of one stack.
#[derive(Default, Clone)]
pub struct Streams {
    inner: Arc<Inner>,
}

impl Streams {
    /// A new stream of the events that pass `filter`, from now on.
    pub fn subscribe(&self, filter: EventFilter) -> Subscription {
        let inner = &self.inner;
        inner.fanout.get_or_init(|| {
            let (tx, rx) = mpsc::sync_channel(BATCHES);
            let fan = self.inner.clone();
            std::thread::Builder::new()
                .name("portlab-events".into())
                .spawn(move || fan_out(&fan, &rx))
                .ok()
                .map(|_| tx)
        });
        let mailbox = Arc::new(Mailbox::default());
        let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut subs) = inner.subs.lock() {
            subs.push(Sub {
                id,
                filter,
                mailbox: mailbox.clone(),
                limiter: RateLimiter::new(STREAM_BURST, STREAM_RATE),
            });
        }
        inner.open.fetch_add(1, Ordering::AcqRel);
        inner.opened.fetch_add(1, Ordering::Relaxed);
        Subscription {
            id,
            mailbox,
            inner: inner.clone(),
        }
    }

    /// Called by the runtime with each batch of records it logged: with
    /// no stream open, nothing; else one non-blocking send.
    pub fn publish(&self, records: &[Record]) {
        if records.is_empty() || self.inner.open.load(Ordering::Acquire) == 0 {
            return;
        }
        let Some(Some(tx)) = self.inner.fanout.get() else {
            return;
        };
        if let Err(TrySendError::Full(_)) = tx.try_send(records.to_vec()) {
            self.inner.lost.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn counts(&self) -> StreamCounts {
        let i = &self.inner;
        StreamCounts {
            open: i.open.load(Ordering::Acquire),
            opened: i.opened.load(Ordering::Relaxed),
            closed: i.closed.load(Ordering::Relaxed),
            dropped: i.dropped.load(Ordering::Relaxed),
            lost_batches: i.lost.load(Ordering::Relaxed),
        }
    }

    /// Ends every stream (the stack stopped): their readers see the end.
    pub fn close_all(&self) {
        if let Ok(mut subs) = self.inner.subs.lock() {
            for s in subs.drain(..) {
                s.mailbox.end();
            }
        }
    }
}

/// The fan-out thread: renders each record once, and gives each stream
/// what its filter and rate let through, a batch at a time.
fn fan_out(inner: &Inner, rx: &Receiver<Vec<Record>>) {
    let mut frames: Vec<Option<Arc<str>>> = Vec::new();
    let mut summaries = Vec::new();
    while let Ok(batch) = rx.recv() {
        let Ok(mut subs) = inner.subs.lock() else {
            return;
        };
        frames.clear();
        frames.resize(batch.len(), None);
        let now = batch.last().map(|r| r.ts);
        subs.retain_mut(|s| {
            let Ok(mut q) = s.mailbox.q.lock() else {
                return false;
            };
            let before = q.frames.len();
            for (record, frame) in batch.iter().zip(frames.iter_mut()) {
                if s.filter.matches(record) && s.limiter.allow(record.ts, record.event.class()) {
                    let f = frame.get_or_insert_with(|| sse_frame(record));
                    q.frames.push_back(f.clone());
                }
            }
            // What its rate left out, once a second per kind.
            if let Some(now) = now {
                summaries.clear();
                s.limiter.flush(now, &mut summaries);
                q.frames.extend(summaries.iter().map(sse_frame));
            }
            let keep = q.frames.len() <= BOUND;
            if !keep {
                inner.dropped.fetch_add(1, Ordering::Relaxed);
                q.frames.truncate(BOUND);
                q.over = true;
            }
            let wake = q.waiting && (q.frames.len() > before || q.over);
            drop(q);
            if wake {
                s.mailbox.cv.notify_one();
            }
            keep
        });
    }
}

/// One record as a Server-Sent Events message.
pub fn sse_frame(r: &Record) -> Arc<str> {
    format!("event: {}\ndata: {}\n\n", r.event.kind(), r.json()).into()
}

/// One stream's end: the messages its filter let through.
pub struct Subscription {
    id: u64,
    mailbox: Arc<Mailbox>,
    inner: Arc<Inner>,
}

/// Why [`Subscription::next`] returned no message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Nothing within the time given; the stream goes on.
    Quiet,
    /// The stream was dropped (its reader fell behind) or the stack stopped.
    Over,
}

impl Subscription {
    /// The next message (an SSE frame), waiting at most `timeout`. A stream
    /// that was dropped still yields what it holds, then `Over`.
    pub fn next(&self, timeout: Duration) -> Result<Arc<str>, Ended> {
        let deadline = std::time::Instant::now() + timeout;
        let Ok(mut q) = self.mailbox.q.lock() else {
            return Err(Ended::Over);
        };
        loop {
            if let Some(f) = q.frames.pop_front() {
                return Ok(f);
            }
            if q.over {
                return Err(Ended::Over);
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(Ended::Quiet);
            }
            q.waiting = true;
            q = match self.mailbox.cv.wait_timeout(q, left) {
                Ok((q, _)) => q,
                Err(_) => return Err(Ended::Over),
            };
            q.waiting = false;
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut was_open = false;
        if let Ok(mut subs) = self.inner.subs.lock() {
            let before = subs.len();
            subs.retain(|s| s.id != self.id);
            was_open = subs.len() < before;
        }
        self.inner.open.fetch_sub(1, Ordering::AcqRel);
        // Dropped streams are counted where they are dropped.
        if was_open {
            self.inner.closed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::event::Event;
    use crate::wire::quad::{Quad, SocketId};
    use smoltcp::time::Instant;

    /// A new socket, `id` hundredths of a second in: as fast as a stream's rate.
    fn created(id: u64, port: u16) -> Record {
        Record {
            ts: Instant::from_millis(1000 + 10 * id as i64),
            event: Event::SocketCreated {
                id: SocketId(id),
                quad: Quad::new(
                    "10.0.0.2:80".parse().unwrap(),
                    format!("10.0.0.1:{port}").parse().unwrap(),
                ),
                listener: None,
                cookie: false,
            },
            frame: None,
        }
    }

    #[test]
    fn a_stream_gets_what_its_filter_passes_as_sse() {
        let streams = Streams::default();
        let all = streams.subscribe(EventFilter::default());
        let one = streams.subscribe(EventFilter {
            remote: Some(Remote::Addr("10.0.0.1:5001".parse().unwrap())),
            ..EventFilter::default()
        });
        let none = streams.subscribe(EventFilter {
            kinds: Some(vec!["syn".into()]),
            ..EventFilter::default()
        });
        streams.publish(&[created(1, 5000), created(2, 5001)]);
        let t = Duration::from_secs(5);
        let first = all.next(t).unwrap();
        assert!(first.starts_with("event: socket_created\ndata: {\"v\":1,"));
        assert!(first.ends_with("}\n\n") && first.contains("\"id\":1"));
        assert!(all.next(t).unwrap().contains("\"id\":2"));
        assert!(one.next(t).unwrap().contains("\"id\":2"));
        assert_eq!(none.next(Duration::from_millis(50)), Err(Ended::Quiet));
        assert_eq!(streams.counts().open, 3);
    }

    #[test]
    fn a_flood_reaches_a_stream_at_its_rate_and_the_rest_is_counted() {
        let streams = Streams::default();
        let sub = streams.subscribe(EventFilter::default());
        // 1,000 new sockets within one millisecond, then one 1.5 s later.
        let mut flood: Vec<Record> = (0..1000u64)
            .map(|i| Record {
                ts: Instant::from_micros(1_000_000 + i as i64),
                ..created(i, 5000)
            })
            .collect();
        flood.push(Record {
            ts: Instant::from_millis(2500),
            ..created(1000, 5000)
        });
        streams.publish(&flood);
        let frames: Vec<Arc<str>> =
            std::iter::from_fn(|| sub.next(Duration::from_millis(300)).ok())
                .take(1000)
                .collect();
        let created = frames
            .iter()
            .filter(|f| f.starts_with("event: socket_created"))
            .count();
        assert_eq!(
            created,
            STREAM_BURST as usize + 1,
            "the burst, then the later one"
        );
        let summary = frames.last().unwrap();
        assert!(
            summary.starts_with("event: suppressed\n")
                && summary.contains("\"kind\":\"socket_created\",\"count\":800"),
            "{summary}"
        );
    }

    #[test]
    fn a_reader_that_falls_behind_is_dropped_and_counted_and_closing_is_counted() {
        let streams = Streams::default();
        let slow = streams.subscribe(EventFilter::default());
        let batch: Vec<Record> = (0..BOUND as u64 + 1).map(|i| created(i, 5000)).collect();
        streams.publish(&batch);
        // The fan-out thread gets to it while nobody reads.
        for _ in 0..500 {
            if streams.counts().dropped == 1 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut n = 0;
        while slow.next(Duration::from_secs(5)).is_ok() {
            n += 1;
        }
        assert_eq!(n, BOUND, "it held the bound, then ended");
        assert_eq!(slow.next(Duration::ZERO), Err(Ended::Over));
        let c = streams.counts();
        assert_eq!((c.dropped, c.closed), (1, 0));
        drop(slow);
        let gone = streams.subscribe(EventFilter::default());
        drop(gone);
        let c = streams.counts();
        assert_eq!((c.open, c.opened, c.closed, c.dropped), (0, 2, 1, 1));
    }
}
