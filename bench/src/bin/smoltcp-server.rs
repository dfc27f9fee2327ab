//! A stock smoltcp server, the benchmarks' other comparator: how a program
//! uses smoltcp on its own, as smoltcp's examples do.
//!
//! One `Interface`, one `SocketSet` holding every socket, smoltcp's own TUN
//! device, one thread polling it all. No backlog and no demultiplexing of
//! our own: a port accepts a connection only on a socket in LISTEN, so this
//! server keeps `--listeners` sockets listening on each port and re-arms
//! them as they are taken (a socket that closes listens again). Each wake-up
//! the interface matches packets against every socket and the server looks
//! at every socket — the linear cost portlab's 4-tuple table avoids.
//!
//! Services, the same as `portlab serve --inetd` offers: HTTP on 80 (any
//! request head gets a fixed 300-byte page; `Connection: close` closes),
//! echo on 7, discard on 9, chargen on 19.
//!
//!     smoltcp-server --tun plstock0 --addr 10.205.80.2/24 [--buffer KIB] [--send-buffer KIB] [--listeners N]
//!
//! The TUN device is created here; give the kernel side its address with
//! `ip addr add 10.205.80.1/24 dev plstock0 && ip link set plstock0 up`.

use std::collections::HashMap;
use std::os::fd::AsRawFd;

use clap::Parser;
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{Medium, TunTapInterface, wait as phy_wait};
use smoltcp::socket::tcp;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{HardwareAddress, IpCidr};

#[derive(Parser)]
#[command(
    name = "smoltcp-server",
    about = "a stock smoltcp server (benchmark comparator)"
)]
struct Args {
    #[arg(long, default_value = "plstock0")]
    tun: String,
    /// The server's address and prefix.
    #[arg(long, default_value = "10.205.80.2/24")]
    addr: String,
    /// Receive and send buffer per socket, KiB.
    #[arg(long, default_value_t = 64)]
    buffer: usize,
    /// Send buffer per socket, KiB [default: --buffer].
    #[arg(long)]
    send_buffer: Option<usize>,
    /// Sockets kept listening on each port.
    #[arg(long, default_value_t = 1)]
    listeners: usize,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Service {
    Http,
    Echo,
    Discard,
    Chargen,
}

const SERVICES: [(Service, u16); 4] = [
    (Service::Http, 80),
    (Service::Echo, 7),
    (Service::Discard, 9),
    (Service::Chargen, 19),
];

struct Conn {
    service: Service,
    port: u16,
    /// HTTP: the request bytes so far.
    input: Vec<u8>,
}

fn main() {
    let args = Args::parse();
    let Ok(addr) = args.addr.parse::<IpCidr>() else {
        eprintln!(
            "smoltcp-server: --addr {} is not an address/prefix",
            args.addr
        );
        std::process::exit(2);
    };
    let mut device = match TunTapInterface::new(&args.tun, Medium::Ip) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("smoltcp-server: cannot open TUN device {}: {e}", args.tun);
            std::process::exit(1);
        }
    };
    let fd = device.as_raw_fd();
    let mut iface = Interface::new(
        Config::new(HardwareAddress::Ip),
        &mut device,
        Instant::now(),
    );
    iface.update_ip_addrs(|a| {
        let _ = a.push(addr);
    });
    let mut sockets = SocketSet::new(vec![]);
    let mut conns: HashMap<SocketHandle, Conn> = HashMap::new();
    let buffer = args.buffer * 1024;
    let send_buffer = args.send_buffer.unwrap_or(args.buffer) * 1024;
    let page = http_page();
    let chargen: Vec<u8> = (0..64 * 1024).map(|i| b' ' + (i % 95) as u8).collect();
    let mut scratch = vec![0u8; 64 * 1024];
    loop {
        let now = Instant::now();
        iface.poll(now, &mut device, &mut sockets);
        let mut listening: HashMap<u16, usize> = HashMap::new();
        for (handle, socket) in sockets.iter_mut() {
            let smoltcp::socket::Socket::Tcp(socket) = socket else {
                continue;
            };
            let Some(conn) = conns.get_mut(&handle) else {
                continue;
            };
            if !socket.is_open() {
                // Re-armed: a closed socket listens again.
                conn.input.clear();
                let _ = socket.listen(conn.port);
            }
            if socket.is_listening() {
                *listening.entry(conn.port).or_default() += 1;
                continue;
            }
            serve(socket, conn, &page, &chargen, &mut scratch);
        }
        for (service, port) in SERVICES {
            for _ in listening.get(&port).copied().unwrap_or(0)..args.listeners {
                let mut s = tcp::Socket::new(
                    tcp::SocketBuffer::new(vec![0u8; buffer]),
                    tcp::SocketBuffer::new(vec![0u8; send_buffer]),
                );
                let _ = s.listen(port);
                let h = sockets.add(s);
                conns.insert(
                    h,
                    Conn {
                        service,
                        port,
                        input: Vec::new(),
                    },
                );
            }
        }
        let delay = iface.poll_delay(now, &sockets);
        let _ = phy_wait(fd, delay.or(Some(Duration::from_millis(100))));
    }
}

fn serve(
    socket: &mut tcp::Socket,
    conn: &mut Conn,
    page: &[u8],
    chargen: &[u8],
    scratch: &mut [u8],
) {
    match conn.service {
        Service::Http => {
            while socket.can_recv() {
                match socket.recv_slice(scratch) {
                    Ok(n) if n > 0 => conn.input.extend_from_slice(&scratch[..n]),
                    _ => break,
                }
            }
            while let Some(end) = conn.input.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = conn.input.drain(..end + 4).collect::<Vec<u8>>();
                let close = head
                    .windows(17)
                    .any(|w| w.eq_ignore_ascii_case(b"connection: close"));
                if socket.send_slice(page).is_err() {
                    socket.abort();
                    return;
                }
                if close {
                    socket.close();
                    return;
                }
            }
            if socket.state() == tcp::State::CloseWait {
                socket.close();
            }
        }
        Service::Echo => {
            while socket.can_recv() && socket.can_send() {
                let room = socket.send_capacity() - socket.send_queue();
                let want = room.min(scratch.len());
                match socket.recv_slice(&mut scratch[..want]) {
                    Ok(n) if n > 0 => {
                        let _ = socket.send_slice(&scratch[..n]);
                    }
                    _ => break,
                }
            }
            if socket.state() == tcp::State::CloseWait && socket.recv_queue() == 0 {
                socket.close();
            }
        }
        Service::Discard => {
            while socket.can_recv() {
                match socket.recv(|b| (b.len(), b.len())) {
                    Ok(n) if n > 0 => {}
                    _ => break,
                }
            }
            if socket.state() == tcp::State::CloseWait {
                socket.close();
            }
        }
        Service::Chargen => {
            while socket.can_send() {
                match socket.send_slice(chargen) {
                    Ok(n) if n > 0 => {}
                    _ => break,
                }
            }
            if socket.state() == tcp::State::CloseWait {
                socket.close();
            }
        }
    }
}

/// A fixed response: the size of portlab's `/you` page.
fn http_page() -> Vec<u8> {
    let body = vec![b'x'; 300];
    let mut page = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    page.extend_from_slice(&body);
    page
}
