//! The TUN device: where packets enter and leave the process.
//!
//! A TUN device is a network interface whose other end is a file descriptor.
//! Whatever the kernel routes to it (curl connecting to the stack's address,
//! say) can be read from the descriptor as a raw IP packet; whatever the stack
//! writes to the descriptor the kernel receives as if it came from a wire.
//!
//! This module creates the device (with tun-tap, no packet-info header) and
//! configures it in-process with ioctls — the kernel side's address and
//! netmask, the MTU, the transmit queue length, and the link up — so that a
//! binary given `cap_net_admin` with `setcap` works without running `ip`.
//! It is the only code that touches the descriptor; [`packet_io`](super::packet_io) is how the
//! runtime thread waits for packets and moves them in batches.
//!
//! Every failure a user can meet here has its own [`DeviceError`] that says
//! what happened and what to do.

use std::ffi::CString;
use std::fmt;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use tun_tap::{Iface, Mode};

use crate::config::{DeviceConfig, NetConfig, prefix_mask};
use crate::device::{gso, writer};

/// Why the device could not be set up.
#[derive(Debug)]
pub enum DeviceError {
    /// `/dev/net/tun` does not exist.
    NoTunDevice,
    /// Not allowed to create or configure a TUN device.
    PermissionDenied,
    /// The interface name is taken (another portlab, or another device).
    NameBusy(String),
    /// The interface name is not usable.
    BadName(String),
    /// The stack and the kernel side were given the same address.
    AddrEqualsHost(Ipv4Addr),
    /// The kernel side's address is not inside the stack's prefix.
    HostOutsidePrefix { host: Ipv4Addr, prefix: String },
    /// The stack's prefix overlaps a route the host already has.
    RouteOverlap {
        prefix: String,
        route: String,
        dev: String,
    },
    /// Any other system call failure, with what we were doing.
    Io { doing: &'static str, err: io::Error },
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceError::NoTunDevice => write!(
                f,
                "/dev/net/tun does not exist: this kernel or container has no TUN support. \
                 Load it with 'modprobe tun', or in a container pass the device through \
                 (docker: --device /dev/net/tun --cap-add NET_ADMIN)"
            ),
            DeviceError::PermissionDenied => write!(
                f,
                "permission denied creating the TUN device: run with sudo, or give the binary \
                 the capability once with 'sudo setcap cap_net_admin=ep target/release/portlab'"
            ),
            DeviceError::NameBusy(name) => write!(
                f,
                "the interface name '{name}' is busy: another portlab (or another device) \
                 uses it. Stop that process, or choose another name with --tun"
            ),
            DeviceError::BadName(name) => write!(
                f,
                "'{name}' is not a usable interface name: use 1 to 15 letters, digits, '-' or '_'"
            ),
            DeviceError::AddrEqualsHost(a) => write!(
                f,
                "the stack address and the host (kernel side) address are both {a}: \
                 they must differ. Change --addr or --host-addr"
            ),
            DeviceError::HostOutsidePrefix { host, prefix } => write!(
                f,
                "the host address {host} is not inside the stack's prefix {prefix}: \
                 choose a --host-addr inside it"
            ),
            DeviceError::RouteOverlap { prefix, route, dev } => write!(
                f,
                "the stack's prefix {prefix} overlaps the route {route} on {dev}: traffic to the \
                 stack would be ambiguous. Choose a prefix that no route on this host covers \
                 with --addr (see 'ip route')"
            ),
            DeviceError::Io { doing, err } => write!(f, "{doing}: {err}"),
        }
    }
}

impl std::error::Error for DeviceError {}

/// How long a start waits for a busy device name to be released.
const NAME_BUSY_PATIENCE: std::time::Duration = std::time::Duration::from_millis(500);

/// An open, configured TUN device.
pub struct TunDevice {
    fd: Descriptor,
    host_addr: Ipv4Addr,
    /// Whether the runtime may move packets through io_uring (see [`packet_io`]).
    pub(super) uring: bool,
}

/// How the device was opened: by tun-tap (plain packets), or by us with
/// `IFF_VNET_HDR` for segmentation offload (see [`crate::device::gso`]).
enum Descriptor {
    Plain(Iface),
    Vnet { fd: OwnedFd, name: String },
}

impl TunDevice {
    /// Creates and configures the device `dev.name` for a stack at `net.addr`.
    pub fn open(dev: &DeviceConfig, net: &NetConfig) -> Result<TunDevice, DeviceError> {
        check_addresses(dev, net)?;
        check_routes(dev, net, &read_routes())?;
        if !std::path::Path::new("/dev/net/tun").exists() {
            return Err(DeviceError::NoTunDevice);
        }
        let create = || {
            if dev.offload {
                open_vnet(&dev.name)
            } else {
                Iface::without_packet_info(&dev.name, Mode::Tun)
                    .map(Descriptor::Plain)
                    .map_err(|e| open_error(e, &dev.name))
            }
        };
        // A portlab that has just died may still hold the name for some
        // milliseconds: the kernel releases an io_uring's files (and so
        // the device) in the background after the process is gone.
        let since = std::time::Instant::now();
        let fd = loop {
            match create() {
                Err(DeviceError::NameBusy(_)) if since.elapsed() < NAME_BUSY_PATIENCE => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                r => break r?,
            }
        };
        let tun = TunDevice {
            fd,
            host_addr: dev.host_addr,
            uring: dev.io_uring,
        };
        tun.configure(dev, net)?;
        // Our own descriptor is opened non-blocking (see `open_vnet`).
        if let Descriptor::Plain(iface) = &tun.fd {
            iface.set_non_blocking().map_err(|err| DeviceError::Io {
                doing: "making the TUN device non-blocking",
                err,
            })?;
        }
        Ok(tun)
    }

    /// The interface name the kernel gave the device.
    pub fn name(&self) -> &str {
        match &self.fd {
            Descriptor::Plain(iface) => iface.name(),
            Descriptor::Vnet { name, .. } => name,
        }
    }

    pub fn host_addr(&self) -> Ipv4Addr {
        self.host_addr
    }

    /// Whether packets are plain, without a virtio-net header.
    pub(super) fn is_plain(&self) -> bool {
        matches!(self.fd, Descriptor::Plain(_))
    }

    /// Reads one packet; `WouldBlock` when none is waiting. With it, whether
    /// its TCP or UDP checksum was computed here (see [`gso::received`]).
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<(usize, bool)> {
        match &self.fd {
            Descriptor::Plain(iface) => Ok((iface.recv(buf)?, false)),
            Descriptor::Vnet { fd, .. } => {
                // Up to 64 KiB of one connection's segments, merged, with a
                // partial checksum (see `gso`): `buf` must hold 64 KiB and
                // an IPv6 header.
                let mut hdr = gso::PLAIN_HDR;
                let n = readv2(fd.as_raw_fd(), &mut hdr, buf)?;
                let n = n.saturating_sub(gso::VNET_HDR_LEN).min(buf.len());
                let ours = gso::received(&hdr, &mut buf[..n]);
                Ok((n, ours))
            }
        }
    }

    /// Writes packets in order; with offload, runs of one connection's
    /// segments go out merged, one write each. The kernel drops what its
    /// queue cannot take, like a wire would, so errors are not reported.
    /// From an application thread: a batch goes through the thread's own
    /// ring (see [`writer`]).
    pub fn send_all(&self, packets: &mut Vec<Vec<u8>>) {
        self.send(packets, self.uring);
    }

    /// [`TunDevice::send_all`] with a system call per packet.
    pub(super) fn send_each(&self, packets: &mut Vec<Vec<u8>>) {
        self.send(packets, false);
    }

    fn send(&self, packets: &mut Vec<Vec<u8>>, rings: bool) {
        match &self.fd {
            Descriptor::Plain(iface) => {
                let batched = if rings && packets.len() >= writer::WRITER_BATCH {
                    writer::write_batch(iface.as_raw_fd(), packets)
                } else {
                    0
                };
                for p in &packets[batched..] {
                    let _ = iface.send(p);
                }
            }
            Descriptor::Vnet { fd, .. } => {
                for w in gso::coalesce(packets) {
                    let _ = match &w {
                        gso::Write::Single(i) => {
                            writev2(fd.as_raw_fd(), &gso::PLAIN_HDR, &packets[*i])
                        }
                        gso::Write::Merged { hdr, packet, .. } => {
                            writev2(fd.as_raw_fd(), hdr, packet)
                        }
                    };
                }
            }
        }
        crate::device::packet_pool::give_all(packets);
    }

    fn configure(&self, dev: &DeviceConfig, net: &NetConfig) -> Result<(), DeviceError> {
        let ctl = control_socket()?;
        let name = self.name().to_string();
        let mask = Ipv4Addr::from(prefix_mask(net.prefix_len));
        ioctl_addr(&ctl, &name, libc::SIOCSIFADDR, dev.host_addr)
            .map_err(|err| io_err("setting the host address on the TUN device", err))?;
        ioctl_addr(&ctl, &name, libc::SIOCSIFNETMASK, mask)
            .map_err(|err| io_err("setting the netmask on the TUN device", err))?;
        ioctl_int(&ctl, &name, libc::SIOCSIFMTU, net.mtu as libc::c_int)
            .map_err(|err| io_err("setting the MTU on the TUN device", err))?;
        ioctl_int(
            &ctl,
            &name,
            libc::SIOCSIFTXQLEN,
            dev.tx_queue_len as libc::c_int,
        )
        .map_err(|err| io_err("setting the transmit queue length", err))?;
        if let Some(a6) = dev.host_addr6 {
            // Without duplicate-address detection: the address is usable at
            // once (otherwise the first seconds of `curl -6` fail).
            let conf = format!("/proc/sys/net/ipv6/conf/{name}");
            let _ = std::fs::write(format!("{conf}/disable_ipv6"), "0");
            let _ = std::fs::write(format!("{conf}/accept_dad"), "0");
            add_addr6(&name, a6)
                .map_err(|err| io_err("setting the host IPv6 address on the TUN device", err))?;
        }
        let mut req = ifreq(&name);
        // SAFETY: `req` is a valid ifreq for this request; the fd is a socket.
        if unsafe { libc::ioctl(ctl.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
            return Err(io_err(
                "reading the TUN device flags",
                io::Error::last_os_error(),
            ));
        }
        // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
        unsafe {
            req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        }
        // SAFETY: as above.
        if unsafe { libc::ioctl(ctl.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
            return Err(io_err(
                "bringing the TUN device up",
                io::Error::last_os_error(),
            ));
        }
        Ok(())
    }
}

impl AsRawFd for TunDevice {
    fn as_raw_fd(&self) -> RawFd {
        match &self.fd {
            Descriptor::Plain(iface) => iface.as_raw_fd(),
            Descriptor::Vnet { fd, .. } => fd.as_raw_fd(),
        }
    }
}

fn io_err(doing: &'static str, err: io::Error) -> DeviceError {
    match err.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => DeviceError::PermissionDenied,
        _ => DeviceError::Io { doing, err },
    }
}

/// Creates the device ourselves, non-blocking, with `IFF_VNET_HDR` and the
/// kernel's offloads towards us turned on (tun-tap can do neither).
fn open_vnet(name: &str) -> Result<Descriptor, DeviceError> {
    let path = CString::new("/dev/net/tun").map_err(|_| DeviceError::NoTunDevice)?;
    // SAFETY: a valid C string and flags; the result is checked.
    let raw = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDWR | libc::O_CLOEXEC | libc::O_NONBLOCK,
        )
    };
    if raw < 0 {
        return Err(open_error(io::Error::last_os_error(), name));
    }
    // SAFETY: `raw` is a descriptor we just opened and own.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut req = ifreq(name);
    req.ifr_ifru.ifru_flags =
        (libc::IFF_TUN | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as libc::c_short;
    // SAFETY: `req` is a valid ifreq for TUNSETIFF on a TUN descriptor.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut req) } < 0 {
        return Err(open_error(io::Error::last_os_error(), name));
    }
    let offloads = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6;
    // SAFETY: TUNSETOFFLOAD takes its flags by value.
    if unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TUNSETOFFLOAD,
            offloads as libc::c_ulong,
        )
    } < 0
    {
        return Err(DeviceError::Io {
            doing: "enabling checksum and segmentation offload (TUNSETOFFLOAD)",
            err: io::Error::last_os_error(),
        });
    }
    let given: Vec<u8> = req
        .ifr_name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    Ok(Descriptor::Vnet {
        fd,
        name: String::from_utf8_lossy(&given).into_owned(),
    })
}

/// One `writev` of a virtio-net header and a packet.
fn writev2(fd: RawFd, hdr: &[u8], packet: &[u8]) -> io::Result<usize> {
    let iov = [
        iovec(hdr.as_ptr().cast_mut(), hdr.len()),
        iovec(packet.as_ptr().cast_mut(), packet.len()),
    ];
    // SAFETY: two valid iovecs over live slices; the kernel only reads them.
    syscall_len(unsafe { libc::writev(fd, iov.as_ptr(), 2) })
}

/// One `readv` into a virtio-net header and a packet buffer.
fn readv2(fd: RawFd, hdr: &mut [u8], buf: &mut [u8]) -> io::Result<usize> {
    let iov = [
        iovec(hdr.as_mut_ptr(), hdr.len()),
        iovec(buf.as_mut_ptr(), buf.len()),
    ];
    // SAFETY: two valid iovecs over live, writable slices.
    syscall_len(unsafe { libc::readv(fd, iov.as_ptr(), 2) })
}

fn iovec(base: *mut u8, len: usize) -> libc::iovec {
    libc::iovec {
        iov_base: base.cast(),
        iov_len: len,
    }
}

fn syscall_len(n: isize) -> io::Result<usize> {
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

fn open_error(err: io::Error, name: &str) -> DeviceError {
    match err.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ENODEV) => DeviceError::NoTunDevice,
        Some(libc::EPERM) | Some(libc::EACCES) => DeviceError::PermissionDenied,
        Some(libc::EBUSY) | Some(libc::EINVAL) | Some(libc::EEXIST) => {
            DeviceError::NameBusy(name.to_string())
        }
        _ => DeviceError::Io {
            doing: "creating the TUN device",
            err,
        },
    }
}

fn check_addresses(dev: &DeviceConfig, net: &NetConfig) -> Result<(), DeviceError> {
    let name_ok = !dev.name.is_empty()
        && dev.name.len() <= 15
        && dev
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !name_ok {
        return Err(DeviceError::BadName(dev.name.clone()));
    }
    if dev.host_addr == net.addr {
        return Err(DeviceError::AddrEqualsHost(net.addr));
    }
    let mask = prefix_mask(net.prefix_len);
    if u32::from(dev.host_addr) & mask != u32::from(net.addr) & mask {
        return Err(DeviceError::HostOutsidePrefix {
            host: dev.host_addr,
            prefix: format!("{}/{}", net.network(), net.prefix_len),
        });
    }
    Ok(())
}

/// One line of `/proc/net/route`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub dev: String,
    pub dest: Ipv4Addr,
    pub mask: Ipv4Addr,
}

/// Parses `/proc/net/route` (addresses are little-endian hex).
pub fn parse_routes(text: &str) -> Vec<Route> {
    let hex = |s: &str| {
        u32::from_str_radix(s, 16)
            .ok()
            .map(|v| Ipv4Addr::from(v.swap_bytes()))
    };
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            Some(Route {
                dev: f.first()?.to_string(),
                dest: hex(f.get(1)?)?,
                mask: hex(f.get(7)?)?,
            })
        })
        .collect()
}

fn read_routes() -> Vec<Route> {
    std::fs::read_to_string("/proc/net/route")
        .map(|t| parse_routes(&t))
        .unwrap_or_default()
}

/// Refuses a prefix that overlaps a route of another device (default routes
/// excepted: every prefix overlaps those).
pub fn check_routes(
    dev: &DeviceConfig,
    net: &NetConfig,
    routes: &[Route],
) -> Result<(), DeviceError> {
    let ours = u32::from(net.addr) & prefix_mask(net.prefix_len);
    let our_mask = prefix_mask(net.prefix_len);
    for r in routes {
        let mask = u32::from(r.mask);
        if mask == 0 || r.dev == dev.name {
            continue;
        }
        let common = mask & our_mask;
        if u32::from(r.dest) & common == ours & common {
            return Err(DeviceError::RouteOverlap {
                prefix: format!("{}/{}", net.network(), net.prefix_len),
                route: format!("{}/{}", r.dest, mask.count_ones()),
                dev: r.dev.clone(),
            });
        }
    }
    Ok(())
}

fn control_socket() -> Result<OwnedFd, DeviceError> {
    // SAFETY: plain socket(2) call; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io_err(
            "opening a socket to configure the device",
            io::Error::last_os_error(),
        ));
    }
    // SAFETY: fd is a freshly created descriptor that we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn ifreq(name: &str) -> libc::ifreq {
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    let c = CString::new(name).unwrap_or_default();
    for (dst, src) in req.ifr_name.iter_mut().zip(c.as_bytes().iter().take(15)) {
        *dst = *src as libc::c_char;
    }
    req
}

fn ioctl_addr(ctl: &OwnedFd, name: &str, request: libc::c_ulong, addr: Ipv4Addr) -> io::Result<()> {
    let mut req = ifreq(name);
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(addr).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in fits in the sockaddr member of the union (both 16 bytes).
    unsafe {
        std::ptr::copy_nonoverlapping(
            &sin as *const libc::sockaddr_in as *const u8,
            &mut req.ifr_ifru.ifru_addr as *mut libc::sockaddr as *mut u8,
            std::mem::size_of::<libc::sockaddr_in>(),
        );
    }
    // SAFETY: valid ifreq for an address-setting request.
    if unsafe { libc::ioctl(ctl.as_raw_fd(), request, &req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Adds `addr/64` to the interface (SIOCSIFADDR on an IPv6 socket).
fn add_addr6(name: &str, addr: std::net::Ipv6Addr) -> io::Result<()> {
    let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: a valid NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: plain socket(2) call; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_INET6, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor we own.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let req = libc::in6_ifreq {
        ifr6_addr: libc::in6_addr {
            s6_addr: addr.octets(),
        },
        ifr6_prefixlen: 64,
        ifr6_ifindex: index as libc::c_int,
    };
    // SAFETY: valid in6_ifreq for SIOCSIFADDR on an AF_INET6 socket.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFADDR, &req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn ioctl_int(
    ctl: &OwnedFd,
    name: &str,
    request: libc::c_ulong,
    value: libc::c_int,
) -> io::Result<()> {
    let mut req = ifreq(name);
    // Writing a union field is safe; mtu and qlen share this int member.
    req.ifr_ifru.ifru_mtu = value;
    // SAFETY: valid ifreq for an int-setting request.
    if unsafe { libc::ioctl(ctl.as_raw_fd(), request, &req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfgs(addr: [u8; 4], host: [u8; 4]) -> (DeviceConfig, NetConfig) {
        (
            DeviceConfig {
                name: "pl0".into(),
                host_addr: host.into(),
                host_addr6: None,
                tx_queue_len: 1000,
                offload: false,
                io_uring: true,
            },
            NetConfig::new(addr.into(), 24),
        )
    }

    #[test]
    fn proc_net_route_is_parsed() {
        let text = "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n\
                    eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\n\
                    eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\n";
        let routes = parse_routes(text);
        assert_eq!(routes.len(), 2);
        assert_eq!(routes[1].dest, Ipv4Addr::new(192, 0, 2, 0));
        assert_eq!(routes[1].mask, Ipv4Addr::new(255, 255, 255, 0));
    }

    #[test]
    fn overlapping_prefix_is_refused_default_route_is_not() {
        let (dev, net) = cfgs([10, 203, 80, 2], [10, 203, 80, 1]);
        let routes = vec![
            Route {
                dev: "eth0".into(),
                dest: Ipv4Addr::UNSPECIFIED,
                mask: Ipv4Addr::UNSPECIFIED,
            },
            Route {
                dev: "eth1".into(),
                dest: Ipv4Addr::new(10, 0, 0, 0),
                mask: Ipv4Addr::new(255, 0, 0, 0),
            },
        ];
        let err = check_routes(&dev, &net, &routes).unwrap_err();
        assert!(err.to_string().contains("10.0.0.0/8"), "{err}");
        assert!(check_routes(&dev, &net, &routes[..1]).is_ok());
    }

    #[test]
    fn address_mistakes_are_explained() {
        let (dev, net) = cfgs([10, 203, 80, 2], [10, 203, 80, 2]);
        assert!(matches!(
            check_addresses(&dev, &net),
            Err(DeviceError::AddrEqualsHost(_))
        ));
        let (dev, net) = cfgs([10, 203, 80, 2], [10, 9, 9, 9]);
        assert!(matches!(
            check_addresses(&dev, &net),
            Err(DeviceError::HostOutsidePrefix { .. })
        ));
        let (mut dev, net) = cfgs([10, 203, 80, 2], [10, 203, 80, 1]);
        dev.name = "a-name-that-is-far-too-long".into();
        assert!(matches!(
            check_addresses(&dev, &net),
            Err(DeviceError::BadName(_))
        ));
    }
}
