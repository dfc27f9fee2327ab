//! packetdrill's shared-object interface, in C's terms.
//!
//! packetdrill (`--so_filename=libportlab_packetdrill.so`) calls
//! `packetdrill_interface_init(flags, &ifc)` and from then on makes every
//! system call of the script, and every packet it injects or sniffs,
//! through the function pointers it was given. [`PacketdrillInterface`] is
//! our declaration of that table, field for field in the order of the
//! documented header (`packetdrill.h`); the functions below turn C's
//! pointers and lengths into Rust values, call [`Host`], and turn the
//! answer back into a return value and `errno`.
//!
//! # Threads and blocking
//!
//! packetdrill runs a call that the script marks as blocking
//! (`0.1...0.2 accept(…)`) on a thread of its own, while its main thread
//! goes on injecting packets and moving the clock; every other call runs on
//! the main thread. So the [`Host`] sits behind a mutex, every change
//! wakes the waiters, and a blocking call that finds nothing waits:
//!
//! * on the syscall thread, until the main thread changes something;
//! * on the main thread, where nothing else would move, by moving the
//!   virtual clock to the stack's next timer itself (as the kernel would
//!   sleep until something happened); a call that nothing can ever
//!   complete fails with `ETIMEDOUT` and a line on standard error, rather
//!   than hanging the run.
//!
//! # Variadic calls
//!
//! `fcntl` and `ioctl` are variadic in C. Rust cannot define a variadic
//! function on stable, so they are declared with one `long` argument: on
//! the System V x86-64 and AArch64 Linux ABIs a variadic integer argument
//! is passed exactly like a fixed one.
//!
//! Nothing here may unwind into C: every entry point catches a panic and
//! reports it as `EIO` with a line on standard error.

use std::ffi::{CStr, c_char, c_int, c_long, c_uint, c_ulong, c_void};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::{self, ThreadId};
use std::time::Duration as RealDuration;

use portlab::time::{Duration, Instant};

use crate::flags::Flags;
use crate::host::{Host, SNIFF_HORIZON};
use crate::sockets::{Errno, Result};

type Ud = *mut c_void;

/// `struct packetdrill_interface`, as `packetdrill.h` lays it out.
#[repr(C)]
pub struct PacketdrillInterface {
    pub userdata: Ud,
    pub free: Option<unsafe extern "C" fn(Ud)>,
    pub socket: Option<unsafe extern "C" fn(Ud, c_int, c_int, c_int) -> c_int>,
    pub bind:
        Option<unsafe extern "C" fn(Ud, c_int, *const libc::sockaddr, libc::socklen_t) -> c_int>,
    pub listen: Option<unsafe extern "C" fn(Ud, c_int, c_int) -> c_int>,
    pub accept:
        Option<unsafe extern "C" fn(Ud, c_int, *mut libc::sockaddr, *mut libc::socklen_t) -> c_int>,
    pub connect:
        Option<unsafe extern "C" fn(Ud, c_int, *const libc::sockaddr, libc::socklen_t) -> c_int>,
    pub read: Option<unsafe extern "C" fn(Ud, c_int, *mut c_void, usize) -> isize>,
    pub readv: Option<unsafe extern "C" fn(Ud, c_int, *const libc::iovec, c_int) -> isize>,
    pub recv: Option<unsafe extern "C" fn(Ud, c_int, *mut c_void, usize, c_int) -> isize>,
    pub recvfrom: Option<
        unsafe extern "C" fn(
            Ud,
            c_int,
            *mut c_void,
            usize,
            c_int,
            *mut libc::sockaddr,
            *mut libc::socklen_t,
        ) -> isize,
    >,
    pub recvmsg: Option<unsafe extern "C" fn(Ud, c_int, *mut libc::msghdr, c_int) -> isize>,
    pub write: Option<unsafe extern "C" fn(Ud, c_int, *const c_void, usize) -> isize>,
    pub writev: Option<unsafe extern "C" fn(Ud, c_int, *const libc::iovec, c_int) -> isize>,
    pub send: Option<unsafe extern "C" fn(Ud, c_int, *const c_void, usize, c_int) -> isize>,
    pub sendto: Option<
        unsafe extern "C" fn(
            Ud,
            c_int,
            *const c_void,
            usize,
            c_int,
            *const libc::sockaddr,
            libc::socklen_t,
        ) -> isize,
    >,
    pub sendmsg: Option<unsafe extern "C" fn(Ud, c_int, *const libc::msghdr, c_int) -> isize>,
    pub fcntl: Option<unsafe extern "C" fn(Ud, c_int, c_int, c_long) -> c_int>,
    pub ioctl: Option<unsafe extern "C" fn(Ud, c_int, c_ulong, c_long) -> c_int>,
    pub close: Option<unsafe extern "C" fn(Ud, c_int) -> c_int>,
    pub shutdown: Option<unsafe extern "C" fn(Ud, c_int, c_int) -> c_int>,
    pub getsockopt: Option<
        unsafe extern "C" fn(Ud, c_int, c_int, c_int, *mut c_void, *mut libc::socklen_t) -> c_int,
    >,
    pub setsockopt: Option<
        unsafe extern "C" fn(Ud, c_int, c_int, c_int, *const c_void, libc::socklen_t) -> c_int,
    >,
    pub poll: Option<unsafe extern "C" fn(Ud, *mut libc::pollfd, libc::nfds_t, c_int) -> c_int>,
    pub netdev_send: Option<unsafe extern "C" fn(Ud, *const c_void, usize) -> c_int>,
    pub netdev_receive:
        Option<unsafe extern "C" fn(Ud, *mut c_void, *mut usize, *mut i64) -> c_int>,
    pub usleep: Option<unsafe extern "C" fn(Ud, c_uint) -> c_int>,
    pub gettimeofday: Option<unsafe extern "C" fn(Ud, *mut libc::timeval, *mut c_void) -> c_int>,
    pub epoll_create: Option<unsafe extern "C" fn(Ud, c_int) -> c_int>,
    pub epoll_ctl:
        Option<unsafe extern "C" fn(Ud, c_int, c_int, c_int, *mut libc::epoll_event) -> c_int>,
    pub epoll_wait:
        Option<unsafe extern "C" fn(Ud, c_int, *mut libc::epoll_event, c_int, c_int) -> c_int>,
    pub pipe: Option<unsafe extern "C" fn(Ud, *mut c_int) -> c_int>,
    pub splice:
        Option<unsafe extern "C" fn(Ud, c_int, *mut i64, c_int, *mut i64, usize, c_uint) -> isize>,
}

/// How long a blocked call on packetdrill's syscall thread waits, in real
/// time, for the main thread to change anything before it gives up.
const STUCK: RealDuration = RealDuration::from_secs(10);

/// Whether a call that finds nothing to do waits.
#[derive(Debug, Clone, Copy)]
pub enum Wait {
    /// As the descriptor's `O_NONBLOCK` says.
    Fd(i32),
    /// As the descriptor says, unless this call passed `MSG_DONTWAIT`.
    Call(i32, bool),
    /// Always (`poll`, whose descriptors' flags do not matter).
    Always,
}

/// The [`Host`] shared by packetdrill's two threads.
pub struct Shared {
    host: Mutex<Host>,
    changed: Condvar,
    /// packetdrill's main thread: the one that reads the clock first.
    main: OnceLock<ThreadId>,
}

impl Shared {
    pub fn new(flags: &Flags) -> Shared {
        Shared {
            host: Mutex::new(Host::new(flags)),
            changed: Condvar::new(),
            main: OnceLock::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Host> {
        // A panic while locked was reported already; the host is still
        // whole enough to answer.
        self.host.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks the calling thread as packetdrill's main thread (the clock's).
    fn on_main(&self) {
        let _ = self.main.set(thread::current().id());
    }

    fn is_main(&self) -> bool {
        self.main.get() == Some(&thread::current().id())
    }

    /// Runs `f` once, and tells waiters something may have changed.
    pub fn call<T>(&self, f: impl FnOnce(&mut Host) -> T) -> T {
        let t = f(&mut self.lock());
        self.changed.notify_all();
        t
    }

    /// Runs `f` until it stops saying `EAGAIN`, if `wait` says to wait;
    /// `deadline` (virtual) ends the wait with `EAGAIN`.
    pub fn blocking<T>(
        &self,
        wait: Wait,
        what: &str,
        deadline: Option<Instant>,
        mut f: impl FnMut(&mut Host) -> Result<T>,
    ) -> Result<T> {
        let mut host = self.lock();
        let fd = match wait {
            Wait::Fd(fd) | Wait::Call(fd, _) => fd,
            Wait::Always => -1,
        };
        loop {
            let r = f(&mut host);
            self.changed.notify_all();
            let waits = match wait {
                Wait::Fd(fd) => host.sockets.blocks(fd),
                Wait::Call(fd, dontwait) => !dontwait && host.sockets.blocks(fd),
                Wait::Always => true,
            };
            match r {
                Err(Errno::AGAIN) if waits => {}
                r => return r,
            }
            if deadline.is_some_and(|d| host.now() >= d) {
                return Err(Errno::AGAIN);
            }
            if self.is_main() || self.main.get().is_none() {
                let limit = deadline.unwrap_or(host.now() + SNIFF_HORIZON);
                if !host.advance_to_next_timer(limit) {
                    if let Some(d) = deadline {
                        host.advance_to(d);
                        continue;
                    }
                    eprintln!(
                        "portlab: {what} on fd {fd} would block forever: the stack has no timer \
                         that could end it and nothing else runs (mark the call blocking in the \
                         script, `t1...t2 {what}(…)`, to let packets arrive meanwhile)"
                    );
                    return Err(Errno(libc::ETIMEDOUT));
                }
            } else {
                let (g, wait) = self
                    .changed
                    .wait_timeout(host, STUCK)
                    .unwrap_or_else(|p| p.into_inner());
                host = g;
                if wait.timed_out() {
                    eprintln!(
                        "portlab: {what} on fd {fd} blocked {} s of real time with nothing \
                         changing; giving up",
                        STUCK.as_secs()
                    );
                    return Err(Errno(libc::ETIMEDOUT));
                }
            }
        }
    }
}

// ----- values across the boundary ------------------------------------------

fn set_errno(e: Errno) {
    // SAFETY: errno is this thread's own.
    unsafe { *libc::__errno_location() = e.0 }
}

/// The C return value of `r`: the value, or `-1` with `errno` set.
fn ret<T: Into<i64>>(r: Result<T>) -> i64 {
    match r {
        Ok(v) => v.into(),
        Err(e) => {
            set_errno(e);
            -1
        }
    }
}

/// Runs an entry point, turning a panic into `EIO`.
fn guard(what: &str, f: impl FnOnce() -> i64) -> i64 {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| p.downcast_ref::<&str>().copied())
                .unwrap_or("a panic");
            eprintln!("portlab: {what} panicked: {msg} (a bug: please report it)");
            set_errno(Errno(libc::EIO));
            -1
        }
    }
}

/// One entry point: `f` on the [`Shared`], a panic caught, and the answer
/// as C's return value and `errno`.
fn entry<T: Into<i64>>(s: &Shared, what: &str, f: impl FnOnce(&Shared) -> Result<T>) -> i64 {
    guard(what, || ret(f(s)))
}

/// The [`Shared`] behind packetdrill's `userdata`.
///
/// # Safety
/// `ud` is the pointer `packetdrill_interface_init` stored, not yet freed.
unsafe fn shared<'a>(ud: Ud) -> &'a Shared {
    // SAFETY: the caller's promise.
    unsafe { &*(ud as *const Shared) }
}

/// A socket address from C, if it is IPv4 or IPv6 and long enough.
///
/// # Safety
/// `addr` points to `len` readable bytes, or is null.
unsafe fn read_addr(addr: *const libc::sockaddr, len: libc::socklen_t) -> Result<SocketAddr> {
    if addr.is_null() {
        return Err(Errno(libc::EFAULT));
    }
    let len = len as usize;
    // SAFETY: every sockaddr starts with its family; the lengths are checked
    // before each wider read, and read_unaligned copes with any alignment.
    unsafe {
        match i32::from((*addr).sa_family) {
            libc::AF_INET if len >= size_of::<libc::sockaddr_in>() => {
                let a = std::ptr::read_unaligned(addr as *const libc::sockaddr_in);
                Ok(SocketAddr::V4(SocketAddrV4::new(
                    Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                    u16::from_be(a.sin_port),
                )))
            }
            libc::AF_INET6 if len >= size_of::<libc::sockaddr_in6>() => {
                let a = std::ptr::read_unaligned(addr as *const libc::sockaddr_in6);
                Ok(SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(a.sin6_addr.s6_addr),
                    u16::from_be(a.sin6_port),
                    a.sin6_flowinfo,
                    a.sin6_scope_id,
                )))
            }
            libc::AF_INET | libc::AF_INET6 => Err(Errno(libc::EINVAL)),
            _ => Err(Errno(libc::EAFNOSUPPORT)),
        }
    }
}

/// Writes `a` where C asked for an address, truncated to `*len` as Linux
/// does, and sets `*len` to its full length.
///
/// # Safety
/// `addr` points to `*len` writable bytes; either may be null.
unsafe fn write_addr(a: SocketAddr, addr: *mut libc::sockaddr, len: *mut libc::socklen_t) {
    if addr.is_null() || len.is_null() {
        return;
    }
    // SAFETY: zeroed sockaddr_storage is a valid value; the copy is bounded
    // by the caller's length.
    unsafe {
        let mut storage: libc::sockaddr_storage = std::mem::zeroed();
        let full = match a {
            SocketAddr::V4(v4) => {
                let s = &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in);
                s.sin_family = libc::AF_INET as libc::sa_family_t;
                s.sin_port = v4.port().to_be();
                s.sin_addr.s_addr = u32::from(*v4.ip()).to_be();
                size_of::<libc::sockaddr_in>()
            }
            SocketAddr::V6(v6) => {
                let s = &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in6);
                s.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                s.sin6_port = v6.port().to_be();
                s.sin6_addr.s6_addr = v6.ip().octets();
                s.sin6_flowinfo = v6.flowinfo();
                s.sin6_scope_id = v6.scope_id();
                size_of::<libc::sockaddr_in6>()
            }
        };
        let n = full.min(*len as usize);
        std::ptr::copy_nonoverlapping(&storage as *const _ as *const u8, addr as *mut u8, n);
        *len = full as libc::socklen_t;
    }
}

/// The buffers of an iovec array.
///
/// # Safety
/// `iov` points to `n` iovecs, each of whose buffers is valid.
unsafe fn iovecs<'a>(iov: *const libc::iovec, n: c_int) -> Result<&'a [libc::iovec]> {
    if n < 0 || (n > 0 && iov.is_null()) {
        return Err(Errno(libc::EINVAL));
    }
    if n == 0 {
        return Ok(&[]);
    }
    // SAFETY: the caller's promise.
    Ok(unsafe { std::slice::from_raw_parts(iov, n as usize) })
}

/// A C buffer as a slice (empty for a null pointer with length 0).
///
/// # Safety
/// `p` points to `n` bytes valid for the slice's lifetime.
unsafe fn bytes<'a>(p: *const c_void, n: usize) -> Result<&'a [u8]> {
    match (p.is_null(), n) {
        (_, 0) => Ok(&[]),
        (true, _) => Err(Errno(libc::EFAULT)),
        // SAFETY: the caller's promise.
        (false, _) => Ok(unsafe { std::slice::from_raw_parts(p as *const u8, n) }),
    }
}

/// # Safety
/// As [`bytes`], writable.
unsafe fn bytes_mut<'a>(p: *mut c_void, n: usize) -> Result<&'a mut [u8]> {
    match (p.is_null(), n) {
        (_, 0) => Ok(&mut []),
        (true, _) => Err(Errno(libc::EFAULT)),
        // SAFETY: the caller's promise.
        (false, _) => Ok(unsafe { std::slice::from_raw_parts_mut(p as *mut u8, n) }),
    }
}

/// Flags `recv` and `send` understand: `MSG_DONTWAIT` (this call does not
/// block) and `MSG_NOSIGNAL` (there are no signals here). Others are
/// `EOPNOTSUPP`.
fn msg_flags(flags: c_int) -> Result<bool> {
    if flags & !(libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) != 0 {
        return Err(Errno(libc::EOPNOTSUPP));
    }
    Ok(flags & libc::MSG_DONTWAIT != 0)
}

// ----- the entry points ----------------------------------------------------

/// What packetdrill calls first: fills `ifc` with our functions.
///
/// # Safety
/// `ifc` points to a writable `struct packetdrill_interface`; `flags` is
/// null or a C string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn packetdrill_interface_init(
    flags: *const c_char,
    ifc: *mut PacketdrillInterface,
) {
    let text = if flags.is_null() {
        String::new()
    } else {
        // SAFETY: the caller's promise.
        unsafe { CStr::from_ptr(flags) }
            .to_string_lossy()
            .into_owned()
    };
    let flags = match Flags::parse(&text) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("portlab: {e}");
            std::process::exit(2);
        }
    };
    let shared = Box::new(Shared::new(&flags));
    // SAFETY: the caller's promise.
    unsafe {
        *ifc = PacketdrillInterface {
            userdata: Box::into_raw(shared) as Ud,
            free: Some(pd_free),
            socket: Some(pd_socket),
            bind: Some(pd_bind),
            listen: Some(pd_listen),
            accept: Some(pd_accept),
            connect: Some(pd_connect),
            read: Some(pd_read),
            readv: Some(pd_readv),
            recv: Some(pd_recv),
            recvfrom: Some(pd_recvfrom),
            recvmsg: Some(pd_recvmsg),
            write: Some(pd_write),
            writev: Some(pd_writev),
            send: Some(pd_send),
            sendto: Some(pd_sendto),
            sendmsg: Some(pd_sendmsg),
            fcntl: Some(pd_fcntl),
            ioctl: Some(pd_ioctl),
            close: Some(pd_close),
            shutdown: Some(pd_shutdown),
            getsockopt: Some(pd_getsockopt),
            setsockopt: Some(pd_setsockopt),
            poll: Some(pd_poll),
            netdev_send: Some(pd_netdev_send),
            netdev_receive: Some(pd_netdev_receive),
            usleep: Some(pd_usleep),
            gettimeofday: Some(pd_gettimeofday),
            epoll_create: Some(pd_epoll_create),
            epoll_ctl: Some(pd_epoll_ctl),
            epoll_wait: Some(pd_epoll_wait),
            pipe: Some(pd_pipe),
            splice: Some(pd_splice),
        };
    }
}

unsafe extern "C" fn pd_free(ud: Ud) {
    if !ud.is_null() {
        // SAFETY: made by Box::into_raw in init, freed once by packetdrill.
        drop(unsafe { Box::from_raw(ud as *mut Shared) });
    }
}

unsafe extern "C" fn pd_socket(ud: Ud, domain: c_int, ty: c_int, protocol: c_int) -> c_int {
    // SAFETY (every entry point): `ud` is ours, pointers are packetdrill's
    // and valid for the lengths it passes.
    entry(unsafe { shared(ud) }, "socket", |s| {
        s.call(|h| h.socket(domain, ty, protocol))
    }) as c_int
}

unsafe extern "C" fn pd_bind(
    ud: Ud,
    fd: c_int,
    addr: *const libc::sockaddr,
    len: libc::socklen_t,
) -> c_int {
    entry(unsafe { shared(ud) }, "bind", |s| {
        unsafe { read_addr(addr, len) }
            .and_then(|a| s.call(|h| h.bind(fd, a)))
            .map(|()| 0)
    }) as c_int
}

unsafe extern "C" fn pd_listen(ud: Ud, fd: c_int, backlog: c_int) -> c_int {
    entry(unsafe { shared(ud) }, "listen", |s| {
        s.call(|h| h.listen(fd, backlog)).map(|()| 0)
    }) as c_int
}

unsafe extern "C" fn pd_accept(
    ud: Ud,
    fd: c_int,
    addr: *mut libc::sockaddr,
    len: *mut libc::socklen_t,
) -> c_int {
    entry(unsafe { shared(ud) }, "accept", |s| {
        s.blocking(Wait::Fd(fd), "accept", None, |h| h.accept(fd))
            .map(|(new, peer)| {
                unsafe { write_addr(peer, addr, len) };
                new
            })
    }) as c_int
}

unsafe extern "C" fn pd_connect(
    ud: Ud,
    fd: c_int,
    addr: *const libc::sockaddr,
    len: libc::socklen_t,
) -> c_int {
    let s = unsafe { shared(ud) };
    guard("connect", || {
        let started = unsafe { read_addr(addr, len) }.and_then(|a| s.call(|h| h.connect(fd, a)));
        ret(match started {
            Err(Errno(libc::EINPROGRESS)) if s.call(|h| h.sockets.blocks(fd)) => s
                .blocking(Wait::Fd(fd), "connect", None, |h| h.connect_done(fd))
                .map(|()| 0),
            other => other.map(|()| 0),
        })
    }) as c_int
}

/// `recv`, `read` and `recvfrom` in one.
fn receive(
    s: &Shared,
    fd: c_int,
    buf: &mut [u8],
    dontwait: bool,
) -> Result<(usize, Option<SocketAddr>)> {
    s.blocking(Wait::Call(fd, dontwait), "read", None, |h| {
        h.recv_from(fd, buf)
    })
}

unsafe extern "C" fn pd_read(ud: Ud, fd: c_int, buf: *mut c_void, n: usize) -> isize {
    entry(unsafe { shared(ud) }, "read", |s| {
        unsafe { bytes_mut(buf, n) }
            .and_then(|b| receive(s, fd, b, false))
            .map(|(n, _)| n as i64)
    }) as isize
}

unsafe extern "C" fn pd_recv(ud: Ud, fd: c_int, buf: *mut c_void, n: usize, flags: c_int) -> isize {
    entry(unsafe { shared(ud) }, "recv", |s| {
        msg_flags(flags).and_then(|dontwait| {
            let b = unsafe { bytes_mut(buf, n) }?;
            receive(s, fd, b, dontwait).map(|(n, _)| n as i64)
        })
    }) as isize
}

unsafe extern "C" fn pd_recvfrom(
    ud: Ud,
    fd: c_int,
    buf: *mut c_void,
    n: usize,
    flags: c_int,
    addr: *mut libc::sockaddr,
    len: *mut libc::socklen_t,
) -> isize {
    entry(unsafe { shared(ud) }, "recvfrom", |s| {
        msg_flags(flags).and_then(|dontwait| {
            let b = unsafe { bytes_mut(buf, n) }?;
            let (n, from) = receive(s, fd, b, dontwait)?;
            if let Some(from) = from {
                unsafe { write_addr(from, addr, len) };
            }
            Ok(n as i64)
        })
    }) as isize
}

unsafe extern "C" fn pd_readv(ud: Ud, fd: c_int, iov: *const libc::iovec, n: c_int) -> isize {
    entry(unsafe { shared(ud) }, "readv", |s| {
        unsafe { iovecs(iov, n) }.and_then(|iov| {
            // The first buffer may block; the rest take what is there.
            let mut total = 0i64;
            for (i, v) in iov.iter().enumerate() {
                let b = unsafe { bytes_mut(v.iov_base, v.iov_len) }?;
                let got = receive(s, fd, b, i > 0);
                match got {
                    Ok((0, _)) => break,
                    Ok((k, _)) => {
                        total += k as i64;
                        if k < v.iov_len {
                            break;
                        }
                    }
                    Err(e) if total == 0 => return Err(e),
                    Err(_) => break,
                }
            }
            Ok(total)
        })
    }) as isize
}

/// `send`, `write` and `sendto` in one.
fn transmit(
    s: &Shared,
    fd: c_int,
    data: &[u8],
    to: Option<SocketAddr>,
    dontwait: bool,
) -> Result<usize> {
    s.blocking(Wait::Call(fd, dontwait), "write", None, |h| match to {
        Some(to) => h.send_to(fd, data, to),
        None => h.write(fd, data),
    })
}

unsafe extern "C" fn pd_write(ud: Ud, fd: c_int, buf: *const c_void, n: usize) -> isize {
    entry(unsafe { shared(ud) }, "write", |s| {
        unsafe { bytes(buf, n) }
            .and_then(|b| transmit(s, fd, b, None, false))
            .map(|n| n as i64)
    }) as isize
}

unsafe extern "C" fn pd_send(
    ud: Ud,
    fd: c_int,
    buf: *const c_void,
    n: usize,
    flags: c_int,
) -> isize {
    entry(unsafe { shared(ud) }, "send", |s| {
        msg_flags(flags).and_then(|dontwait| {
            let b = unsafe { bytes(buf, n) }?;
            transmit(s, fd, b, None, dontwait).map(|n| n as i64)
        })
    }) as isize
}

unsafe extern "C" fn pd_sendto(
    ud: Ud,
    fd: c_int,
    buf: *const c_void,
    n: usize,
    flags: c_int,
    addr: *const libc::sockaddr,
    len: libc::socklen_t,
) -> isize {
    entry(unsafe { shared(ud) }, "sendto", |s| {
        msg_flags(flags).and_then(|dontwait| {
            let b = unsafe { bytes(buf, n) }?;
            let to = if addr.is_null() {
                None
            } else {
                Some(unsafe { read_addr(addr, len) }?)
            };
            transmit(s, fd, b, to, dontwait).map(|n| n as i64)
        })
    }) as isize
}

unsafe extern "C" fn pd_writev(ud: Ud, fd: c_int, iov: *const libc::iovec, n: c_int) -> isize {
    entry(unsafe { shared(ud) }, "writev", |s| {
        unsafe { iovecs(iov, n) }.and_then(|iov| {
            // One write of the buffers joined: what Linux's writev queues.
            let mut data = Vec::new();
            for v in iov {
                data.extend_from_slice(unsafe { bytes(v.iov_base, v.iov_len) }?);
            }
            transmit(s, fd, &data, None, false).map(|n| n as i64)
        })
    }) as isize
}

unsafe extern "C" fn pd_fcntl(ud: Ud, fd: c_int, cmd: c_int, arg: c_long) -> c_int {
    entry(unsafe { shared(ud) }, "fcntl", |s| {
        s.call(|h| h.fcntl(fd, cmd, arg))
    }) as c_int
}

unsafe extern "C" fn pd_close(ud: Ud, fd: c_int) -> c_int {
    entry(unsafe { shared(ud) }, "close", |s| {
        s.call(|h| h.close(fd)).map(|()| 0)
    }) as c_int
}

unsafe extern "C" fn pd_shutdown(ud: Ud, fd: c_int, how: c_int) -> c_int {
    entry(unsafe { shared(ud) }, "shutdown", |s| {
        s.call(|h| h.shutdown(fd, how)).map(|()| 0)
    }) as c_int
}

unsafe extern "C" fn pd_getsockopt(
    ud: Ud,
    fd: c_int,
    level: c_int,
    name: c_int,
    value: *mut c_void,
    len: *mut libc::socklen_t,
) -> c_int {
    let s = unsafe { shared(ud) };
    guard("getsockopt", || {
        if value.is_null() || len.is_null() {
            return ret::<i32>(Err(Errno(libc::EFAULT)));
        }
        ret(s.call(|h| h.get_option(fd, level, name)).map(|v| {
            // An int, truncated to the caller's length as Linux does.
            let bytes = v.to_ne_bytes();
            let n = bytes.len().min(unsafe { *len } as usize);
            unsafe {
                std::ptr::copy_nonoverlapping(bytes.as_ptr(), value as *mut u8, n);
                *len = n as libc::socklen_t;
            }
            0
        }))
    }) as c_int
}

unsafe extern "C" fn pd_setsockopt(
    ud: Ud,
    fd: c_int,
    level: c_int,
    name: c_int,
    value: *const c_void,
    len: libc::socklen_t,
) -> c_int {
    let s = unsafe { shared(ud) };
    guard("setsockopt", || {
        let v = unsafe { bytes(value, len as usize) }.and_then(|b| {
            // Every option we support takes an int.
            b.get(..4)
                .and_then(|b| b.try_into().ok())
                .map(i32::from_ne_bytes)
                .ok_or(Errno(libc::EINVAL))
        });
        ret(v
            .and_then(|v| s.call(|h| h.set_option(fd, level, name, v)))
            .map(|()| 0))
    }) as c_int
}

unsafe extern "C" fn pd_poll(
    ud: Ud,
    fds: *mut libc::pollfd,
    n: libc::nfds_t,
    timeout: c_int,
) -> c_int {
    let s = unsafe { shared(ud) };
    guard("poll", || {
        if n > 0 && fds.is_null() {
            return ret::<i32>(Err(Errno(libc::EFAULT)));
        }
        let fds: &mut [libc::pollfd] = if n == 0 {
            &mut []
        } else {
            unsafe { std::slice::from_raw_parts_mut(fds, n as usize) }
        };
        let deadline =
            (timeout >= 0).then(|| s.call(|h| h.now()) + Duration::from_millis(timeout as u64));
        // poll blocks whatever the descriptors' O_NONBLOCK says.
        let r = s.blocking(Wait::Always, "poll", deadline, |h| {
            let mut ready = 0;
            for p in fds.iter_mut() {
                p.revents = 0;
                match h.readiness(p.fd) {
                    Err(_) => p.revents = libc::POLLNVAL,
                    Ok(r) => {
                        if r.readable {
                            p.revents |= p.events & libc::POLLIN;
                        }
                        if r.writable {
                            p.revents |= p.events & libc::POLLOUT;
                        }
                        if r.error {
                            p.revents |= libc::POLLERR;
                        }
                    }
                }
                ready += i32::from(p.revents != 0);
            }
            match ready {
                0 if timeout != 0 => Err(Errno::AGAIN),
                n => Ok(n),
            }
        });
        ret(match r {
            Err(Errno::AGAIN) => Ok(0),
            r => r,
        })
    }) as c_int
}

unsafe extern "C" fn pd_netdev_send(ud: Ud, buf: *const c_void, n: usize) -> c_int {
    unsafe { shared(ud) }.on_main();
    entry(unsafe { shared(ud) }, "netdev_send", |s| {
        unsafe { bytes(buf, n) }.map(|p| {
            s.call(|h| h.inject(p));
            0
        })
    }) as c_int
}

unsafe extern "C" fn pd_netdev_receive(
    ud: Ud,
    buf: *mut c_void,
    n: *mut usize,
    at: *mut i64,
) -> c_int {
    let s = unsafe { shared(ud) };
    s.on_main();
    guard("netdev_receive", || {
        if n.is_null() || at.is_null() {
            return ret::<i32>(Err(Errno(libc::EFAULT)));
        }
        let cap = unsafe { *n };
        let out = unsafe { bytes_mut(buf, cap) };
        ret(out.map(|out| match s.call(|h| h.sniff()) {
            Some(p) => {
                let k = p.packet.len().min(out.len());
                out[..k].copy_from_slice(&p.packet[..k]);
                unsafe {
                    *n = k;
                    *at = p.at.total_micros();
                }
                0
            }
            None => {
                eprintln!(
                    "portlab: the stack sent nothing in {} s of its time and has no timer left; \
                     the packet the script expects will not come",
                    SNIFF_HORIZON.total_millis() / 1000
                );
                // packetdrill reads one byte that is no packet: it reports
                // the script's line as failed instead of asking again.
                if let Some(b) = out.first_mut() {
                    *b = 0;
                }
                unsafe {
                    *n = out.len().min(1);
                    *at = s.call(|h| h.now()).total_micros();
                }
                0
            }
        }))
    }) as c_int
}

unsafe extern "C" fn pd_usleep(ud: Ud, us: c_uint) -> c_int {
    let s = unsafe { shared(ud) };
    s.on_main();
    guard("usleep", || {
        s.call(|h| {
            let t = h.now() + Duration::from_micros(u64::from(us));
            h.advance_to(t)
        });
        0
    }) as c_int
}

unsafe extern "C" fn pd_gettimeofday(ud: Ud, tv: *mut libc::timeval, _tz: *mut c_void) -> c_int {
    let s = unsafe { shared(ud) };
    s.on_main();
    guard("gettimeofday", || {
        let t = s.call(|h| h.read_clock()).total_micros();
        if !tv.is_null() {
            unsafe {
                (*tv).tv_sec = t.div_euclid(1_000_000) as libc::time_t;
                (*tv).tv_usec = t.rem_euclid(1_000_000) as libc::suseconds_t;
            }
        }
        0
    }) as c_int
}

// ----- not supported: -1 and the errno Linux gives for a call it lacks -----

fn unsupported(what: &str) -> i64 {
    eprintln!("portlab: {what} is not supported by portlab's packetdrill interface");
    set_errno(Errno(libc::ENOSYS));
    -1
}

unsafe extern "C" fn pd_recvmsg(_: Ud, _: c_int, _: *mut libc::msghdr, _: c_int) -> isize {
    unsupported("recvmsg") as isize
}

unsafe extern "C" fn pd_sendmsg(_: Ud, _: c_int, _: *const libc::msghdr, _: c_int) -> isize {
    unsupported("sendmsg") as isize
}

unsafe extern "C" fn pd_ioctl(_: Ud, _: c_int, _: c_ulong, _: c_long) -> c_int {
    unsupported("ioctl") as c_int
}

unsafe extern "C" fn pd_epoll_create(_: Ud, _: c_int) -> c_int {
    unsupported("epoll_create") as c_int
}

unsafe extern "C" fn pd_epoll_ctl(
    _: Ud,
    _: c_int,
    _: c_int,
    _: c_int,
    _: *mut libc::epoll_event,
) -> c_int {
    unsupported("epoll_ctl") as c_int
}

unsafe extern "C" fn pd_epoll_wait(
    _: Ud,
    _: c_int,
    _: *mut libc::epoll_event,
    _: c_int,
    _: c_int,
) -> c_int {
    unsupported("epoll_wait") as c_int
}

unsafe extern "C" fn pd_pipe(_: Ud, _: *mut c_int) -> c_int {
    unsupported("pipe") as c_int
}

unsafe extern "C" fn pd_splice(
    _: Ud,
    _: c_int,
    _: *mut i64,
    _: c_int,
    _: *mut i64,
    _: usize,
    _: c_uint,
) -> isize {
    unsupported("splice") as isize
}
