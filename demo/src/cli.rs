//! Command-line flags, parsed in one place into a validated configuration.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use portlab::api::net::{DEFAULT_TUN, StackConfig, random_seed};
use portlab::config::{DeviceConfig, NetConfig, Overflow};
use portlab::transport::ports::{Algorithm, PortRange};

use crate::models::Model;

#[derive(Parser, Debug)]
#[command(
    name = "portlab",
    version,
    about = "A userspace TCP/IP stack on a TUN device that shows how one listening port \
             serves many connections at once",
    long_about = None,
)]
pub struct Cli {
    /// Log level for the human-readable event log (error, warn, info, debug, trace).
    /// Overrides RUST_LOG, which sudo usually strips anyway.
    #[arg(long, global = true, value_name = "LEVEL")]
    pub log_level: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve HTTP on the stack's address: every visitor sees its own 4-tuple
    /// and the live connection table.
    #[command(after_help = SERVE_EXAMPLES)]
    Serve(ServeArgs),
    /// The stack as a client: open connections to a server on the kernel side
    /// of the TUN and show the local port the stack chose for each.
    #[command(after_help = CONNECT_EXAMPLES)]
    Connect(ConnectArgs),
    /// Try to listen on one port several times: plain listeners collide
    /// (AddrInUse), a reuse-port group shares the port.
    #[command(after_help = LISTEN_EXAMPLES)]
    Listen(ListenArgs),
    /// Show a running stack's sockets, like 'ss -tan' (the kernel's ss cannot see them).
    #[command(after_help = SS_EXAMPLES)]
    Ss(SsArgs),
    /// The same HTTP server (and --inetd services) on the kernel's sockets, no
    /// TUN device: the benchmarks' comparator, so that only the stack differs.
    KernelServe(KernelServeArgs),
}

#[derive(Args, Debug)]
pub struct KernelServeArgs {
    /// The address to listen on.
    #[arg(long, default_value = "0.0.0.0", value_name = "IP")]
    pub listen: std::net::IpAddr,

    /// TCP port of the HTTP server.
    #[arg(long, default_value_t = 80)]
    pub port: u16,

    /// Also serve TCP echo (7), discard (9) and chargen (19).
    #[arg(long)]
    pub inetd: bool,

    /// Connections served at once, at most; more get 503 and are closed.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub max_connections: usize,

    /// Seconds a client may take to send a request's headers.
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    pub header_timeout: u64,

    /// Whether the HTTP server sets TCP_NODELAY on its connections, as nginx does.
    #[arg(long, value_enum, default_value_t = OnOff::On)]
    pub nodelay: OnOff,
}

const LISTEN_EXAMPLES: &str = "\
Examples:
  sudo portlab listen 80 --count 2
      The second listen fails with AddrInUse: one listener per port.
  sudo portlab listen 80 --count 3 --reuse --for 30
      Three listeners share port 80 in a reuse-port group; for 30 s, each connection
      is accepted by the member its 4-tuple hashes to, and the client is told which.";

#[derive(Args, Debug)]
pub struct ListenArgs {
    #[command(flatten)]
    pub device: DeviceArgs,

    /// The port to listen on.
    pub port: u16,

    /// How many listeners to open on it.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub count: usize,

    /// Open them as members of a reuse-port group.
    #[arg(long)]
    pub reuse: bool,

    /// Serve that long (seconds) before exiting; 0: until Ctrl-C.
    #[arg(long = "for", default_value_t = 0, value_name = "SECS")]
    pub duration: u64,
}

const SS_EXAMPLES: &str = "\
Examples:
  sudo portlab ss            connections (not listeners), like 'ss -t'
  sudo portlab ss -l         listening sockets: Recv-Q is the accept queue, Send-Q the backlog
  sudo portlab ss -a --json  everything, as JSON
  sudo portlab ss --tun lab1 only the stack on device lab1
Run it in the same network namespace as the stack: it finds every portlab running
there (several: each under its own heading), or give --tun NAME or --control PATH.";

#[derive(Args, Debug)]
pub struct SsArgs {
    /// Only the stack on this TUN device [default: every stack in this network namespace].
    #[arg(long, value_name = "NAME")]
    pub tun: Option<String>,

    /// The control socket's path (overrides --tun).
    #[arg(long, value_name = "PATH")]
    pub control: Option<PathBuf>,

    /// Only listening sockets.
    #[arg(short = 'l', long)]
    pub listening: bool,

    /// Listening and non-listening sockets.
    #[arg(short = 'a', long)]
    pub all: bool,

    /// TCP sockets (the default).
    #[arg(short = 't', long)]
    pub tcp: bool,

    /// UDP sockets (this stack has none yet).
    #[arg(short = 'u', long)]
    pub udp: bool,

    /// Numeric output (always; accepted for ss habits).
    #[arg(short = 'n', long)]
    pub numeric: bool,

    /// The whole table as JSON.
    #[arg(long)]
    pub json: bool,

    /// A summary, as `ss -s` and `netstat -s`: the stack's counters (SYNs,
    /// SYN cookies, resets…) and each listener's SYN and accept queues.
    #[arg(short = 's', long)]
    pub summary: bool,
}

const CONNECT_EXAMPLES: &str = "\
Examples (a server must listen on the kernel side, e.g. 'python3 -m http.server 8000'):
  sudo portlab connect http://10.203.80.1:8000/ --connections 20
      20 concurrent HTTP GETs; prints the local port chosen for each and the status.
  sudo portlab connect http://10.203.80.1:8000/ --connections 5 --algorithm sequential --range linux
      Watch sequential port choice in Linux's range 32768-60999.
  sudo portlab connect --local-port 50000 http://10.203.80.1:8000/ http://10.203.80.1:8001/
      One local port, two connections at once: only the 4-tuple must be unique.
  sudo portlab connect 10.203.80.1:22
      A plain TCP connection (no HTTP): connect, report, close.

Targets are IP literals (no DNS) the stack can reach: its own subnet, or
anything with --default-route.";

const SERVE_EXAMPLES: &str = "\
Examples:
  sudo portlab serve
      Stack at 10.203.80.2 on TUN 'portlab0'; open http://10.203.80.2/ in a browser.
  sudo portlab serve --events events.jsonl --backlog 4
      Also write every event as a JSON line to events.jsonl; a small accept queue.
  sudo portlab serve --tun lab1 --addr 10.203.81.2/24 --port 8080 --overflow rst
      Another device and prefix, port 8080, reset handshakes that overflow the queue.
  sudo portlab serve --model one-at-a-time --backlog 2
      Serve one connection at a time; watch the others wait in the accept queue.
  sudo portlab serve --model reuseport --workers 4
      Four listeners share port 80 in a reuse-port group, one per worker thread.

The kernel side of the TUN gets the first host address of the prefix
(10.203.80.1 by default), so connections from this machine to the stack's
address go through the device, and the stack sees each one as a 4-tuple.";

/// Flags shared by every command that starts a stack on a TUN device.
#[derive(Args, Debug, Clone)]
pub struct DeviceArgs {
    /// Name of the TUN device to create.
    #[arg(long, default_value = DEFAULT_TUN, value_name = "NAME")]
    pub tun: String,

    /// The stack's own address and prefix length.
    #[arg(long, default_value = "10.203.80.2/24", value_name = "IP/PREFIX")]
    pub addr: String,

    /// The kernel side's address on the device [default: first host address of the prefix].
    #[arg(long, value_name = "IP")]
    pub host_addr: Option<Ipv4Addr>,

    /// The stack's IPv6 address (always a /64; 'none' turns IPv6 off).
    #[arg(long, default_value = "fd70:6c61:6200::2", value_name = "IPV6|none")]
    pub addr6: String,

    /// The kernel side's IPv6 address [default: ::1 of the stack's /64].
    #[arg(long, value_name = "IPV6")]
    pub host_addr6: Option<std::net::Ipv6Addr>,

    /// Device MTU.
    #[arg(long, default_value_t = 1500, value_parser = clap::value_parser!(u16).range(576..))]
    pub mtu: u16,

    /// Receive and send buffer of each connection, in KiB (the receive
    /// buffer is its window; more than 64 needs window scaling) [default:
    /// 1024 receive, 256 send]. Memory is used only as data arrives: an
    /// idle connection costs none of it.
    #[arg(long, value_name = "KIB", value_parser = clap::value_parser!(u32).range(4..=16384))]
    pub buffer: Option<u32>,

    /// Send buffer of each connection, in KiB, whatever --buffer says.
    #[arg(long, value_name = "KIB", value_parser = clap::value_parser!(u32).range(4..=16384))]
    pub send_buffer: Option<u32>,

    /// Segmentation offload both ways: open the TUN device with a
    /// virtio-net header, write runs of one connection's segments as one
    /// large packet (the kernel takes it like a GRO-merged one), and take the
    /// kernel's up-to-64-KiB packets (TSO) as one segment each. Faster bulk
    /// transfers; a capture (--pcap) shows the stack's own segments as it
    /// made them, and the kernel's merged packets as they arrived.
    #[arg(long)]
    pub offload: bool,

    /// Read and write the TUN device with a system call per packet instead
    /// of batches through io_uring (which needs Linux 6.7; older kernels and
    /// containers that forbid it fall back by themselves).
    #[arg(long)]
    pub no_io_uring: bool,

    /// Seed for the stack's random numbers (initial sequence numbers), for
    /// reproducible labs [default: from the OS].
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,

    /// Give the stack a default route via the host address (namespace labs:
    /// by default it can only reach its own subnet).
    #[arg(long)]
    pub default_route: bool,

    /// Write every event as a JSON line to this file ('-' for standard output).
    #[arg(long, value_name = "PATH|-")]
    pub events: Option<PathBuf>,

    /// Capture every packet read from or written to the TUN device in this
    /// pcap file (open it with Wireshark or 'tshark -r'); events then name
    /// the frame that caused them.
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<PathBuf>,

    /// A lossy link: drop this percentage of packets, in each direction.
    #[arg(long, default_value_t = 0.0, value_name = "PCT")]
    pub drop: f64,

    /// Send this percentage of packets twice.
    #[arg(long, default_value_t = 0.0, value_name = "PCT")]
    pub duplicate: f64,

    /// Hold back this percentage of packets behind the next one.
    #[arg(long, default_value_t = 0.0, value_name = "PCT")]
    pub reorder: f64,

    /// Flip one bit in this percentage of packets (checksums catch it).
    #[arg(long, default_value_t = 0.0, value_name = "PCT")]
    pub corrupt: f64,

    /// Seed of the lossy link's decisions (the same seed, the same faults).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub fault_seed: u64,

    /// The control socket that 'portlab ss' asks [default:
    /// /run/portlab/<tun>-<netns>.sock as root].
    #[arg(long, value_name = "PATH")]
    pub control: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum AlgorithmArg {
    /// One global counter (predictable).
    Sequential,
    /// RFC 6056 algorithm 1: random start, linear probing.
    Random,
    /// RFC 6056 algorithm 3: per-destination offset from a keyed hash.
    Hash,
    /// RFC 6056 algorithm 4, as current Linux: even ports for connect.
    DoubleHash,
}

impl AlgorithmArg {
    pub fn algorithm(self) -> Algorithm {
        match self {
            AlgorithmArg::Sequential => Algorithm::Sequential,
            AlgorithmArg::Random => Algorithm::Random,
            AlgorithmArg::Hash => Algorithm::Hash,
            AlgorithmArg::DoubleHash => Algorithm::DoubleHash,
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum RangeArg {
    /// 49152-65535, the IANA dynamic ports.
    Iana,
    /// 32768-60999, Linux's default ip_local_port_range.
    Linux,
}

#[derive(Args, Debug)]
pub struct ConnectArgs {
    #[command(flatten)]
    pub device: DeviceArgs,

    /// Where to connect: http://IP[:PORT][/PATH] (an HTTP GET) or IP:PORT (TCP only).
    #[arg(required = true, value_name = "URL|ADDR")]
    pub targets: Vec<String>,

    /// Connections per target, opened concurrently and held open until all are up.
    #[arg(long, short = 'n', default_value_t = 1, value_name = "N")]
    pub connections: usize,

    /// How the stack chooses local ports.
    #[arg(long, value_enum, default_value_t = AlgorithmArg::DoubleHash)]
    pub algorithm: AlgorithmArg,

    /// The ephemeral port range.
    #[arg(long, value_enum, default_value_t = RangeArg::Iana)]
    pub range: RangeArg,

    /// Connect from this local port (bind-then-connect) instead of choosing one.
    #[arg(long, value_name = "PORT")]
    pub local_port: Option<u16>,
}

impl ConnectArgs {
    pub fn stack_config(&self) -> Result<StackConfig, Box<dyn std::error::Error>> {
        let mut c = self.device.stack_config()?;
        c.net.port_algorithm = self.algorithm.algorithm();
        c.net.port_range = match self.range {
            RangeArg::Iana => PortRange::IANA,
            RangeArg::Linux => PortRange::LINUX,
        };
        Ok(c)
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum NagleArg {
    /// Hold a partial segment only while an earlier partial one is
    /// unacknowledged (Minshall's variant, as Linux).
    Minshall,
    /// Hold a partial segment while anything is unacknowledged (RFC 896 as
    /// written, smoltcp's own): meets the client's delayed ACK.
    Classic,
}

/// A switch: `on` or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

impl OnOff {
    pub fn on(self) -> bool {
        self == OnOff::On
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum OverflowArg {
    /// Drop the completing ACK silently; the client retransmits (Linux default).
    Drop,
    /// Answer it with RST (Linux's tcp_abort_on_overflow).
    Rst,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum SynCookiesArg {
    /// Once a listener's SYN queue is full (Linux's tcp_syncookies=1, its default).
    Auto,
    /// For every SYN: no SYN queue at all (tcp_syncookies=2).
    Always,
    /// Never: a full SYN queue evicts its oldest entry (tcp_syncookies=0 drops).
    Never,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    pub device: DeviceArgs,

    /// TCP port to listen on.
    #[arg(long, default_value_t = 80)]
    pub port: u16,

    /// How the server uses its port: which thread accepts and serves which connection.
    #[arg(long, value_enum, default_value_t = Model::ThreadPerConnection)]
    pub model: Model,

    /// Worker threads for the workers and reuseport models.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub workers: usize,

    /// Drop root once the TUN device is attached: run as this user from then on.
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,

    /// Also serve TCP echo (7), discard (9) and chargen (19), as inetd did:
    /// port 7 then has a TCP and a UDP socket. The benchmarks use them.
    #[arg(long)]
    pub inetd: bool,

    /// UDP port of the echo service (0: none).
    #[arg(long, default_value_t = 7, value_name = "PORT")]
    pub udp_port: u16,

    /// Reader threads of the UDP echo service; more than one share the port
    /// in a reuse-port group.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub udp_readers: usize,

    /// Accept-queue length: completed connections that may wait for accept().
    #[arg(long, default_value_t = 511)]
    pub backlog: usize,

    /// What to do when a handshake completes while the accept queue is full.
    #[arg(long, value_enum, default_value_t = OverflowArg::Drop)]
    pub overflow: OverflowArg,

    /// Half-open connections (SYN-RECEIVED) allowed per listener.
    #[arg(long, default_value_t = 1024, value_name = "N")]
    pub syn_queue: usize,

    /// When to answer a SYN with a SYN cookie instead of a socket.
    #[arg(long, value_enum, default_value_t = SynCookiesArg::Auto)]
    pub syn_cookies: SynCookiesArg,

    /// The stack's Nagle rule for sockets without TCP_NODELAY.
    #[arg(long, value_enum, default_value_t = NagleArg::Minshall)]
    pub nagle: NagleArg,

    /// Whether the HTTP server sets TCP_NODELAY on its connections, as nginx does.
    #[arg(long, value_enum, default_value_t = OnOff::On)]
    pub nodelay: OnOff,

    /// Seconds a connection may stay in SYN-RECEIVED.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    pub syn_timeout: u64,

    /// Seconds the stack keeps a 4-tuple in TIME-WAIT after closing first.
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    pub time_wait: u64,

    /// Connections served at once, at most; more get 503 and are closed.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub max_connections: usize,

    /// Sockets the stack holds at most, connections in every state (more
    /// SYNs are dropped: `syn_dropped`, socket limit reached).
    #[arg(long, default_value_t = 16384, value_name = "N")]
    pub max_sockets: usize,

    /// Seconds a client may take to send a request's headers (and to stay idle
    /// between keep-alive requests).
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    pub header_timeout: u64,

    /// On Ctrl-C, SIGTERM or SIGHUP: milliseconds connected peers get to finish closing
    /// before they are reset.
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    pub grace_ms: u64,
}

/// A flag value that does not make sense, with what to do instead.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Parses `a.b.c.d/len`.
pub fn parse_cidr(s: &str) -> Result<(Ipv4Addr, u8), UsageError> {
    let bad = || {
        UsageError(format!(
            "--addr '{s}' is not an IPv4 address with a prefix length, like 10.203.80.2/24"
        ))
    };
    let (ip, len) = s.split_once('/').ok_or_else(bad)?;
    let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
    let len: u8 = len.parse().map_err(|_| bad())?;
    if !(8..=30).contains(&len) {
        return Err(UsageError(format!(
            "--addr prefix length /{len} is out of range: use /8 to /30 (the stack and the \
             kernel side need two host addresses)"
        )));
    }
    Ok((ip, len))
}

impl DeviceArgs {
    /// Builds the stack configuration these flags describe.
    pub fn stack_config(&self) -> Result<StackConfig, Box<dyn std::error::Error>> {
        let (addr, prefix) = parse_cidr(&self.addr)?;
        let mut net = NetConfig::new(addr, prefix);
        net.mtu = usize::from(self.mtu);
        if let Some(kib) = self.buffer {
            net.rx_buffer = kib as usize * 1024;
            net.tx_buffer = kib as usize * 1024;
        }
        if let Some(kib) = self.send_buffer {
            net.tx_buffer = kib as usize * 1024;
        }
        net.seed = self.seed.unwrap_or_else(random_seed);
        let host_addr = self.host_addr.unwrap_or_else(|| net.default_host_addr());
        net.addr6 = match self.addr6.trim_end_matches("/64") {
            "none" => None,
            a => Some(a.parse().map_err(|_| {
                UsageError(format!(
                    "--addr6 '{}' is not an IPv6 address (or 'none')",
                    self.addr6
                ))
            })?),
        };
        let host_addr6 = match net.addr6 {
            Some(_) => self.host_addr6.or_else(|| net.default_host_addr6()),
            None => None,
        };
        if host_addr6.is_some() && host_addr6 == net.addr6 {
            return Err(UsageError("--addr6 and --host-addr6 must differ".into()).into());
        }
        if self.default_route {
            net.default_gateway = Some(host_addr);
            net.default_gateway6 = host_addr6;
        }
        let events: Option<Box<dyn Write + Send>> = match &self.events {
            None => None,
            Some(p) if p.as_os_str() == "-" => Some(Box::new(std::io::stdout())),
            Some(p) => {
                let f = File::create(p).map_err(|e| {
                    UsageError(format!(
                        "cannot create the events file {}: {e}",
                        p.display()
                    ))
                })?;
                Some(Box::new(BufWriter::new(f)))
            }
        };
        let pcap: Option<Box<dyn Write + Send>> = match &self.pcap {
            None => None,
            Some(p) => {
                let f = File::create(p).map_err(|e| {
                    UsageError(format!(
                        "cannot create the capture file {}: {e}",
                        p.display()
                    ))
                })?;
                Some(Box::new(BufWriter::new(f)))
            }
        };
        Ok(StackConfig {
            net,
            device: DeviceConfig {
                name: self.tun.clone(),
                host_addr,
                host_addr6,
                tx_queue_len: 4096,
                offload: self.offload,
                io_uring: !self.no_io_uring,
            },
            events,
            pcap,
            control: self.control.clone(),
            faults: portlab::device::faults::FaultConfig {
                drop: self.drop.clamp(0.0, 100.0),
                duplicate: self.duplicate.clamp(0.0, 100.0),
                reorder: self.reorder.clamp(0.0, 100.0),
                corrupt: self.corrupt.clamp(0.0, 100.0),
                seed: self.fault_seed,
            },
        })
    }
}

impl ServeArgs {
    pub fn stack_config(&self) -> Result<StackConfig, Box<dyn std::error::Error>> {
        let mut c = self.device.stack_config()?;
        c.net.overflow = match self.overflow {
            OverflowArg::Drop => Overflow::Drop,
            OverflowArg::Rst => Overflow::Rst,
        };
        c.net.syn_queue_cap = self.syn_queue.max(1);
        c.net.syn_cookies = match self.syn_cookies {
            SynCookiesArg::Auto => portlab::transport::syncookie::Mode::Auto,
            SynCookiesArg::Always => portlab::transport::syncookie::Mode::Always,
            SynCookiesArg::Never => portlab::transport::syncookie::Mode::Never,
        };
        c.net.max_sockets = self.max_sockets.max(1);
        c.net.nagle = match self.nagle {
            NagleArg::Minshall => portlab::NagleRule::Minshall,
            NagleArg::Classic => portlab::NagleRule::Classic,
        };
        c.net.syn_timeout = smoltcp_secs(self.syn_timeout);
        c.net.time_wait = smoltcp_secs(self.time_wait);
        Ok(c)
    }

    pub fn header_timeout(&self) -> Duration {
        Duration::from_secs(self.header_timeout.max(1))
    }
}

fn smoltcp_secs(s: u64) -> portlab::config::Duration {
    portlab::config::Duration::from_secs(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parsing_explains_mistakes() {
        assert_eq!(
            parse_cidr("10.203.80.2/24").unwrap(),
            (Ipv4Addr::new(10, 203, 80, 2), 24)
        );
        assert!(
            parse_cidr("10.203.80.2")
                .unwrap_err()
                .0
                .contains("prefix length")
        );
        assert!(
            parse_cidr("10.203.80.2/31")
                .unwrap_err()
                .0
                .contains("/8 to /30")
        );
    }

    #[test]
    fn help_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
