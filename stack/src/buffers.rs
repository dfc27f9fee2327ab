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
//! its pages back when it is freed (`munmap`).
//!
//! The buffers are lent to smoltcp as `'static` slices; [`ConnSockets`]
//! keeps the mapping and the socket set that borrows it together and drops
//! the set first, so no slice outlives its mapping.

use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp;

/// One anonymous private mapping, unmapped on drop.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
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
    n.div_ceil(4096) * 4096
}

/// A connection's socket set (one TCP socket) and the memory its buffers
/// live in. Dereferences to the set.
pub struct ConnSockets {
    // Declared (and therefore dropped) before `memory`: the socket in the
    // set borrows it.
    set: SocketSet<'static>,
    memory: Option<Mapping>,
}

impl ConnSockets {
    /// A set with one TCP socket of `rx` and `tx` bytes of buffer; `None`
    /// when there is no memory for them (the caller refuses the
    /// connection instead of the process aborting).
    pub fn tcp(rx: usize, tx: usize) -> Option<(ConnSockets, SocketHandle)> {
        let (rx_len, tx_len) = (page_round(rx.max(1)), page_round(tx.max(1)));
        let memory = Mapping::new(rx_len + tx_len);
        let socket = match &memory {
            Some(m) => {
                // SAFETY: the mapping is `rx_len + tx_len` bytes, readable,
                // writable, zeroed and not otherwise used; the two slices do
                // not overlap; and they live in the set, which is dropped
                // before the mapping (see the field order above).
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
        Some((ConnSockets { set, memory }, handle))
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
}
