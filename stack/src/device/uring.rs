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
//! This module is the ring itself, with no TUN knowledge: set-up and mapping,
//! submission entries, completions, and a ring of provided buffers. The
//! ring is created with `SINGLE_ISSUER | DEFER_TASKRUN`, so completions are
//! produced only while the owning thread is in `io_uring_enter` — they come
//! in batches, and nothing runs behind the thread's back. The ring is bound
//! to the thread that makes it. Multishot reads need Linux 6.7:
//! `Ring::supports` tells whether the kernel has an operation, and the
//! caller falls back to plain calls without it, or where io_uring is
//! switched off altogether (`Ring::new` fails).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicU16, AtomicU32, Ordering};
use std::time::Duration;

const SETUP_CQSIZE: u32 = 1 << 3;
const SETUP_COOP_TASKRUN: u32 = 1 << 8;
const SETUP_SINGLE_ISSUER: u32 = 1 << 12;
const SETUP_DEFER_TASKRUN: u32 = 1 << 13;

const FEAT_SINGLE_MMAP: u32 = 1 << 0;
const FEAT_NODROP: u32 = 1 << 1;
const FEAT_EXT_ARG: u32 = 1 << 8;

const OFF_SQ_RING: i64 = 0;
const OFF_SQES: i64 = 0x1000_0000;

const ENTER_GETEVENTS: u32 = 1 << 0;
const ENTER_EXT_ARG: u32 = 1 << 3;

const OP_POLL_ADD: u8 = 6;
const OP_ASYNC_CANCEL: u8 = 14;
const OP_WRITE: u8 = 23;
const OP_READ_MULTISHOT: u8 = 49;

const SQE_BUFFER_SELECT: u8 = 1 << 5;
const POLL_ADD_MULTI: u32 = 1;
const ASYNC_CANCEL_ANY: u32 = 1 << 2;

const REGISTER_PROBE: u32 = 8;
const REGISTER_PBUF_RING: u32 = 22;
const UNREGISTER_PBUF_RING: u32 = 23;

/// The completion carries a provided buffer's id in its upper 16 bits.
pub const CQE_F_BUFFER: u32 = 1 << 0;
/// A multishot request stays armed after this completion.
pub const CQE_F_MORE: u32 = 1 << 1;
const CQE_BUFFER_SHIFT: u32 = 16;

#[repr(C)]
#[derive(Default)]
struct SqringOffsets {
    head: u32,
    tail: u32,
    ring_mask: u32,
    ring_entries: u32,
    flags: u32,
    dropped: u32,
    array: u32,
    resv1: u32,
    user_addr: u64,
}

#[repr(C)]
#[derive(Default)]
struct CqringOffsets {
    head: u32,
    tail: u32,
    ring_mask: u32,
    ring_entries: u32,
    overflow: u32,
    cqes: u32,
    flags: u32,
    resv1: u32,
    user_addr: u64,
}

#[repr(C)]
#[derive(Default)]
struct Params {
    sq_entries: u32,
    cq_entries: u32,
    flags: u32,
    sq_thread_cpu: u32,
    sq_thread_idle: u32,
    features: u32,
    wq_fd: u32,
    resv: [u32; 3],
    sq_off: SqringOffsets,
    cq_off: CqringOffsets,
}

#[repr(C)]
struct GeteventsArg {
    sigmask: u64,
    sigmask_sz: u32,
    min_wait_usec: u32,
    ts: u64,
}

#[repr(C)]
struct KernelTimespec {
    tv_sec: i64,
    tv_nsec: i64,
}

#[repr(C)]
struct BufReg {
    ring_addr: u64,
    ring_entries: u32,
    bgid: u16,
    flags: u16,
    resv: [u64; 3],
}

/// One submission queue entry, as the kernel reads it.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct Sqe {
    opcode: u8,
    flags: u8,
    ioprio: u16,
    fd: i32,
    off: u64,
    addr: u64,
    len: u32,
    op_flags: u32,
    user_data: u64,
    buf_group: u16,
    personality: u16,
    splice_fd_in: i32,
    addr3: u64,
    pad: u64,
}

impl Sqe {
    /// Reads from `fd` whenever it has data, each read into the next buffer
    /// of group `group`, one completion per read, until the buffers run out.
    pub fn read_multishot(fd: RawFd, group: u16, user_data: u64) -> Sqe {
        Sqe {
            opcode: OP_READ_MULTISHOT,
            flags: SQE_BUFFER_SELECT,
            fd,
            off: u64::MAX,
            buf_group: group,
            user_data,
            ..Sqe::default()
        }
    }

    /// A completion whenever `fd` becomes readable, until cancelled.
    pub fn poll_readable_multishot(fd: RawFd, user_data: u64) -> Sqe {
        Sqe {
            opcode: OP_POLL_ADD,
            fd,
            len: POLL_ADD_MULTI,
            op_flags: libc::POLLIN as u32,
            user_data,
            ..Sqe::default()
        }
    }

    /// Writes `data` to `fd`.
    ///
    /// # Safety
    /// `data` must stay alive and unchanged until this entry's completion.
    pub unsafe fn write(fd: RawFd, data: &[u8], user_data: u64) -> Sqe {
        Sqe {
            opcode: OP_WRITE,
            fd,
            off: u64::MAX,
            addr: data.as_ptr() as u64,
            len: data.len() as u32,
            user_data,
            ..Sqe::default()
        }
    }

    /// Cancels every request still in flight.
    pub fn cancel_all(user_data: u64) -> Sqe {
        Sqe {
            opcode: OP_ASYNC_CANCEL,
            fd: -1,
            op_flags: ASYNC_CANCEL_ANY,
            user_data,
            ..Sqe::default()
        }
    }
}

/// One completion.
#[repr(C)]
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
        (self.flags & CQE_F_BUFFER != 0).then_some((self.flags >> CQE_BUFFER_SHIFT) as u16)
    }

    /// Whether the multishot request that made it is still armed.
    pub fn more(&self) -> bool {
        self.flags & CQE_F_MORE != 0
    }
}

/// An anonymous or file mapping, unmapped on drop.
struct Map {
    ptr: NonNull<u8>,
    len: usize,
}

impl Map {
    fn new(len: usize, fd: RawFd, offset: i64) -> io::Result<Map> {
        let flags = if fd < 0 {
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS
        } else {
            libc::MAP_SHARED | libc::MAP_POPULATE
        };
        let prot = libc::PROT_READ | libc::PROT_WRITE;
        // SAFETY: a fresh mapping; the result is checked.
        let p = unsafe { libc::mmap(ptr::null_mut(), len, prot, flags, fd, offset) };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Map {
            ptr: NonNull::new(p.cast()).ok_or_else(|| io::Error::other("mmap gave null"))?,
            len,
        })
    }

    /// A pointer `offset` bytes in, as `T`.
    fn at<T>(&self, offset: u32) -> *mut T {
        debug_assert!(offset as usize + std::mem::size_of::<T>() <= self.len);
        // SAFETY: within the mapping (checked by the callers' offsets, which
        // the kernel gave for this mapping's size).
        unsafe { self.ptr.as_ptr().add(offset as usize).cast() }
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        // SAFETY: our own mapping, unmapped once.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// An io_uring instance: a submission queue and a completion queue.
pub struct Ring {
    fd: OwnedFd,
    _rings: Map,
    sqes_map: Map,
    sq_head: *const AtomicU32,
    sq_tail: *const AtomicU32,
    sq_mask: u32,
    sq_entries: u32,
    sqes: *mut Sqe,
    /// Entries written but not yet handed to the kernel.
    sq_local_tail: u32,
    to_submit: u32,
    cq_head: *const AtomicU32,
    cq_tail: *const AtomicU32,
    cq_mask: u32,
    cqes: *const Cqe,
}

impl Ring {
    /// A ring with `sq_entries` submission slots and `cq_entries` completion
    /// slots (powers of two).
    pub fn new(sq_entries: u32, cq_entries: u32) -> io::Result<Ring> {
        let mut p = Params {
            flags: SETUP_CQSIZE | SETUP_COOP_TASKRUN | SETUP_SINGLE_ISSUER | SETUP_DEFER_TASKRUN,
            cq_entries,
            ..Params::default()
        };
        // SAFETY: io_uring_setup with a valid params struct; result checked.
        let raw =
            unsafe { libc::syscall(libc::SYS_io_uring_setup, sq_entries, &mut p as *mut Params) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a descriptor the kernel just gave us.
        let fd = unsafe { OwnedFd::from_raw_fd(raw as RawFd) };
        let needed = FEAT_SINGLE_MMAP | FEAT_NODROP | FEAT_EXT_ARG;
        if p.features & needed != needed {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "this kernel's io_uring lacks single mmap, no-drop or extended wait arguments",
            ));
        }
        let sq_len = p.sq_off.array as usize + p.sq_entries as usize * 4;
        let cq_len = p.cq_off.cqes as usize + p.cq_entries as usize * std::mem::size_of::<Cqe>();
        let rings = Map::new(sq_len.max(cq_len), fd.as_raw_fd(), OFF_SQ_RING)?;
        let sqes_map = Map::new(
            p.sq_entries as usize * std::mem::size_of::<Sqe>(),
            fd.as_raw_fd(),
            OFF_SQES,
        )?;
        let array: *mut u32 = rings.at(p.sq_off.array);
        for i in 0..p.sq_entries {
            // SAFETY: the index array has sq_entries slots; identity mapping.
            unsafe { array.add(i as usize).write(i) };
        }
        // SAFETY: the kernel's offsets and masks for this mapping.
        let (sq_mask, cq_mask) = unsafe {
            (
                *rings.at::<u32>(p.sq_off.ring_mask),
                *rings.at::<u32>(p.cq_off.ring_mask),
            )
        };
        let sq_tail: *const AtomicU32 = rings.at(p.sq_off.tail);
        // SAFETY: the tail is an aligned u32 in the mapping.
        let sq_local_tail = unsafe { (*sq_tail).load(Ordering::Relaxed) };
        Ok(Ring {
            sq_head: rings.at(p.sq_off.head),
            sq_tail,
            sq_mask,
            sq_entries: p.sq_entries,
            sqes: sqes_map.at(0),
            sq_local_tail,
            to_submit: 0,
            cq_head: rings.at(p.cq_off.head),
            cq_tail: rings.at(p.cq_off.tail),
            cq_mask,
            cqes: rings.at(p.cq_off.cqes),
            _rings: rings,
            sqes_map,
            fd,
        })
    }

    /// Queues an entry; `false` if the submission queue is full (submit
    /// first).
    pub fn push(&mut self, sqe: Sqe) -> bool {
        // SAFETY: the head is an aligned u32 the kernel advances.
        let head = unsafe { (*self.sq_head).load(Ordering::Acquire) };
        if self.sq_local_tail.wrapping_sub(head) >= self.sq_entries {
            return false;
        }
        let slot = (self.sq_local_tail & self.sq_mask) as usize;
        debug_assert!(slot * std::mem::size_of::<Sqe>() < self.sqes_map.len);
        // SAFETY: slot < sq_entries, inside the entries mapping, and not yet
        // published to the kernel.
        unsafe { self.sqes.add(slot).write(sqe) };
        self.sq_local_tail = self.sq_local_tail.wrapping_add(1);
        self.to_submit += 1;
        true
    }

    /// Queued entries not yet submitted.
    pub fn pending(&self) -> u32 {
        self.to_submit
    }

    /// Hands queued entries to the kernel; with `wait`, also waits until at
    /// least `wait.0` completions are ready or `wait.1` passes (`None`:
    /// no time limit). Returns on a signal too.
    pub fn enter(&mut self, wait: Option<(u32, Option<Duration>)>) -> io::Result<()> {
        // SAFETY: publishing entries written by `push`.
        unsafe { (*self.sq_tail).store(self.sq_local_tail, Ordering::Release) };
        let (min_complete, flags, ts) = match wait {
            None => (0, 0, None),
            Some((n, t)) => (
                n,
                ENTER_GETEVENTS | ENTER_EXT_ARG,
                t.map(|t| KernelTimespec {
                    tv_sec: t.as_secs() as i64,
                    tv_nsec: i64::from(t.subsec_nanos()),
                }),
            ),
        };
        let arg = GeteventsArg {
            sigmask: 0,
            sigmask_sz: 0,
            min_wait_usec: 0,
            ts: ts.as_ref().map_or(0, |t| t as *const KernelTimespec as u64),
        };
        // SAFETY: io_uring_enter on our ring; `arg` and `ts` live across it.
        let r = unsafe {
            libc::syscall(
                libc::SYS_io_uring_enter,
                self.fd.as_raw_fd(),
                self.to_submit,
                min_complete,
                flags,
                &arg as *const GeteventsArg,
                std::mem::size_of::<GeteventsArg>(),
            )
        };
        if r < 0 {
            let err = io::Error::last_os_error();
            return match err.raw_os_error() {
                // Timed out, interrupted, or completions waiting to be
                // reaped first: not failures of the ring.
                Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN) => Ok(()),
                _ => Err(err),
            };
        }
        self.to_submit -= (r as u32).min(self.to_submit);
        Ok(())
    }

    /// Moves every ready completion into `out`.
    pub fn completions(&mut self, out: &mut Vec<Cqe>) {
        // SAFETY: head and tail are aligned u32s in the mapping; entries
        // between them are written by the kernel before it advances tail.
        unsafe {
            let mut head = (*self.cq_head).load(Ordering::Relaxed);
            let tail = (*self.cq_tail).load(Ordering::Acquire);
            while head != tail {
                out.push(*self.cqes.add((head & self.cq_mask) as usize));
                head = head.wrapping_add(1);
            }
            (*self.cq_head).store(head, Ordering::Release);
        }
    }

    /// Whether this kernel's io_uring has the operations a multishot
    /// packet reader needs (reads into provided buffers: Linux 6.7).
    pub fn supports_multishot_read(&self) -> bool {
        self.supports(OP_READ_MULTISHOT)
    }

    fn supports(&self, opcode: u8) -> bool {
        // struct io_uring_probe: a 16-byte head (last_op first), then one
        // 8-byte entry per operation (op, resv, flags with bit 0 set when
        // supported).
        const OPS: usize = 256;
        let mut probe = vec![0u8; 16 + OPS * 8];
        if self
            .register(REGISTER_PROBE, probe.as_mut_ptr().cast(), OPS as u32)
            .is_err()
        {
            return false;
        }
        let last_op = probe[0];
        let entry = 16 + usize::from(opcode) * 8;
        opcode <= last_op && probe[entry] == opcode && probe[entry + 2] & 1 != 0
    }

    fn register(&self, opcode: u32, arg: *const libc::c_void, n: u32) -> io::Result<()> {
        // SAFETY: io_uring_register with an argument valid for `opcode`.
        let r = unsafe {
            libc::syscall(
                libc::SYS_io_uring_register,
                self.fd.as_raw_fd(),
                opcode,
                arg,
                n,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// A ring of equal buffers lent to the kernel: a multishot read picks the
/// next one for each packet, and the completion names it.
pub struct BufferRing {
    group: u16,
    entries: u16,
    buf_len: usize,
    ring: Map,
    memory: Map,
    tail: u16,
}

#[repr(C)]
struct Buf {
    addr: u64,
    len: u32,
    bid: u16,
    resv: u16,
}

impl BufferRing {
    /// `entries` (a power of two) buffers of `buf_len` bytes, registered
    /// with `ring` as group `group`, all lent out.
    pub fn new(ring: &Ring, group: u16, entries: u16, buf_len: usize) -> io::Result<BufferRing> {
        assert!(entries.is_power_of_two());
        let ring_len = (usize::from(entries) * std::mem::size_of::<Buf>()).max(4096);
        let map = Map::new(ring_len, -1, 0)?;
        // Untouched pages cost nothing: only the bytes packets fill become
        // resident.
        let memory = Map::new(usize::from(entries) * buf_len, -1, 0)?;
        let reg = BufReg {
            ring_addr: map.ptr.as_ptr() as u64,
            ring_entries: u32::from(entries),
            bgid: group,
            flags: 0,
            resv: [0; 3],
        };
        ring.register(REGISTER_PBUF_RING, (&reg as *const BufReg).cast(), 1)?;
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
        let entry: *mut Buf = self.ring.at((slot * std::mem::size_of::<Buf>()) as u32);
        // SAFETY: slot < entries; the kernel only reads entries before the
        // published tail, and this one is past it.
        unsafe {
            (*entry).addr =
                self.memory.ptr.as_ptr() as u64 + (usize::from(bid) * self.buf_len) as u64;
            (*entry).len = self.buf_len as u32;
            (*entry).bid = bid;
        }
        self.tail = self.tail.wrapping_add(1);
    }

    /// Lends the kernel every buffer pushed so far.
    pub fn publish(&mut self) {
        // The ring's tail shares the first entry's last two bytes.
        let tail: *const AtomicU16 = self.ring.at(14);
        // SAFETY: an aligned u16 in the ring mapping.
        unsafe { (*tail).store(self.tail, Ordering::Release) };
    }

    /// Takes the buffers back from the kernel (before they are freed).
    pub fn unregister(&self, ring: &Ring) -> io::Result<()> {
        let reg = BufReg {
            ring_addr: 0,
            ring_entries: 0,
            bgid: self.group,
            flags: 0,
            resv: [0; 3],
        };
        ring.register(UNREGISTER_PBUF_RING, (&reg as *const BufReg).cast(), 1)
    }
}

#[cfg(test)]
mod tests {
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
        assert!(ring.supports(OP_WRITE));
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
