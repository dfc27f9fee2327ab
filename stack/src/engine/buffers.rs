//! Socket buffers that cost nothing until they are used.
//!
//! smoltcp fixes a socket's receive and send buffers when the socket is
//! made. Allocated with `vec![0; n]`, 64 KiB each, they would be resident
//! from the start: the allocator clears memory it has handed out before
//! (and the heap's spare top counts as such), so every idle connection
//! would cost its full 128 KiB. Instead each connection's buffers are one
//! anonymous mapping of their own: the kernel hands out zeroed pages only
//! when they are first written, so an idle connection costs the socket
//! structures and no buffer pages, and a connection that moved data gives
//! its pages back when it is freed.
//!
//! Mappings are kept for the next connections (a few hundred at most): with
//! a new connection per request, making and unmapping one each time — the
//! address-space changes, and a page fault and a zeroed page for every
//! buffer's first page — was a sixth of the runtime thread's time. A kept
//! mapping gives back all but the first page of each buffer
//! (`MADV_DONTNEED`), which is where the next request and its response go.
//! That page may still hold an earlier connection's bytes; smoltcp hands
//! out only bytes written for the connection at hand, as a heap allocator's
//! reused memory is not cleared either.
//!
//! The buffers are lent to smoltcp as `'static` slices; [`ConnSockets`]
//! keeps the mapping and the socket set that borrows it together and drops
//! the set first, so no slice outlives its mapping.

use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::Mutex;

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp;

/// One anonymous private mapping, unmapped on drop.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

/// How many ended connections' mappings are kept for new ones.
const KEPT: usize = 256;

const PAGE: usize = 4096;

/// Mappings kept for reuse, all with the same buffer sizes (receive, send).
struct Kept {
    sizes: (usize, usize),
    free: Vec<Mapping>,
}

impl Kept {
    const fn new() -> Mutex<Kept> {
        Mutex::new(Kept {
            sizes: (0, 0),
            free: Vec::new(),
        })
    }
}

/// The process's kept mappings.
static KEPT_MAPPINGS: Mutex<Kept> = Kept::new();

/// A kept mapping for buffers of `rx_len` and `tx_len` bytes, or a new one.
fn take_mapping(kept: &Mutex<Kept>, rx_len: usize, tx_len: usize) -> Option<Mapping> {
    let kept = kept.lock().ok().and_then(|mut k| {
        if k.sizes == (rx_len, tx_len) {
            k.free.pop()
        } else {
            None
        }
    });
    kept.or_else(|| Mapping::new(rx_len + tx_len))
}

/// Keeps `m` (buffers of `rx_len` and `tx_len` bytes) for a later
/// connection, but for the first page of each buffer without its memory;
/// unmaps it when enough are kept, or when those kept have other sizes.
fn give_back(kept: &Mutex<Kept>, m: Mapping, rx_len: usize, tx_len: usize) {
    let Ok(mut k) = kept.lock() else {
        return; // dropped: unmapped
    };
    if k.free.is_empty() {
        k.sizes = (rx_len, tx_len);
    }
    if k.free.len() >= KEPT || k.sizes != (rx_len, tx_len) {
        return; // dropped: unmapped, with no pages to give back first
    }
    for (start, len) in [(0, rx_len), (rx_len, tx_len)] {
        if len > PAGE {
            // SAFETY: a range inside our own mapping, which nothing borrows
            // any more; its pages read as zero from now on.
            unsafe {
                libc::madvise(
                    m.ptr.as_ptr().add(start + PAGE).cast(),
                    len - PAGE,
                    libc::MADV_DONTNEED,
                )
            };
        }
    }
    k.free.push(m);
}

// The mapping is plain memory owned by one connection.
unsafe impl Send for Mapping {}

impl Mapping {
    fn new(len: usize) -> Option<Mapping> {
        // SAFETY: a fresh anonymous mapping; no existing memory is touched.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                // Reserved, not committed: 10,000 connections map 12.5 GiB
                // of buffers (1 MiB + 256 KiB each), of which only what data
                // touches is memory.
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return None;
        }
        // Never a transparent huge page: where THP is on for everything, a
        // 2 MiB mapping would get one at its first write — 2 MiB zeroed and
        // resident for a connection that received one request.
        // SAFETY: advice on our own fresh mapping; failure is harmless.
        unsafe { libc::madvise(p, len, libc::MADV_NOHUGEPAGE) };
        NonNull::new(p.cast::<u8>()).map(|ptr| Mapping { ptr, len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr` and `len` are exactly what mmap returned, and
        // `ConnSockets` drops every borrower of the memory first.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

fn page_round(n: usize) -> usize {
    n.div_ceil(PAGE) * PAGE
}

/// A connection's socket set (one TCP socket) and the memory its buffers
/// live in. Dereferences to the set.
pub struct ConnSockets {
    // The socket in the set borrows `memory`: dropped first (see `Drop`).
    set: SocketSet<'static>,
    memory: Option<Mapping>,
    /// The buffers' sizes in the mapping (receive, send), whole pages.
    sizes: (usize, usize),
}

impl Drop for ConnSockets {
    fn drop(&mut self) {
        // The socket borrows the mapping: it goes first.
        drop(std::mem::replace(&mut self.set, SocketSet::new(Vec::new())));
        if let Some(m) = self.memory.take() {
            give_back(&KEPT_MAPPINGS, m, self.sizes.0, self.sizes.1);
        }
    }
}

impl ConnSockets {
    /// A set with one TCP socket of `rx` and `tx` bytes of buffer; `None`
    /// when there is no memory for them (the caller refuses the
    /// connection instead of the process aborting).
    pub fn tcp(rx: usize, tx: usize) -> Option<(ConnSockets, SocketHandle)> {
        let (rx_len, tx_len) = (page_round(rx.max(1)), page_round(tx.max(1)));
        let memory = take_mapping(&KEPT_MAPPINGS, rx_len, tx_len);
        let socket = match &memory {
            Some(m) => {
                // SAFETY: the mapping is `rx_len + tx_len` bytes, readable,
                // writable and not otherwise used; the two slices do not
                // overlap; and they live in the set, which is dropped
                // before the mapping is unmapped or kept (see `Drop`).
                let (rx_buf, tx_buf) = unsafe {
                    let base = m.ptr.as_ptr();
                    (
                        std::slice::from_raw_parts_mut(base, rx),
                        std::slice::from_raw_parts_mut(base.add(rx_len), tx),
                    )
                };
                tcp::Socket::new(
                    tcp::SocketBuffer::new(rx_buf),
                    tcp::SocketBuffer::new(tx_buf),
                )
            }
            // No mapping (address space exhausted): ordinary heap buffers,
            // if the heap has them.
            None => tcp::Socket::new(
                tcp::SocketBuffer::new(zeroed(rx)?),
                tcp::SocketBuffer::new(zeroed(tx)?),
            ),
        };
        let mut set = SocketSet::new(Vec::with_capacity(1));
        let handle = set.add(socket);
        Some((
            ConnSockets {
                set,
                memory,
                sizes: (rx_len, tx_len),
            },
            handle,
        ))
    }

    /// Whether the buffers live in a mapping of their own.
    pub fn is_mapped(&self) -> bool {
        self.memory.is_some()
    }
}

/// `n` zero bytes on the heap, or `None` without aborting.
fn zeroed(n: usize) -> Option<Vec<u8>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).ok()?;
    v.resize(n, 0);
    Some(v)
}

impl Deref for ConnSockets {
    type Target = SocketSet<'static>;
    fn deref(&self) -> &Self::Target {
        &self.set
    }
}

impl DerefMut for ConnSockets {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_mapped_and_usable() {
        let (mut s, h) = ConnSockets::tcp(65536, 65536).unwrap();
        assert!(s.is_mapped());
        let sock = s.get_mut::<tcp::Socket>(h);
        assert_eq!(sock.recv_capacity(), 65536);
        assert_eq!(sock.send_capacity(), 65536);
    }

    /// Which of the mapping's pages are in memory.
    fn resident(m: &Mapping) -> Vec<bool> {
        let mut v = vec![0u8; m.len / PAGE];
        // SAFETY: our mapping, and a vector of one byte per page.
        let r = unsafe { libc::mincore(m.ptr.as_ptr().cast(), m.len, v.as_mut_ptr()) };
        assert_eq!(r, 0);
        v.iter().map(|b| b & 1 == 1).collect()
    }

    /// An ended connection's mapping serves the next one, holding on to
    /// the first page of each buffer only; past the limit, or for other
    /// sizes, mappings are unmapped.
    #[test]
    fn mappings_are_kept_with_their_first_pages() {
        let kept = Kept::new();
        let (rx, tx) = (4 * PAGE, 2 * PAGE);
        let m = take_mapping(&kept, rx, tx).unwrap();
        let first = m.ptr;
        // SAFETY: writing our own mapping's bytes.
        unsafe { std::ptr::write_bytes(m.ptr.as_ptr(), 0xa5, m.len) };
        assert!(resident(&m).iter().all(|&r| r));
        give_back(&kept, m, rx, tx);
        let m = take_mapping(&kept, rx, tx).unwrap();
        assert_eq!(m.ptr, first, "the kept mapping is reused");
        assert_eq!(
            resident(&m),
            [true, false, false, false, true, false],
            "the first page of each buffer stays, the rest is given back"
        );
        // Other sizes are not kept beside these.
        let other = take_mapping(&kept, PAGE, PAGE).unwrap();
        give_back(&kept, m, rx, tx);
        give_back(&kept, other, PAGE, PAGE);
        assert_eq!(kept.lock().unwrap().free.len(), 1);
        // Nor more than KEPT.
        let many: Vec<Mapping> = (0..KEPT + 5)
            .map(|_| take_mapping(&kept, rx, tx).unwrap())
            .collect();
        for m in many {
            give_back(&kept, m, rx, tx);
        }
        assert_eq!(kept.lock().unwrap().free.len(), KEPT);
    }
}
