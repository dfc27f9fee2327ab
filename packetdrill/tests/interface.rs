//! The shared object's C table, driven as packetdrill drives it: through
//! the function pointers `packetdrill_interface_init` fills in, with C's
//! pointers, lengths and `errno`. No packetdrill is needed, so these run
//! under `cargo test` everywhere (`scripts/conformance.sh` runs the real
//! thing when a packetdrill binary is present).

use std::ffi::{CString, c_void};
use std::mem::MaybeUninit;
use std::net::Ipv4Addr;

use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};
use portlab_packetdrill::interface::{PacketdrillInterface, packetdrill_interface_init};

const STACK: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 2);
const PEER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

/// The table, as packetdrill holds it.
struct Table(PacketdrillInterface);

impl Table {
    fn new(flags: &str) -> Table {
        let flags = CString::new(flags).unwrap();
        let mut ifc = MaybeUninit::<PacketdrillInterface>::zeroed();
        unsafe {
            packetdrill_interface_init(flags.as_ptr(), ifc.as_mut_ptr());
            Table(ifc.assume_init())
        }
    }

    fn ud(&self) -> *mut c_void {
        self.0.userdata
    }

    fn socket(&self) -> i32 {
        unsafe { self.0.socket.unwrap()(self.ud(), libc::AF_INET, libc::SOCK_STREAM, 0) }
    }

    fn bind(&self, fd: i32, port: u16) -> i32 {
        let a = sockaddr(STACK, port);
        unsafe {
            self.0.bind.unwrap()(
                self.ud(),
                fd,
                &a as *const _ as *const libc::sockaddr,
                size_of::<libc::sockaddr_in>() as u32,
            )
        }
    }

    fn listen(&self, fd: i32, backlog: i32) -> i32 {
        unsafe { self.0.listen.unwrap()(self.ud(), fd, backlog) }
    }

    fn accept(&self, fd: i32) -> (i32, libc::sockaddr_in) {
        let mut a: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        let mut len = size_of::<libc::sockaddr_in>() as u32;
        let r = unsafe {
            self.0.accept.unwrap()(
                self.ud(),
                fd,
                &mut a as *mut _ as *mut libc::sockaddr,
                &mut len,
            )
        };
        (r, a)
    }

    fn nonblocking(&self, fd: i32) {
        let r = unsafe {
            self.0.fcntl.unwrap()(
                self.ud(),
                fd,
                libc::F_SETFL,
                libc::O_RDWR as i64 | libc::O_NONBLOCK as i64,
            )
        };
        assert_eq!(r, 0);
    }

    fn now_us(&self) -> i64 {
        let mut tv: libc::timeval = unsafe { std::mem::zeroed() };
        let r = unsafe { self.0.gettimeofday.unwrap()(self.ud(), &mut tv, std::ptr::null_mut()) };
        assert_eq!(r, 0);
        tv.tv_sec * 1_000_000 + tv.tv_usec
    }

    fn usleep(&self, us: u32) {
        assert_eq!(unsafe { self.0.usleep.unwrap()(self.ud(), us) }, 0);
    }

    fn inject(&self, packet: &[u8]) {
        let r =
            unsafe { self.0.netdev_send.unwrap()(self.ud(), packet.as_ptr().cast(), packet.len()) };
        assert_eq!(r, 0);
    }

    /// The next packet out, and when it left (µs).
    fn sniff(&self) -> (Vec<u8>, i64) {
        let mut buf = vec![0u8; 2048];
        let mut n = buf.len();
        let mut at = 0i64;
        let r = unsafe {
            self.0.netdev_receive.unwrap()(self.ud(), buf.as_mut_ptr().cast(), &mut n, &mut at)
        };
        assert_eq!(r, 0);
        buf.truncate(n);
        (buf, at)
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        unsafe { self.0.free.unwrap()(self.ud()) }
    }
}

fn sockaddr(ip: Ipv4Addr, port: u16) -> libc::sockaddr_in {
    let mut a: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    a.sin_family = libc::AF_INET as u16;
    a.sin_port = port.to_be();
    a.sin_addr.s_addr = u32::from(ip).to_be();
    a
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// A segment from the peer's port 40000 to the stack's port 8080.
fn segment(seq: u32, ack: Option<u32>, syn: bool) -> Vec<u8> {
    let mut b = PacketBuilder::ipv4(PEER.octets(), STACK.octets(), 64).tcp(40000, 8080, seq, 65535);
    if syn {
        b = b
            .syn()
            .options(&[etherparse::TcpOptionElement::MaximumSegmentSize(1460)])
            .unwrap();
    }
    if let Some(a) = ack {
        b = b.ack(a);
    }
    let mut out = Vec::new();
    b.write(&mut out, &[]).unwrap();
    out
}

/// (syn, ack flag, seq, ack number) of a TCP packet.
fn tcp_of(p: &[u8]) -> (bool, bool, u32, u32) {
    let s = SlicedPacket::from_ip(p).expect("an IP packet");
    let Some(TransportSlice::Tcp(t)) = s.transport else {
        panic!("not TCP: {p:?}")
    };
    (
        t.syn(),
        t.ack(),
        t.sequence_number(),
        t.acknowledgment_number(),
    )
}

#[test]
fn a_handshake_through_the_c_table_ends_in_accept_with_the_peer_address() {
    let t = Table::new("");
    let fd = t.socket();
    assert!(fd >= 0);
    assert_eq!(t.bind(fd, 8080), 0);
    assert_eq!(t.listen(fd, 1), 0);
    t.inject(&segment(1000, None, true));
    let (syn_ack, _) = t.sniff();
    let (syn, ack, isn, acked) = tcp_of(&syn_ack);
    assert!(syn && ack);
    assert_eq!(acked, 1001);
    t.inject(&segment(1001, Some(isn.wrapping_add(1)), false));
    let (conn, peer) = t.accept(fd);
    assert!(conn >= 0 && conn != fd, "accept gave {conn}");
    assert_eq!(u16::from_be(peer.sin_port), 40000);
    assert_eq!(Ipv4Addr::from(u32::from_be(peer.sin_addr.s_addr)), PEER);
}

#[test]
fn errors_come_back_as_linux_errno() {
    let t = Table::new("");
    let a = t.socket();
    assert_eq!(t.bind(a, 8080), 0);
    assert_eq!(t.listen(a, 1), 0);
    let b = t.socket();
    assert_eq!((t.bind(b, 8080), errno()), (-1, libc::EADDRINUSE));
    t.nonblocking(a);
    assert_eq!((t.accept(a).0, errno()), (-1, libc::EAGAIN));
    let one = 1i32;
    let r = unsafe {
        t.0.setsockopt.unwrap()(
            t.ud(),
            a,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&one as *const i32).cast(),
            4,
        )
    };
    assert_eq!((r, errno()), (-1, libc::ENOPROTOOPT));
    assert_eq!(
        (unsafe { t.0.epoll_create.unwrap()(t.ud(), 1) }, errno()),
        (-1, libc::ENOSYS)
    );
    let mut buf = [0u8; 8];
    let r = unsafe { t.0.read.unwrap()(t.ud(), 9999, buf.as_mut_ptr().cast(), buf.len()) };
    assert_eq!((r, errno()), (-1, libc::EBADF));
}

#[test]
fn sleeping_fires_each_timer_at_its_own_time() {
    let t = Table::new("");
    let fd = t.socket();
    assert_eq!(t.bind(fd, 8080), 0);
    assert_eq!(t.listen(fd, 1), 0);
    t.inject(&segment(1000, None, true));
    let (first, sent) = t.sniff();
    assert!(tcp_of(&first).0);
    // Sleep past the retransmission: the copy carries its own time, 1 s
    // after the first (RFC 6298's initial RTO), not the end of the sleep.
    t.usleep(1_500_000);
    let (again, resent) = t.sniff();
    assert_eq!(tcp_of(&again), tcp_of(&first));
    assert_eq!(resent - sent, 1_000_000);
    assert!(t.now_us() >= sent + 1_500_000);
}

#[test]
fn a_blocking_accept_on_another_thread_returns_when_the_ack_arrives() {
    let t = Table::new("");
    let fd = t.socket();
    assert_eq!(t.bind(fd, 8080), 0);
    assert_eq!(t.listen(fd, 1), 0);
    // packetdrill's main thread is the one that reads the clock.
    t.now_us();
    let accept = t.0.accept.unwrap();
    let ud = t.ud() as usize;
    let waiter = std::thread::spawn(move || unsafe {
        accept(
            ud as *mut c_void,
            fd,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    });
    t.inject(&segment(1000, None, true));
    let (_, _, isn, _) = tcp_of(&t.sniff().0);
    t.inject(&segment(1001, Some(isn.wrapping_add(1)), false));
    let conn = waiter.join().unwrap();
    assert!(conn >= 0 && conn != fd, "accept gave {conn}");
}

#[test]
fn a_background_client_fills_the_accept_queue() {
    // `complete=40000`: the interface acknowledges the SYN-ACK itself.
    let t = Table::new("complete=40000");
    let fd = t.socket();
    assert_eq!(t.bind(fd, 8080), 0);
    assert_eq!(t.listen(fd, 0), 0);
    t.inject(&segment(1000, None, true));
    t.nonblocking(fd);
    let (conn, peer) = t.accept(fd);
    assert!(conn >= 0, "the background client's connection is accepted");
    assert_eq!(u16::from_be(peer.sin_port), 40000);
}
