//! `portlab-bench`: the load client of `scripts/bench.sh`, on the kernel's
//! sockets. Each command prints one JSON object on standard output.
//!
//! * `pingpong ADDR` — 1 byte to an echo service and back, over and over on
//!   one connection: the round-trip latency percentiles;
//! * `bulk recv ADDR` / `bulk send ADDR` — bytes from a chargen or to a
//!   discard service as fast as they go: the throughput; with `--rate-mbit`,
//!   sent at a fixed rate instead (the kernel paces the socket), so that the
//!   server's CPU time per byte can be compared at equal load;
//! * `hold ADDR --count N [--from IP]...` — opens N connections and keeps
//!   them idle until standard input closes (the flat-cost and memory
//!   workloads; with `--from`, spread over those source addresses, for more
//!   connections than one address has ports).
//!
//! wrk (from Debian) drives the HTTP workloads.

use std::io::{self, BufRead, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "portlab-bench",
    about = "portlab's benchmark client (kernel sockets)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// 1-byte ping-pong with an echo service on one connection.
    Pingpong {
        addr: SocketAddr,
        /// Round trips measured.
        #[arg(long, default_value_t = 20_000)]
        count: usize,
        /// Round trips before measuring.
        #[arg(long, default_value_t = 1_000)]
        warmup: usize,
    },
    /// Bulk transfer: receive from chargen or send to discard.
    Bulk {
        direction: Direction,
        addr: SocketAddr,
        /// Bytes to move.
        #[arg(long, default_value_t = 1 << 30)]
        bytes: u64,
        /// Send at most this many Mbit/s (`send` only): the kernel paces
        /// the socket (SO_MAX_PACING_RATE).
        #[arg(long)]
        rate_mbit: Option<u64>,
    },
    /// Open N connections and hold them idle until standard input closes.
    Hold {
        addr: SocketAddr,
        #[arg(long)]
        count: usize,
        /// Source addresses to connect from, in turn (each has about 28,000
        /// ports towards one server).
        #[arg(long = "from", value_name = "IP")]
        from: Vec<std::net::IpAddr>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Direction {
    /// From the server (a chargen service) to this client.
    Recv,
    /// From this client to the server (a discard service).
    Send,
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Pingpong {
            addr,
            count,
            warmup,
        } => pingpong(addr, count, warmup),
        Command::Bulk {
            direction,
            addr,
            bytes,
            rate_mbit,
        } => bulk(direction, addr, bytes, rate_mbit),
        Command::Hold { addr, count, from } => hold(addr, count, &from),
    };
    if let Err(e) = result {
        eprintln!("portlab-bench: {e}");
        std::process::exit(1);
    }
}

fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .map_err(|e| io::Error::new(e.kind(), format!("connect to {addr}: {e}")))?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// A connection from source address `src` (the kernel picks the port when
/// it connects, so each address has a port range per server).
fn connect_from(src: std::net::IpAddr, addr: SocketAddr) -> io::Result<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    // IP_BIND_ADDRESS_NO_PORT: choose the port at connect, by 4-tuple.
    let on: libc::c_int = 1;
    // SAFETY: a valid int option on a socket we own.
    unsafe {
        use std::os::fd::AsRawFd;
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    s.bind(&SocketAddr::new(src, 0).into())?;
    s.connect_timeout(&addr.into(), Duration::from_secs(10))
        .map_err(|e| io::Error::new(e.kind(), format!("connect from {src} to {addr}: {e}")))?;
    Ok(s.into())
}

/// Lets this process hold `n` descriptors (root may raise the hard limit).
fn raise_fd_limit(n: u64) -> io::Result<()> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit with a valid struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err(io::Error::last_os_error());
        }
        if lim.rlim_cur >= n {
            return Ok(());
        }
        let want = libc::rlimit {
            rlim_cur: n.max(lim.rlim_cur),
            rlim_max: n.max(lim.rlim_max),
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &want) != 0 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "cannot raise the open-file limit to {n} ({}): run as root or raise ulimit -n",
                    io::Error::last_os_error()
                ),
            ));
        }
    }
    Ok(())
}

/// Limits what `s` sends to `bytes_per_s` (Linux paces it, with or
/// without the fq qdisc).
fn pace(s: &TcpStream, bytes_per_s: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid socket, and a u64 that lives for the call.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MAX_PACING_RATE,
            (&bytes_per_s as *const u64).cast(),
            std::mem::size_of::<u64>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn pingpong(addr: SocketAddr, count: usize, warmup: usize) -> io::Result<()> {
    let mut s = connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut rtts = Vec::with_capacity(count);
    let mut byte = [0u8; 1];
    for i in 0..warmup + count {
        let start = Instant::now();
        s.write_all(b"x")?;
        s.read_exact(&mut byte)?;
        if i >= warmup {
            rtts.push(start.elapsed().as_secs_f64() * 1e6);
        }
    }
    rtts.sort_by(f64::total_cmp);
    let pct = |p: f64| rtts[((rtts.len() as f64 * p) as usize).min(rtts.len() - 1)];
    let mean = rtts.iter().sum::<f64>() / rtts.len() as f64;
    println!(
        "{{\"count\":{},\"p50_us\":{:.1},\"p99_us\":{:.1},\"mean_us\":{:.1},\"max_us\":{:.1}}}",
        rtts.len(),
        pct(0.50),
        pct(0.99),
        mean,
        rtts[rtts.len() - 1]
    );
    Ok(())
}

fn bulk(
    direction: Direction,
    addr: SocketAddr,
    bytes: u64,
    rate_mbit: Option<u64>,
) -> io::Result<()> {
    let mut s = connect(addr)?;
    if let Some(mbit) = rate_mbit {
        if matches!(direction, Direction::Recv) {
            return Err(io::Error::other(
                "--rate-mbit paces what this client sends: use it with `send`",
            ));
        }
        pace(&s, mbit * 1_000_000 / 8)?;
    }
    let mut buf = vec![b'x'; 256 * 1024];
    let start = Instant::now();
    let mut moved = 0u64;
    match direction {
        Direction::Recv => {
            while moved < bytes {
                let n = s.read(&mut buf)?;
                if n == 0 {
                    return Err(io::Error::other(format!("closed after {moved} bytes")));
                }
                moved += n as u64;
            }
        }
        Direction::Send => {
            while moved < bytes {
                let n = buf.len().min((bytes - moved) as usize);
                s.write_all(&buf[..n])?;
                moved += n as u64;
            }
            // Done when the server has read everything: it closes after our FIN.
            s.shutdown(Shutdown::Write)?;
            while s.read(&mut buf)? != 0 {}
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{{\"bytes\":{moved},\"seconds\":{secs:.3},\"gbit_s\":{:.3}}}",
        moved as f64 * 8.0 / secs / 1e9
    );
    Ok(())
}

fn hold(addr: SocketAddr, count: usize, from: &[std::net::IpAddr]) -> io::Result<()> {
    raise_fd_limit(count as u64 + 64)?;
    let start = Instant::now();
    let mut held = Vec::with_capacity(count);
    for i in 0..count {
        held.push(match from.get(i % from.len().max(1)) {
            Some(src) => connect_from(*src, addr)?,
            None => connect(addr)?,
        });
    }
    println!(
        "{{\"held\":{},\"seconds\":{:.3}}}",
        held.len(),
        start.elapsed().as_secs_f64()
    );
    io::stdout().flush()?;
    // Idle until told to stop.
    let mut line = String::new();
    while io::stdin().lock().read_line(&mut line)? != 0 {
        line.clear();
    }
    Ok(())
}
