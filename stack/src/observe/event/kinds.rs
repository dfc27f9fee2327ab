//! Every event the stack records, with its fields: the vocabulary of the
//! event log. How they are written is `human.rs` and `json.rs`.

use std::net::SocketAddr;

use smoltcp::socket::tcp::State as TcpState;
use smoltcp::time::Instant;

use crate::wire::quad::{Quad, SocketId};
pub use crate::wire::segment::{DropReason, SynOptions};

/// The version of the JSON lines schema.
pub const SCHEMA_VERSION: u32 = 1;

/// Why a SYN was dropped without an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SynDropReason {
    /// The listener's accept queue holds more than `backlog` connections.
    AcceptQueueFull,
    /// The listener's SYN queue (half-open connections) is at its cap.
    SynQueueFull,
    /// The stack holds as many sockets as it is allowed to.
    SocketLimit,
}

impl SynDropReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SynDropReason::AcceptQueueFull => "accept queue full",
            SynDropReason::SynQueueFull => "syn queue full",
            SynDropReason::SocketLimit => "socket limit reached",
        }
    }
}

/// Why the stack sent a reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RstReason {
    /// A segment arrived for a port nobody listens on.
    NoListener,
    /// A segment that is not a SYN arrived for a 4-tuple with no connection.
    NoConnection,
    /// The handshake completed while the accept queue was full, with `--overflow rst`.
    AcceptQueueOverflow,
    /// The listener was closed while this connection waited in its queues.
    ListenerClosed,
    /// The application closed the socket with data still unread (as Linux does).
    UnreadData,
    /// The application aborted the connection.
    Aborted,
    /// The stack shut down and the peer did not finish closing in time.
    Shutdown,
    /// The application closed the socket and the peer never finished the close.
    OrphanTimeout,
    /// The engine rejected a segment on this connection (e.g. an unacceptable ACK).
    Engine,
}

impl RstReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RstReason::NoListener => "no listener on port",
            RstReason::NoConnection => "no connection for segment",
            RstReason::AcceptQueueOverflow => "accept queue overflow",
            RstReason::ListenerClosed => "listener closed",
            RstReason::UnreadData => "closed with unread data",
            RstReason::Aborted => "aborted by application",
            RstReason::Shutdown => "stack shutdown",
            RstReason::OrphanTimeout => "closed socket timed out",
            RstReason::Engine => "rejected by engine",
        }
    }
}

/// Who closed a connection first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closer {
    /// The stack (our application) sent the first FIN: the stack holds TIME-WAIT.
    Local,
    /// The peer sent the first FIN: the peer holds TIME-WAIT.
    Remote,
    /// The connection ended with a reset (sent or received).
    Reset,
    /// A half-open connection expired in SYN-RECEIVED.
    Timeout,
    /// A half-open connection was evicted to make room in a full SYN queue.
    Evicted,
}

impl Closer {
    pub fn as_str(self) -> &'static str {
        match self {
            Closer::Local => "local",
            Closer::Remote => "remote",
            Closer::Reset => "reset",
            Closer::Timeout => "timeout",
            Closer::Evicted => "evicted",
        }
    }
}

/// Everything the stack reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The stack is attached to its device and answers on `addr`.
    StackStarted {
        device: String,
        addr: String,
        host: String,
        mtu: usize,
        seed: u64,
    },
    /// The stack stopped; `reset` connections had to be reset.
    StackStopped { closed: usize, reset: usize },
    /// A listening socket was opened (`reuse`: as a member of a reuse-port group).
    Listen {
        id: SocketId,
        local: SocketAddr,
        backlog: usize,
        reuse: bool,
    },
    /// A second listen on a port failed.
    ListenFailed {
        local: SocketAddr,
        reason: &'static str,
    },
    /// A listening socket was closed; `reset` queued connections were reset.
    ListenClosed {
        id: SocketId,
        local: SocketAddr,
        reset: usize,
    },
    /// A SYN arrived for a listening port (a new connection attempt).
    Syn {
        quad: Quad,
        isn: u32,
        options: SynOptions,
    },
    /// A SYN was dropped without an answer; the client will retransmit.
    SynDropped { quad: Quad, reason: SynDropReason },
    /// A segment completing (or following) a handshake was held back
    /// because the accept queue is full; the client will retransmit.
    HandshakeHeld { id: SocketId, quad: Quad },
    /// Nagle's algorithm holds `bytes` of a connection's data, a partial
    /// segment, until the peer acknowledges `until_ack` (see `nagle`).
    NagleHeld {
        id: SocketId,
        quad: Quad,
        bytes: u32,
        until_ack: u32,
        rule: &'static str,
    },
    /// The bytes Nagle's algorithm held left, `held_us` after the hold began.
    NagleReleased {
        id: SocketId,
        quad: Quad,
        bytes: u32,
        held_us: u64,
    },
    /// The stack sent a reset.
    RstSent {
        quad: Quad,
        id: Option<SocketId>,
        reason: RstReason,
    },
    /// A new socket was created for a new 4-tuple: from a listener (a SYN
    /// arrived) or for an outbound connection (`listener` is `None`).
    SocketCreated {
        id: SocketId,
        quad: Quad,
        /// The listening socket (id and address) whose queue it joined.
        listener: Option<(SocketId, SocketAddr)>,
        /// Made from the ACK that returned a SYN cookie (see `syncookie`).
        cookie: bool,
    },
    /// A listener's SYN queue overflowed and it answers with SYN cookies
    /// (`phase` "start"), or it has sent none for a while ("end", with the
    /// totals): one pair per flood, not one event per cookie.
    SynFlood {
        id: SocketId,
        local: SocketAddr,
        phase: &'static str,
        cookies_sent: u64,
        validated: u64,
        rejected: u64,
        duration_ms: u64,
    },
    /// The stack chose a local port for an outbound connection.
    PortChosen {
        quad: Quad,
        algorithm: &'static str,
        /// Candidates looked at, the chosen one included.
        tried: u32,
        /// The first rejected candidates, with the reason for each.
        rejected: Vec<(u16, &'static str)>,
    },
    /// The application accepted a connection after it waited `queued_us` in the accept queue.
    Accepted {
        id: SocketId,
        quad: Quad,
        queued_us: u64,
        by: Option<String>,
    },
    /// A socket changed TCP state.
    State {
        id: SocketId,
        quad: Quad,
        from: TcpState,
        to: TcpState,
    },
    /// A connection ended; its socket is gone.
    Closed {
        id: SocketId,
        quad: Quad,
        by: Closer,
    },
    /// A TIME-WAIT entry expired; the 4-tuple is free.
    TimeWaitExpired { id: SocketId, quad: Quad },
    /// A new SYN reused a 4-tuple that was in TIME-WAIT (as Linux allows).
    TimeWaitReused { id: SocketId, quad: Quad },
    /// An incoming packet was dropped before reaching any socket.
    PacketDropped {
        reason: DropReason,
        quad: Option<Quad>,
    },
    /// A UDP socket was bound (`reuse`: as a member of a reuse-port group).
    UdpBind {
        id: SocketId,
        local: SocketAddr,
        reuse: bool,
    },
    /// A UDP socket was closed, after `received` and `sent` datagrams.
    UdpClosed {
        id: SocketId,
        local: SocketAddr,
        received: u64,
        sent: u64,
    },
    /// A UDP socket received its first datagram from a sender (`quad`:
    /// its port, and the sender); later datagrams are only counted.
    UdpFlow { id: SocketId, quad: Quad },
    /// A datagram for a port with no socket was answered with ICMP port unreachable.
    PortUnreachable { quad: Quad },
    /// An application-level event (e.g. an HTTP header timeout).
    App {
        kind: String,
        id: Option<SocketId>,
        quad: Option<Quad>,
        detail: String,
    },
    /// `count` events of kind `kind` were left out by the rate limiter.
    Suppressed { kind: &'static str, count: u64 },
}

impl Event {
    /// The event's snake_case name, as in the JSON `"event"` field.
    pub fn kind(&self) -> &str {
        match self {
            Event::App { kind, .. } => kind,
            other => other.class(),
        }
    }

    /// The rate-limit class: the name of each of the stack's own events, and
    /// one shared class, `app`, for application events.
    pub(crate) fn class(&self) -> &'static str {
        match self {
            Event::StackStarted { .. } => "stack_started",
            Event::StackStopped { .. } => "stack_stopped",
            Event::Listen { .. } => "listen",
            Event::ListenFailed { .. } => "listen_failed",
            Event::ListenClosed { .. } => "listen_closed",
            Event::Syn { .. } => "syn",
            Event::SynDropped { .. } => "syn_dropped",
            Event::HandshakeHeld { .. } => "handshake_held",
            Event::NagleHeld { .. } => "nagle_held",
            Event::NagleReleased { .. } => "nagle_released",
            Event::RstSent { .. } => "rst_sent",
            Event::SocketCreated { .. } => "socket_created",
            Event::SynFlood { .. } => "syn_flood",
            Event::PortChosen { .. } => "port_chosen",
            Event::Accepted { .. } => "accepted",
            Event::State { .. } => "state",
            Event::Closed { .. } => "closed",
            Event::TimeWaitExpired { .. } => "time_wait_expired",
            Event::TimeWaitReused { .. } => "time_wait_reused",
            Event::PacketDropped { .. } => "packet_dropped",
            Event::UdpBind { .. } => "udp_bind",
            Event::UdpClosed { .. } => "udp_closed",
            Event::UdpFlow { .. } => "udp_flow",
            Event::PortUnreachable { .. } => "port_unreachable",
            Event::App { .. } => "app",
            Event::Suppressed { .. } => "suppressed",
        }
    }

    pub fn id(&self) -> Option<SocketId> {
        match self {
            Event::HandshakeHeld { id, .. }
            | Event::NagleHeld { id, .. }
            | Event::NagleReleased { id, .. }
            | Event::UdpBind { id, .. }
            | Event::UdpClosed { id, .. }
            | Event::UdpFlow { id, .. }
            | Event::Listen { id, .. }
            | Event::SynFlood { id, .. }
            | Event::ListenClosed { id, .. }
            | Event::SocketCreated { id, .. }
            | Event::Accepted { id, .. }
            | Event::State { id, .. }
            | Event::Closed { id, .. }
            | Event::TimeWaitExpired { id, .. }
            | Event::TimeWaitReused { id, .. } => Some(*id),
            Event::RstSent { id, .. } | Event::App { id, .. } => *id,
            _ => None,
        }
    }

    pub fn quad(&self) -> Option<Quad> {
        match self {
            Event::Syn { quad, .. }
            | Event::SynDropped { quad, .. }
            | Event::UdpFlow { quad, .. }
            | Event::PortUnreachable { quad }
            | Event::PortChosen { quad, .. }
            | Event::HandshakeHeld { quad, .. }
            | Event::NagleHeld { quad, .. }
            | Event::NagleReleased { quad, .. }
            | Event::RstSent { quad, .. }
            | Event::SocketCreated { quad, .. }
            | Event::Accepted { quad, .. }
            | Event::State { quad, .. }
            | Event::Closed { quad, .. }
            | Event::TimeWaitExpired { quad, .. }
            | Event::TimeWaitReused { quad, .. } => Some(*quad),
            Event::PacketDropped { quad, .. } | Event::App { quad, .. } => *quad,
            _ => None,
        }
    }
}

/// An event and the time it happened.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub ts: Instant,
    pub event: Event,
    /// The capture frame (1-based, as Wireshark numbers them) of the packet
    /// that caused the event, when a capture is being written.
    pub frame: Option<u64>,
}
