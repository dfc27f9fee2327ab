//! How the runtime thread waits for packets and moves them through the
//! device: a batch per system call with io_uring, or a call per packet.
//!
//! With io_uring (the default, plain packets only) one multishot read stays
//! armed on the device and fills buffers lent to the kernel as packets
//! arrive; a multishot poll watches the runtime's wake-up eventfd. One
//! `io_uring_enter` then hands over the packets to write, sleeps until
//! something arrives or the deadline passes, and collects every packet that
//! came meanwhile. Without it (`--no-io-uring`, `--offload`, the lossy link,
//! or a kernel or container without io_uring) the runtime sleeps in
//! `poll(2)`, reads a packet per `read(2)` and writes one per `write(2)`.
//! Both ways give the stack the same packets in the same order.

use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use log::{info, warn};

use super::tun::TunDevice;
use crate::device::uring::{BufferRing, Cqe, Ring, Sqe};

/// How many packets one wake-up takes before timers and writes run.
pub const READ_BATCH: usize = 256;

/// What a completion belongs to: the tag in its upper 32 bits.
const TAG_READ: u64 = 1 << 32;
const TAG_WAKE: u64 = 2 << 32;
const TAG_WRITE: u64 = 3 << 32;
const TAG_CANCEL: u64 = 4 << 32;
const TAG_MASK: u64 = !0xffff_ffff;

/// The buffers lent for reads, each large enough for any IP packet (pages a
/// packet does not reach are never touched: 1 MiB resident for 256 of
/// 1500-byte packets). A burst larger than this ends the multishot read with
/// ENOBUFS; the next wait arms it again, and the packets wait in the
/// device's queue meanwhile. Measured kernel to stack, alternating runs:
/// 128 buffers ran out in nearly every wake-up of a bulk transfer (about
/// 125 packets apiece), 9.0 Gbit/s at 940 ms of CPU per GiB; 256, 10.1 at
/// 820; 512, 9.7 to 10.1; 1024, 9.4.
const READ_BUFFERS: u16 = 256;
const READ_BUFFER_LEN: usize = 65536;
const BUFFER_GROUP: u16 = 0;

/// The runtime's packet I/O on one device.
pub struct PacketIo<'d> {
    device: &'d TunDevice,
    wake: RawFd,
    way: Way,
}

enum Way {
    Calls { buf: Vec<u8> },
    Uring(Box<Uring>),
}

impl Way {
    /// A call per packet, into a buffer for the largest packet: 64 KiB
    /// merged by the kernel (`--offload`) behind an IPv6 header.
    fn calls() -> Way {
        Way::Calls {
            buf: vec![0; 65536 + 1024],
        }
    }
}

struct Uring {
    ring: Ring,
    reads: ManuallyDrop<BufferRing>,
    /// Read completions collected by `wait`, not yet handed to the stack.
    arrived: Vec<Cqe>,
    scratch: Vec<Cqe>,
    read_armed: bool,
    wake_armed: bool,
    /// Whether the wake-up eventfd fired since the last `wait`.
    kicked: bool,
    /// Why the ring failed (a read, or `io_uring_enter` itself), if it did.
    failed: Option<io::Error>,
    /// Packets being written, by slot, kept until their completion.
    writing: Vec<Option<Vec<u8>>>,
    free_slots: Vec<u32>,
}

impl<'d> PacketIo<'d> {
    /// Must be made on the thread that uses it (the ring belongs to that
    /// thread). `wake` is the eventfd application threads write to.
    /// `lossy`: the lossy link is on (see below).
    pub fn new(device: &'d TunDevice, wake: RawFd, lossy: bool) -> PacketIo<'d> {
        let way = if !device.uring {
            info!(target: "portlab", "the device is read and written a packet per system call (--no-io-uring)");
            Way::calls()
        } else if lossy {
            // Measured: through the lossy link a transfer from the stack
            // took 1.5 to 4 times longer with io_uring's batches (more
            // retransmission timeouts: smoltcp's recovery depends on how
            // acknowledgements are grouped). The link's figures are for
            // a packet per call.
            info!(target: "portlab", "with the lossy link on, the device is read and written a packet per system call");
            Way::calls()
        } else if !device.is_plain() {
            info!(target: "portlab", "with --offload the device is read and written a packet per system call");
            Way::calls()
        } else {
            match Uring::new() {
                Ok(u) => {
                    info!(target: "portlab", "the device is read and written through io_uring: a batch of packets per system call");
                    Way::Uring(Box::new(u))
                }
                Err(e) => {
                    info!(target: "portlab",
                        "io_uring is not available ({e}): the device is read and written a packet per system call");
                    Way::calls()
                }
            }
        };
        PacketIo { device, wake, way }
    }

    /// Sleeps until a packet arrives, the wake-up eventfd is written, or
    /// `timeout` passes. Returns whether the eventfd was written.
    pub fn wait(&mut self, timeout: Duration) -> bool {
        match &mut self.way {
            Way::Calls { .. } => {
                let mut fds = [
                    libc::pollfd {
                        fd: self.device.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    },
                    libc::pollfd {
                        fd: self.wake,
                        events: libc::POLLIN,
                        revents: 0,
                    },
                ];
                let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
                // SAFETY: fds is a valid array of two pollfd.
                unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
                fds[1].revents != 0
            }
            Way::Uring(u) => {
                let kicked = u.wait(self.device.as_raw_fd(), self.wake, timeout);
                self.fall_back_if_failed();
                kicked
            }
        }
    }

    /// After a failure of the ring, the rest of the run uses plain calls.
    fn fall_back_if_failed(&mut self) {
        if let Way::Uring(u) = &mut self.way
            && let Some(e) = u.failed.take()
        {
            warn!(target: "portlab",
                "io_uring failed ({e}): from now on the device is read and written a packet per system call");
            self.way = Way::calls();
        }
    }

    /// Hands each packet that has arrived (at most [`READ_BATCH`]) to `f`,
    /// with whether its TCP or UDP checksum was computed here (see
    /// [`TunDevice::recv`]). `f` must not keep the slice.
    pub fn receive(&mut self, mut f: impl FnMut(&[u8], bool)) {
        match &mut self.way {
            Way::Calls { buf } => {
                for _ in 0..READ_BATCH {
                    match self.device.recv(buf) {
                        Ok((n, checksummed)) => f(&buf[..n], checksummed),
                        Err(_) => break,
                    }
                }
            }
            Way::Uring(u) => {
                u.receive(&mut f);
                self.fall_back_if_failed();
            }
        }
    }

    /// Writes packets in order and empties `packets`.
    pub fn send_all(&mut self, packets: &mut Vec<Vec<u8>>) {
        match &mut self.way {
            Way::Calls { .. } => self.device.send_each(packets),
            Way::Uring(u) => {
                u.send_all(self.device.as_raw_fd(), packets);
                self.fall_back_if_failed();
            }
        }
    }
}

impl Uring {
    fn new() -> io::Result<Uring> {
        // Writes can outnumber the submission queue: it is submitted as it
        // fills. Completions wait in the larger completion queue.
        let ring = Ring::new(256, 4096)?;
        if !ring.supports_multishot_read() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "this kernel's io_uring has no multishot reads (Linux 6.7)",
            ));
        }
        let reads = BufferRing::new(&ring, BUFFER_GROUP, READ_BUFFERS, READ_BUFFER_LEN)?;
        Ok(Uring {
            ring,
            reads: ManuallyDrop::new(reads),
            arrived: Vec::new(),
            scratch: Vec::new(),
            read_armed: false,
            wake_armed: false,
            kicked: false,
            failed: None,
            writing: Vec::new(),
            free_slots: Vec::new(),
        })
    }

    /// Queues an entry, submitting what is queued if the queue is full;
    /// `false` if the ring fails (see `failed`).
    fn push(&mut self, sqe: Sqe) -> bool {
        while !self.ring.push(sqe.clone()) {
            if !self.enter(None) {
                return false;
            }
            self.reap();
        }
        true
    }

    /// `false` if the ring fails: the first error is kept in `failed`,
    /// and the runtime goes back to plain calls.
    fn enter(&mut self, wait: Option<(u32, Option<Duration>)>) -> bool {
        match self.ring.enter(wait) {
            Ok(()) => true,
            Err(e) => {
                self.failed.get_or_insert(e);
                false
            }
        }
    }

    fn wait(&mut self, device: RawFd, wake: RawFd, timeout: Duration) -> bool {
        if !self.read_armed {
            self.read_armed = self.push(Sqe::read_multishot(device, self.reads.group(), TAG_READ));
        }
        if !self.wake_armed {
            self.wake_armed = self.push(Sqe::poll_readable_multishot(wake, TAG_WAKE));
        }
        // What is already there (write completions, mostly) must not end
        // the wait by itself: collected first, it leaves the wait to what
        // is new.
        self.reap();
        let timeout = if self.arrived.is_empty() && !self.kicked {
            timeout
        } else {
            Duration::ZERO
        };
        self.enter(Some((1, Some(timeout))));
        self.reap();
        std::mem::take(&mut self.kicked)
    }

    /// Sorts out the ready completions: reads are kept for `receive`, a
    /// fired wake-up eventfd is noted, finished writes free their packets.
    fn reap(&mut self) {
        self.ring.completions(&mut self.scratch);
        for c in self.scratch.drain(..) {
            match c.user_data & TAG_MASK {
                TAG_READ => self.arrived.push(c),
                TAG_WAKE => {
                    self.kicked = true;
                    if !c.more() {
                        self.wake_armed = false;
                    }
                }
                TAG_WRITE => {
                    let slot = (c.user_data & 0xffff_ffff) as u32;
                    if let Some(p) = self.writing.get_mut(slot as usize) {
                        if let Some(p) = p.take() {
                            crate::device::packet_pool::give(p);
                        }
                        self.free_slots.push(slot);
                    }
                }
                _ => {}
            }
        }
    }

    fn receive(&mut self, f: &mut impl FnMut(&[u8], bool)) {
        for c in self.arrived.drain(..) {
            if !c.more() {
                self.read_armed = false;
            }
            if c.res > 0
                && let Some(bid) = c.buffer()
            {
                f(self.reads.get(bid, c.res as usize), false);
            }
            if let Some(bid) = c.buffer() {
                self.reads.push(bid);
            }
            // Running out of buffers ends the read (armed again by the
            // next wait); any other error means this way of reading does
            // not work here.
            if c.res < 0 && c.res != -libc::ENOBUFS {
                self.failed = Some(io::Error::from_raw_os_error(-c.res));
            }
        }
        self.reads.publish();
    }

    fn send_all(&mut self, device: RawFd, packets: &mut Vec<Vec<u8>>) {
        if packets.is_empty() {
            return;
        }
        for p in packets.drain(..) {
            let slot = match self.free_slots.pop() {
                Some(s) => s,
                None => {
                    self.writing.push(None);
                    (self.writing.len() - 1) as u32
                }
            };
            // SAFETY: the packet's bytes live in `writing` (a moved Vec
            // keeps its heap buffer) until this write's completion.
            let sqe = unsafe { Sqe::write(device, &p, TAG_WRITE | u64::from(slot)) };
            self.writing[slot as usize] = Some(p);
            if !self.push(sqe) {
                // Never submitted: dropped, as a failing wire would.
                self.writing[slot as usize] = None;
                self.free_slots.push(slot);
            }
        }
        // Out now, so that they are not overtaken by packets application
        // threads write directly. A TUN write completes as it is submitted
        // (its send buffer is unlimited): the packets are freed at once.
        self.enter(None);
        self.reap();
    }
}

impl Drop for Uring {
    fn drop(&mut self) {
        // The kernel must be done with our buffers before they are freed.
        self.push(Sqe::cancel_all(TAG_CANCEL));
        for _ in 0..100 {
            self.enter(Some((1, Some(Duration::from_millis(10)))));
            self.reap();
            for c in self.arrived.drain(..) {
                if !c.more() {
                    self.read_armed = false;
                }
            }
            if self.writing.iter().all(Option::is_none) && !self.read_armed && !self.wake_armed {
                break;
            }
        }
        let returned = self.reads.unregister(&self.ring).is_ok();
        if returned && !self.read_armed {
            // SAFETY: dropped once, here; the kernel no longer reads into
            // these buffers (the read is cancelled, the ring unregistered).
            unsafe { ManuallyDrop::drop(&mut self.reads) };
        }
        // Otherwise the read buffers, and any write still in flight after a
        // second, are leaked rather than freed under the kernel.
        for p in self.writing.drain(..).flatten() {
            std::mem::forget(p);
        }
    }
}
