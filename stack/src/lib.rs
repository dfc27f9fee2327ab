//! portlab's stack: a userspace TCP/IP stack on a Linux TUN device that shows
//! how one listening port serves many connections at once.
//!
//! The layers are folders, each opening with an essay that says what the
//! layer is and what it may use; dependencies run one way, downward (the
//! test `stack/tests/layers.rs` checks it):
//!
//! * [`api`] — how programs reach the stack: the runtime thread, the
//!   std::net-like API, the control socket that `portlab ss` asks;
//! * [`engine`] — the sans-IO core, `NetStack`, and how it drives smoltcp;
//! * [`transport`] — what smoltcp lacks: the 4-tuple table, listeners with
//!   their queues, ports, reuse-port groups, TIME-WAIT, SYN cookies,
//!   windows, Nagle, UDP;
//! * [`device`] — the TUN device, io_uring, offload, the packet pool, and
//!   the pcap and fault middlewares;
//! * [`observe`] — the typed events, their streams, connections' stories,
//!   the connection table;
//! * [`wire`] — a packet read far enough to route it, the 4-tuple, checksums.
//!
//! Beside them, [`config`] is the settings every layer is given, and
//! [`fuzz`] the fuzz harnesses over the core, shared by `cargo fuzz` and
//! `cargo test`.

pub mod api;
pub mod config;
pub mod device;
pub mod engine;
pub mod fuzz;
pub mod observe;
pub mod transport;
pub mod wire;

pub use config::{NagleRule, NetConfig, Overflow};

/// The stack's time types (smoltcp's): instants are Unix time in microseconds.
pub mod time {
    pub use smoltcp::time::{Duration, Instant};
}
pub use engine::netstack::NetStack;
pub use observe::event::{Event, Record};
pub use wire::quad::{Quad, SocketId};
