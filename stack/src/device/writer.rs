//! Application threads' own writes: a batch of packets through the
//! thread's own io_uring, so that a response does not wait for the runtime.
//!
//! The runtime thread moves packets in batches ([`super::packet_io`]); an
//! application thread whose call produced packets (a `write` that sent
//! segments) writes them itself, through [`super::tun::TunDevice::send_all`]
//! (with whatever else its caller hands it: at times other threads'
//! packets too, one batch for all).
//! A few go out with a `write(2)` each; more go through a ring that the
//! thread keeps for itself.

use std::cell::RefCell;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::uring::{Cqe, Ring, Sqe};

/// Application threads write the packets their calls produce themselves
/// (no hand-off to the runtime). A batch this large goes out through the
/// thread's own ring; a response of a packet or two is a plain `write(2)`,
/// so a thread that never sends more costs no ring.
pub const WRITER_BATCH: usize = 4;

/// At most this many application threads hold a ring (a descriptor each):
/// a thread per connection must not use up the process's descriptors. The
/// others write a packet per call.
const WRITER_RINGS: usize = 64;

static WRITER_RINGS_OPEN: AtomicUsize = AtomicUsize::new(0);

/// One application thread's ring for writes, counted while it exists, and
/// the completions it collects (kept, so that a batch allocates nothing).
struct WriterRing(Ring, Vec<Cqe>);

impl WriterRing {
    fn new() -> Option<WriterRing> {
        let taken = WRITER_RINGS_OPEN.fetch_add(1, Ordering::Relaxed);
        match (taken < WRITER_RINGS)
            .then(|| Ring::new(64, 128).ok())
            .flatten()
        {
            Some(r) => Some(WriterRing(r, Vec::new())),
            None => {
                WRITER_RINGS_OPEN.fetch_sub(1, Ordering::Relaxed);
                None
            }
        }
    }
}

impl Drop for WriterRing {
    fn drop(&mut self) {
        WRITER_RINGS_OPEN.fetch_sub(1, Ordering::Relaxed);
    }
}

thread_local! {
    /// This thread's ring for writes: not tried yet, unavailable, or made.
    static WRITER: RefCell<Option<Option<WriterRing>>> = const { RefCell::new(None) };
}

/// Gives up this thread's ring for good. It is leaked, never dropped: a
/// write the kernel may still hold must not find its packet freed by a
/// later use of the ring. The thread writes a packet per call from then on.
fn give_up(w: &mut Option<Option<WriterRing>>) {
    if let Some(Some(r)) = w.take() {
        std::mem::forget(r);
    }
    *w = Some(None);
}

/// Writes `packets` to `fd` in order through this thread's ring, a batch
/// per `io_uring_enter`, each batch finished before the next. Returns how
/// many it wrote; the caller writes the rest itself.
pub(super) fn write_batch(fd: RawFd, packets: &[Vec<u8>]) -> usize {
    WRITER
        .try_with(|w| {
            let mut w = w.borrow_mut();
            let Some(WriterRing(ring, cqes)) = w.get_or_insert_with(WriterRing::new) else {
                return 0;
            };
            let mut done = 0;
            while done < packets.len() {
                let mut n = 0;
                for p in &packets[done..] {
                    // SAFETY: `packets` outlives this call, which waits below
                    // for every write it queues.
                    if !ring.push(unsafe { Sqe::write(fd, p, 0) }) {
                        break;
                    }
                    n += 1;
                }
                let mut finished = 0;
                let mut failures = 0;
                while finished < n {
                    match ring.enter(Some((n - finished, None))) {
                        Ok(()) => {}
                        Err(_) if ring.pending() > 0 => {
                            // Nothing was submitted, but the entries stay
                            // queued: the ring is given up (it must never
                            // send them once they are freed), and the caller
                            // writes these packets itself.
                            give_up(&mut w);
                            return done;
                        }
                        Err(_) => {
                            // Submitted; only the wait failed. After a few
                            // tries the ring is given up, and the caller
                            // writes the rest.
                            failures += 1;
                            if failures == 3 {
                                give_up(&mut w);
                                return done + n as usize;
                            }
                        }
                    }
                    cqes.clear();
                    ring.completions(cqes);
                    finished += cqes.len() as u32;
                }
                done += n as usize;
            }
            done
        })
        .unwrap_or(0)
}
