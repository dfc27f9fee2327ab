//! portlab's stack: a userspace TCP/IP stack on a Linux TUN device that shows
//! how one listening port serves many connections at once.
//!
//! The layers, one idea per module:
//!
//! * [`quad`] — a connection's identity, the 4-tuple;
//! * [`segment`] — reading a packet far enough to route it;
//! * [`checksum`] — the Internet checksum, verified and filled in;
//! * [`demux`] — the 4-tuple table that routes each segment to its connection;
//! * [`listener`] — listen/accept, the SYN queue, the accept queue and the backlog;
//! * [`reuseport`] — several sockets sharing one port, one chosen per flow;
//! * [`ports`] — ephemeral-port choice (RFC 6056);
//! * [`timewait`] — TIME-WAIT as a compact record;
//! * [`udp`] — UDP sockets: bound ports, reuse-port readers, port unreachable;
//! * [`timers`] — every connection's next deadline, in order;
//! * [`engine`] — smoltcp as the TCP engine, one connection at a time;
//! * [`window`] — the receive window's edge, and the ACKs smoltcp would not read past it;
//! * [`nagle`] — Nagle's algorithm as Linux runs it (Minshall's variant), and `TCP_NODELAY`;
//! * [`buffers`] — socket buffers that cost no memory until they are used;
//! * [`netstack`] — the sans-IO core that ties them together;
//! * [`table`] — the connection table, as `ss` would show it;
//! * [`event`] — the typed event log and its two renderings;
//! * [`event_stream`] — the event log pushed to subscribers as it happens (`GET /events`);
//! * [`story`] — each connection's story: its events, handshake and teardown;
//! * [`pcap`] — packet capture for Wireshark;
//! * [`packet_pool`] — packet buffers, reused per thread;
//! * [`device`] — the TUN device and its configuration; [`device::packet_io`], how the runtime
//!   waits for packets and moves them;
//! * [`uring`] — io_uring: many packet reads and writes for one system call;
//! * [`gso`] — segmentation offload: one connection's segments written as one packet;
//! * [`faults`] — a lossy link inside our device layer (drop, duplicate, reorder, corrupt);
//! * [`control`] — the control socket that `portlab ss` asks;
//! * [`runtime`] — the thread that owns the device, the clock and the core;
//! * [`net`] — the std::net-like blocking API: `Stack`, `TcpListener`, `TcpStream`;
//! * [`fuzz`] — fuzz harnesses over the core, shared by `cargo fuzz` and `cargo test`.

pub mod buffers;
pub mod checksum;
pub mod config;
pub mod control;
pub mod demux;
pub mod device;
pub mod engine;
pub mod event;
pub mod event_stream;
pub mod faults;
pub mod fuzz;
pub mod gso;
pub mod listener;
pub mod nagle;
pub mod net;
pub mod netstack;
pub mod packet_pool;
pub mod pcap;
pub mod ports;
pub mod quad;
pub mod reuseport;
pub mod runtime;
pub mod segment;
pub mod story;
pub mod syncookie;
pub mod table;
pub mod timers;
pub mod timewait;
pub mod udp;
pub mod uring;
pub mod window;

pub use config::{NagleRule, NetConfig, Overflow};

/// The stack's time types (smoltcp's): instants are Unix time in microseconds.
pub mod time {
    pub use smoltcp::time::{Duration, Instant};
}
pub use event::{Event, Record};
pub use netstack::NetStack;
pub use quad::{Quad, SocketId};
