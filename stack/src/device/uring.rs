//! io_uring: many packet reads and writes for one system call.
//!
//! A TUN device hands over one packet per `read` and takes one per `write`.
//! At 1500 bytes a packet that is hundreds of thousands of system calls a
//! second, and entering and leaving the kernel costs about as much as a
//! tenth of the work of moving the packet. With io_uring the runtime asks
//! once for "every packet, as it arrives" (a multishot read into buffers it
//! lent the kernel) and waits for them, its wake-up eventfd and its timers in
//! one `io_uring_enter`; the packets it sends go out as a batch of writes in
//! one more. The kernel still does the same work per packet, minus the
//! system call around it.
//!
//! This module is the ring, with no TUN knowledge: the few operations the
//! device layer needs (a multishot read into provided buffers, a multishot
//! poll, a write, a cancel), their completions, and a ring of provided
//! buffers. The ring itself (set-up, mapping, submission and completion
//! queues) is the `io-uring` crate's; what stays here is the choice of
//! operations and flags, and the memory lent to the kernel. The
//! ring is created with `SINGLE_ISSUER | DEFER_TASKRUN`, so completions are
//! produced only while the owning thread is in `io_uring_enter` — they come
//! in batches, and nothing runs behind the thread's back. The ring is bound
//! to the thread that makes it. Multishot reads need Linux 6.7:
//! `Ring::supports_multishot_read` tells whether the kernel has an operation, and the
//! caller falls back to plain calls without it, or where io_uring is
//! switched off altogether (`Ring::new` fails).

use std::io;
use std::os::fd::RawFd;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use io_uring::types::{BufRingEntry, CancelBuilder, Fd, SubmitArgs, Timespec};
use io_uring::{IoUring, Probe, cqueue, opcode, squeue};

/// One submission queue entry.
#[derive(Debug, Clone)]
pub struct Sqe(squeue::Entry);

impl Sqe {
    /// Reads from `fd` whenever it has data, each read into the next buffer
    /// of group `group`, one completion per read, until the buffers run out.
    pub fn read_multishot(fd: RawFd, group: u16, user_data: u64) -> Sqe {
        Sqe(opcode::ReadMulti::new(Fd(fd), 0, group)
            .offset(u64::MAX)
            .build()
            .user_data(user_data))
    }

    /// A completion whenever `fd` becomes readable, until cancelled.
    pub fn poll_readable_multishot(fd: RawFd, user_data: u64) -> Sqe {
        Sqe(opcode::PollAdd::new(Fd(fd), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(user_data))
    }

    /// Writes `data` to `fd`.
    ///
    /// # Safety
    /// `data` must stay alive and unchanged until this entry's completion.
    pub unsafe fn write(fd: RawFd, data: &[u8], user_data: u64) -> Sqe {
        Sqe(opcode::Write::new(Fd(fd), data.as_ptr(), data.len() as u32)
            .offset(u64::MAX)
            .build()
            .user_data(user_data))
    }

    /// Cancels every request still in flight.
    pub fn cancel_all(user_data: u64) -> Sqe {
        Sqe(opcode::AsyncCancel2::new(CancelBuilder::any())
            .build()
            .user_data(user_data))
    }
}

/// One completion.
#[derive(Debug, Clone, Copy)]
pub struct Cqe {
    pub user_data: u64,
    /// The result: a byte count, or a negative errno.
    pub res: i32,
    pub flags: u32,
}

impl Cqe {
    /// The provided buffer this completion filled, if any.
    pub fn buffer(&self) -> Option<u16> {
        cqueue::buffer_select(self.flags)
    }

    /// Whether the multishot request that made it is still armed.
    pub fn more(&self) -> bool {
        cqueue::more(self.flags)
    }
}

impl From<cqueue::Entry> for Cqe {
    fn from(e: cqueue::Entry) -> Cqe {
        Cqe {
            user_data: e.user_data(),
            res: e.result(),
            flags: e.flags(),
        }
    }
}

/// An io_uring instance: a submission queue and a completion queue.
pub struct Ring(IoUring);

impl Ring {
    /// A ring with `sq_entries` submission slots and `cq_entries` completion
    /// slots (powers of two), completions made only while this thread waits
    /// for them (`SINGLE_ISSUER | DEFER_TASKRUN`).
    pub fn new(sq_entries: u32, cq_entries: u32) -> io::Result<Ring> {
        let ring = IoUring::builder()
            .setup_cqsize(cq_entries)
            .setup_coop_taskrun()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(sq_entries)?;
        let p = ring.params();
        if !(p.is_feature_single_mmap() && p.is_feature_nodrop() && p.is_feature_ext_arg()) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "this kernel's io_uring lacks single mmap, no-drop or extended wait arguments",
            ));
        }
        Ok(Ring(ring))
    }

    /// Queues an entry; `false` if the submission queue is full (submit
    /// first).
    pub fn push(&mut self, sqe: Sqe) -> bool {
        // SAFETY: what an entry points at (a write's bytes, a buffer group)
        // is kept alive by its maker until its completion (see `Sqe::write`).
        unsafe { self.0.submission().push(&sqe.0).is_ok() }
    }

    /// Queued entries not yet submitted.
    pub fn pending(&mut self) -> u32 {
        self.0.submission().len() as u32
    }

    /// Hands queued entries to the kernel; with `wait`, also waits until at
    /// least `wait.0` completions are ready or `wait.1` passes (`None`:
    /// no time limit). Returns on a signal too.
    pub fn enter(&mut self, wait: Option<(u32, Option<Duration>)>) -> io::Result<()> {
        let submitter = self.0.submitter();
        let r = match wait {
            None => submitter.submit(),
            Some((n, None)) => submitter.submit_and_wait(n as usize),
            Some((n, Some(t))) => {
                let ts = Timespec::new().sec(t.as_secs()).nsec(t.subsec_nanos());
                submitter.submit_with_args(n as usize, &SubmitArgs::new().timespec(&ts))
            }
        };
        match r {
            Ok(_) => Ok(()),
            // Timed out, interrupted, or completions waiting to be reaped
            // first: not failures of the ring.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Moves every ready completion into `out`.
    pub fn completions(&mut self, out: &mut Vec<Cqe>) {
        out.extend(self.0.completion().map(Cqe::from));
    }

    /// Whether this kernel's io_uring has the operations a multishot
    /// packet reader needs (reads into provided buffers: Linux 6.7).
    pub fn supports_multishot_read(&self) -> bool {
        self.supports(opcode::ReadMulti::CODE)
    }

    fn supports(&self, opcode: u8) -> bool {
        let mut probe = Probe::new();
        self.0.submitter().register_probe(&mut probe).is_ok() && probe.is_supported(opcode)
    }
}

/// An anonymous mapping, unmapped on drop: memory lent to the kernel, whose
/// untouched pages cost nothing.
struct Map {
    ptr: NonNull<u8>,
    len: usize,
}

impl Map {
    fn new(len: usize) -> io::Result<Map> {
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
        // SAFETY: a fresh mapping; the result is checked.
        let p = unsafe { libc::mmap(ptr::null_mut(), len, prot, flags, -1, 0) };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Map {
            ptr: NonNull::new(p.cast()).ok_or_else(|| io::Error::other("mmap gave null"))?,
            len,
        })
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        // SAFETY: our own mapping, unmapped once.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// A ring of equal buffers lent to the kernel: a multishot read picks the
/// next one for each packet, and the completion names it.
pub struct BufferRing {
    group: u16,
    entries: u16,
    buf_len: usize,
    /// The ring of `BufRingEntry`s the kernel reads (page-aligned).
    ring: Map,
    memory: Map,
    tail: u16,
}

impl BufferRing {
    /// `entries` (a power of two) buffers of `buf_len` bytes, registered
    /// with `ring` as group `group`, all lent out.
    pub fn new(ring: &Ring, group: u16, entries: u16, buf_len: usize) -> io::Result<BufferRing> {
        assert!(entries.is_power_of_two());
        let ring_len = (usize::from(entries) * std::mem::size_of::<BufRingEntry>()).max(4096);
        let map = Map::new(ring_len)?;
        // Untouched pages cost nothing: only the bytes packets fill become
        // resident.
        let memory = Map::new(usize::from(entries) * buf_len)?;
        // SAFETY: the ring's mapping lives in `BufferRing`, which is
        // unregistered (`unregister`) before it is dropped.
        unsafe {
            ring.0.submitter().register_buf_ring_with_flags(
                map.ptr.as_ptr() as u64,
                entries,
                group,
                0,
            )?;
        }
        let mut b = BufferRing {
            group,
            entries,
            buf_len,
            ring: map,
            memory,
            tail: 0,
        };
        for bid in 0..entries {
            b.push(bid);
        }
        b.publish();
        Ok(b)
    }

    pub fn group(&self) -> u16 {
        self.group
    }

    fn base(&self) -> *mut BufRingEntry {
        self.ring.ptr.as_ptr().cast()
    }

    /// The first `len` bytes of buffer `bid`.
    pub fn get(&self, bid: u16, len: usize) -> &[u8] {
        let bid = usize::from(bid % self.entries);
        // SAFETY: within the buffers' mapping; the kernel wrote these bytes
        // before posting the completion that names the buffer, and does not
        // touch it again until it is given back.
        unsafe {
            std::slice::from_raw_parts(
                self.memory.ptr.as_ptr().add(bid * self.buf_len),
                len.min(self.buf_len),
            )
        }
    }

    /// Queues buffer `bid` to be lent again (see [`BufferRing::publish`]).
    pub fn push(&mut self, bid: u16) {
        let bid = bid % self.entries;
        let slot = usize::from(self.tail & (self.entries - 1));
        // SAFETY: slot < entries, inside the ring's mapping; the kernel only
        // reads entries before the published tail, and this one is past it.
        let entry = unsafe { &mut *self.base().add(slot) };
        entry.set_addr(self.memory.ptr.as_ptr() as u64 + (usize::from(bid) * self.buf_len) as u64);
        entry.set_len(self.buf_len as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Lends the kernel every buffer pushed so far.
    pub fn publish(&mut self) {
        // SAFETY: the ring's base; its tail is an aligned u16 inside the
        // first entry, which the kernel reads with acquire ordering.
        let tail = unsafe { BufRingEntry::tail(self.base()) } as *const AtomicU16;
        // SAFETY: as above.
        unsafe { (*tail).store(self.tail, Ordering::Release) };
    }

    /// Takes the buffers back from the kernel (before they are freed).
    pub fn unregister(&self, ring: &Ring) -> io::Result<()> {
        ring.0.submitter().unregister_buf_ring(self.group)
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    use super::*;

    fn pipe() -> (OwnedFd, OwnedFd) {
        let mut fds = [0; 2];
        // SAFETY: a valid array for pipe2.
        assert_eq!(
            unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) },
            0
        );
        // SAFETY: descriptors pipe2 just gave us.
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    }

    /// io_uring may be switched off (a sysctl, a container's seccomp
    /// filter); then these tests have nothing to test and say so.
    fn ring() -> Option<Ring> {
        match Ring::new(8, 64) {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("io_uring unavailable here ({e}); the runtime falls back to plain calls");
                None
            }
        }
    }

    fn wait(ring: &mut Ring, n: usize) -> Vec<Cqe> {
        let mut got = Vec::new();
        for _ in 0..50 {
            ring.enter(Some((1, Some(Duration::from_millis(20)))))
                .unwrap();
            ring.completions(&mut got);
            if got.len() >= n {
                break;
            }
        }
        got
    }

    #[test]
    fn the_probe_knows_old_operations_and_not_unknown_ones() {
        let Some(ring) = ring() else { return };
        assert!(ring.supports(opcode::Write::CODE));
        assert!(!ring.supports(250));
    }

    #[test]
    fn writes_go_out_and_a_multishot_read_takes_each_into_its_own_buffer() {
        let Some(mut ring) = ring() else { return };
        if !ring.supports_multishot_read() {
            eprintln!("no multishot reads before Linux 6.7: nothing to test");
            return;
        }
        let (r, w) = pipe();
        let mut bufs = BufferRing::new(&ring, 7, 4, 64).unwrap();
        assert!(ring.push(Sqe::read_multishot(r.as_raw_fd(), bufs.group(), 1)));
        ring.enter(Some((0, Some(Duration::ZERO)))).unwrap();
        let a = b"first".to_vec();
        let b = b"second".to_vec();
        // SAFETY: a and b outlive the completions waited for below.
        unsafe {
            assert!(ring.push(Sqe::write(w.as_raw_fd(), &a, 10)));
        }
        ring.enter(None).unwrap();
        let got = wait(&mut ring, 2);
        let write = got.iter().find(|c| c.user_data == 10).unwrap();
        assert_eq!(write.res, 5);
        let read = got.iter().find(|c| c.user_data == 1).unwrap();
        assert!(read.more(), "the read stays armed");
        let bid = read.buffer().unwrap();
        assert_eq!(bufs.get(bid, read.res as usize), b"first");
        bufs.push(bid);
        bufs.publish();
        // SAFETY: as above.
        unsafe {
            assert!(ring.push(Sqe::write(w.as_raw_fd(), &b, 11)));
        }
        let got = wait(&mut ring, 2);
        let read = got.iter().find(|c| c.user_data == 1).unwrap();
        assert_eq!(
            bufs.get(read.buffer().unwrap(), read.res as usize),
            b"second"
        );
        bufs.unregister(&ring).unwrap();
    }

    #[test]
    fn running_out_of_buffers_ends_the_read_with_enobufs() {
        let Some(mut ring) = ring() else { return };
        if !ring.supports_multishot_read() {
            return;
        }
        let (r, w) = pipe();
        let bufs = BufferRing::new(&ring, 3, 2, 4).unwrap();
        assert!(ring.push(Sqe::read_multishot(r.as_raw_fd(), bufs.group(), 1)));
        // A pipe read takes what is there, up to the buffer: 4 + 4, then
        // no buffer is left.
        // SAFETY: a valid buffer for write(2).
        assert_eq!(
            unsafe { libc::write(w.as_raw_fd(), b"0123456789ab".as_ptr().cast(), 12) },
            12
        );
        let got = wait(&mut ring, 3);
        let reads: Vec<_> = got.iter().filter(|c| c.user_data == 1).collect();
        assert_eq!(reads.len(), 3, "{got:?}");
        assert_eq!(bufs.get(reads[0].buffer().unwrap(), 4), b"0123");
        assert_eq!(bufs.get(reads[1].buffer().unwrap(), 4), b"4567");
        assert_eq!(reads[2].res, -libc::ENOBUFS);
        assert!(!reads[2].more(), "the read must be armed again");
        bufs.unregister(&ring).unwrap();
    }

    #[test]
    fn a_readable_descriptor_and_a_timeout_both_end_the_wait() {
        let Some(mut ring) = ring() else { return };
        let (r, w) = pipe();
        assert!(ring.push(Sqe::poll_readable_multishot(r.as_raw_fd(), 5)));
        let start = std::time::Instant::now();
        ring.enter(Some((1, Some(Duration::from_millis(30)))))
            .unwrap();
        let mut got = Vec::new();
        ring.completions(&mut got);
        assert!(got.is_empty());
        assert!(start.elapsed() >= Duration::from_millis(25));
        // SAFETY: a valid buffer for write(2).
        assert_eq!(
            unsafe { libc::write(w.as_raw_fd(), b"x".as_ptr().cast(), 1) },
            1
        );
        let got = wait(&mut ring, 1);
        assert_eq!(got[0].user_data, 5);
        assert!(got[0].res & libc::POLLIN as i32 != 0);
        assert!(got[0].more());
        assert!(ring.push(Sqe::cancel_all(6)));
        let got = wait(&mut ring, 2);
        assert!(
            got.iter()
                .any(|c| c.user_data == 5 && c.res == -libc::ECANCELED)
        );
    }

    /// A packet device hands over one packet per read, like a datagram
    /// socket: packets queued together must all be read in one wait, not
    /// one per later arrival.
    #[test]
    fn queued_datagrams_are_all_read_at_once() {
        let Some(mut ring) = ring() else { return };
        if !ring.supports_multishot_read() {
            return;
        }
        let mut fds = [0; 2];
        // SAFETY: a valid array for socketpair.
        assert_eq!(
            unsafe {
                libc::socketpair(
                    libc::AF_UNIX,
                    libc::SOCK_DGRAM | libc::SOCK_NONBLOCK,
                    0,
                    fds.as_mut_ptr(),
                )
            },
            0
        );
        // SAFETY: descriptors socketpair just gave us.
        let (a, b) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let bufs = BufferRing::new(&ring, 4, 16, 64).unwrap();
        assert!(ring.push(Sqe::read_multishot(a.as_raw_fd(), bufs.group(), 1)));
        ring.enter(Some((0, Some(Duration::ZERO)))).unwrap();
        for i in 0..5u8 {
            // SAFETY: a valid buffer for write(2).
            assert_eq!(
                unsafe { libc::write(b.as_raw_fd(), [i].as_ptr().cast(), 1) },
                1
            );
        }
        ring.enter(Some((1, Some(Duration::from_millis(100)))))
            .unwrap();
        let mut got = Vec::new();
        ring.completions(&mut got);
        assert_eq!(got.len(), 5, "{got:?}");
        // And again, with the read armed and idle in between.
        for i in 5..8u8 {
            // SAFETY: as above.
            assert_eq!(
                unsafe { libc::write(b.as_raw_fd(), [i].as_ptr().cast(), 1) },
                1
            );
        }
        ring.enter(Some((1, Some(Duration::from_millis(100)))))
            .unwrap();
        got.clear();
        ring.completions(&mut got);
        assert_eq!(got.len(), 3, "{got:?}");
        bufs.unregister(&ring).unwrap();
    }
}
