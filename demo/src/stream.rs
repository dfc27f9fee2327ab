//! The connection a server serves: a socket of portlab's stack, or a socket
//! of the kernel's.
//!
//! The HTTP server (`serve`) and the inetd services (`inetd`) are written
//! against this trait, so that the very same code also runs on `std::net`
//! sockets (`portlab kernel-serve`): the benchmark's comparison then
//! measures the stack, not the server.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::time::Duration;

use portlab::Quad;

/// Reads and writes in chunks this large: as much as a send buffer holds
/// (portlab's default, 256 KiB), so that one chargen write can fill it, as
/// smoltcp's own programs fill all free space at once. Measured against
/// 64 KiB: stack to kernel 4.18 -> 4.44 Gbit/s (and kernel sockets, which
/// run this same code, 8.53 -> 8.91); kernel to stack unchanged.
pub const CHUNK: usize = 256 * 1024;

pub trait Stream: Send + 'static {
    fn read(&self, buf: &mut [u8]) -> io::Result<usize>;
    /// Drops every byte until the end of the stream, copying none of them
    /// anywhere; returns how many.
    fn sink(&self) -> io::Result<u64>;
    fn write_all(&self, data: &[u8]) -> io::Result<()>;
    /// Writes all of `data`, then sends FIN.
    fn write_all_then_shutdown(&self, data: &[u8]) -> io::Result<()>;
    fn set_read_timeout(&self, t: Option<Duration>);
    fn set_write_timeout(&self, t: Option<Duration>);
    /// `TCP_NODELAY`: no partial segment waits for an acknowledgement.
    fn set_nodelay(&self, on: bool);
    /// The connection's 4-tuple, local end first.
    fn quad(&self) -> Quad;
    /// A number for the page: the stack's socket id, or the kernel's fd.
    fn number(&self) -> u64;
    /// Records an application event (portlab's event log; the kernel
    /// comparator has none and logs at debug level).
    fn emit(&self, kind: &str, detail: String);
}

impl Stream for portlab::api::net::TcpStream {
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        Read::read(&mut &*self, buf)
    }
    /// Where the bytes arrive, in the stack's runtime: this thread sleeps
    /// until the end (see `TcpStream::sink`).
    fn sink(&self) -> io::Result<u64> {
        portlab::api::net::TcpStream::sink(self)
    }
    fn write_all(&self, data: &[u8]) -> io::Result<()> {
        Write::write_all(&mut &*self, data)
    }
    fn write_all_then_shutdown(&self, data: &[u8]) -> io::Result<()> {
        portlab::api::net::TcpStream::write_all_then_shutdown(self, data)
    }
    fn set_read_timeout(&self, t: Option<Duration>) {
        portlab::api::net::TcpStream::set_read_timeout(self, t)
    }
    fn set_write_timeout(&self, t: Option<Duration>) {
        portlab::api::net::TcpStream::set_write_timeout(self, t)
    }
    fn set_nodelay(&self, on: bool) {
        let _ = portlab::api::net::TcpStream::set_nodelay(self, on);
    }
    fn quad(&self) -> Quad {
        portlab::api::net::TcpStream::quad(self)
    }
    fn number(&self) -> u64 {
        self.id().0
    }
    fn emit(&self, kind: &str, detail: String) {
        portlab::api::net::TcpStream::emit(self, kind, detail)
    }
}

impl Stream for std::net::TcpStream {
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        Read::read(&mut &*self, buf).map_err(timeout_as_timed_out)
    }
    /// A read per chunk, as any kernel-socket program must.
    fn sink(&self) -> io::Result<u64> {
        let mut total = 0;
        loop {
            // SAFETY: with MSG_TRUNC a Linux TCP socket drops the bytes and
            // never writes to the (null) buffer.
            let n = unsafe {
                libc::recv(
                    self.as_raw_fd(),
                    std::ptr::null_mut(),
                    CHUNK,
                    libc::MSG_TRUNC,
                )
            };
            match usize::try_from(n) {
                Ok(0) => return Ok(total),
                Ok(n) => total += n as u64,
                Err(_) => {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::Interrupted {
                        return Err(timeout_as_timed_out(e));
                    }
                }
            }
        }
    }
    fn write_all(&self, data: &[u8]) -> io::Result<()> {
        Write::write_all(&mut &*self, data).map_err(timeout_as_timed_out)
    }
    fn write_all_then_shutdown(&self, data: &[u8]) -> io::Result<()> {
        // Corked, the last bytes and the FIN leave in one segment, as
        // portlab's do. Sent apart, a client that closes as soon as it has
        // the whole response sometimes closes first and keeps the 4-tuple
        // in TIME-WAIT itself: measured, with a new connection per request
        // about 3% of wrk's ports, until after some 40 s every port is
        // waiting and the rate falls from 15,000 requests/s to 400.
        cork(self, true);
        let done = Stream::write_all(self, data).and_then(|()| self.shutdown(Shutdown::Write));
        cork(self, false);
        done
    }
    fn set_read_timeout(&self, t: Option<Duration>) {
        // A zero timeout is an error for std::net; the smallest one instead.
        let _ = std::net::TcpStream::set_read_timeout(self, t.map(at_least_a_microsecond));
    }
    fn set_write_timeout(&self, t: Option<Duration>) {
        let _ = std::net::TcpStream::set_write_timeout(self, t.map(at_least_a_microsecond));
    }
    fn set_nodelay(&self, on: bool) {
        let _ = std::net::TcpStream::set_nodelay(self, on);
    }
    fn quad(&self) -> Quad {
        let unspecified = || std::net::SocketAddr::from(([0, 0, 0, 0], 0));
        Quad::new(
            self.local_addr().unwrap_or_else(|_| unspecified()),
            self.peer_addr().unwrap_or_else(|_| unspecified()),
        )
    }
    fn number(&self) -> u64 {
        self.as_raw_fd() as u64
    }
    fn emit(&self, kind: &str, detail: String) {
        log::debug!("{kind}: {detail}");
    }
}

fn at_least_a_microsecond(d: Duration) -> Duration {
    d.max(Duration::from_micros(1))
}

/// std::net reports an expired socket timeout as `WouldBlock`; the server
/// expects `TimedOut`, as portlab's sockets report it.
fn timeout_as_timed_out(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::WouldBlock {
        io::Error::new(io::ErrorKind::TimedOut, e)
    } else {
        e
    }
}

/// Sets `TCP_CORK`: while on, the kernel sends only full segments (and
/// whatever a shutdown flushes, with its FIN).
fn cork(stream: &std::net::TcpStream, on: bool) {
    let v: libc::c_int = on.into();
    // SAFETY: a valid int option on a TCP socket's descriptor.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_CORK,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}
