//! Packet buffers, reused.
//!
//! Every segment the engine sends is built in a buffer of its own, which
//! lives until the device has written it. In a bulk transfer that is a
//! buffer per 1,448 bytes, and allocating and freeing each one was almost
//! 2% of the sending CPU's time. Written packets come back here instead of
//! being freed, and the next ones are built in them (zeroed again).
//!
//! Each thread keeps its own: packets are built and written by the same
//! thread (an application thread writes what its calls produce; the
//! runtime writes the rest), so no lock is needed, and a thread that sends
//! nothing holds nothing.

use std::cell::RefCell;

/// Buffers are at least this large, so that one serves any packet of a
/// 1500-byte MTU; larger packets (GSO, a larger MTU) get their own.
const BUF: usize = 2048;

/// At most this many buffers (384 KiB) wait in one thread's pool: as many
/// as one write can take at a time (a whole default send buffer, 256 KiB, is
/// 182 segments). With 64, the buffers of each such write beyond the first
/// 64 were freed, the allocator gave the memory back to the system, and the
/// next write took it again, page faults and all: 3 to 6% of the sending
/// CPU's time from the stack to the kernel. A thread that never writes
/// that much never holds that many.
const KEEP: usize = 192;

thread_local! {
    static POOL: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// A zeroed buffer of `len` bytes: a reused one when this thread has one.
pub fn take(len: usize) -> Vec<u8> {
    let reused = if len <= BUF {
        POOL.try_with(|p| p.borrow_mut().pop()).ok().flatten()
    } else {
        None
    };
    let mut v = reused.unwrap_or_else(|| Vec::with_capacity(len.max(BUF)));
    v.resize(len, 0);
    v
}

/// Gives back a written packet's buffer for later packets of this thread.
pub fn give(mut v: Vec<u8>) {
    if v.capacity() != BUF {
        return;
    }
    v.clear();
    let _ = POOL.try_with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < KEEP {
            p.push(v);
        }
    });
}

/// Gives back every buffer in `packets`, leaving it empty.
pub fn give_all(packets: &mut Vec<Vec<u8>>) {
    for p in packets.drain(..) {
        give(p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_zeroed_and_sized() {
        let mut a = take(100);
        assert_eq!(a.len(), 100);
        a.fill(0xee);
        let ptr = a.as_ptr();
        give(a);
        let b = take(60);
        assert_eq!(b.as_ptr(), ptr, "the same buffer, reused");
        assert_eq!(b, vec![0; 60], "zeroed again");
        // Too large for the pool: a buffer of its own, not kept.
        let big = take(9000);
        assert_eq!(big.len(), 9000);
        give(big);
        let c = take(60);
        assert_ne!(c.as_ptr(), ptr, "the pool was empty again");
    }

    #[test]
    fn the_pool_is_bounded() {
        let bufs: Vec<Vec<u8>> = (0..KEEP + 10).map(|_| take(10)).collect();
        for b in bufs {
            give(b);
        }
        POOL.with(|p| assert_eq!(p.borrow().len(), KEEP));
    }
}
