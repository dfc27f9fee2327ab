//! Everything the stack reports, as data.
//!
//! The stack never formats log text where something happens. It records an
//! [`Event`] — a typed value — and the event is rendered in exactly one place,
//! here: [`Record::human`] gives the line written through the `log` crate, and
//! [`Record::json`] gives one JSON object per line for scripts (written by
//! serde_json, from the `Serialize` impl below).
//!
//! # JSON schema, version 1
//!
//! Every line is one object with these keys:
//!
//! * `"v"`: always `1` (this schema's version);
//! * `"ts"`: Unix time in seconds, a float with microsecond precision;
//! * `"event"`: the snake_case name of the event (`"syn"`, `"socket_created"`, …);
//! * where they apply: `"id"` (the socket's number), `"local"` and `"remote"`
//!   (`"ip:port"` strings), and the event's own fields.
//!
//! Within version 1 fields may be added, never removed or renamed. README.md
//! lists every event and field.
//!
//! # Rate limiting
//!
//! A SYN flood must not turn into a flood of log lines. Each event kind has a
//! token bucket ([`RateLimiter`]); past it, events of that kind are counted and
//! a `suppressed` event later says how many were left out.

use std::fmt::Write as _;
use std::net::SocketAddr;

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::value::RawValue;
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

impl Record {
    /// The human-readable line (without timestamp: `log` adds its own).
    pub fn human(&self) -> String {
        let mut s = format!("{:<17}", self.event.kind());
        if let Some(id) = self.event.id() {
            let _ = write!(s, " {id:<5}");
        }
        if let Some(q) = self.event.quad() {
            let _ = write!(s, " {q}");
        }
        let detail = match &self.event {
            Event::StackStarted {
                device,
                addr,
                host,
                mtu,
                seed,
            } => format!("stack {addr} on {device} (kernel side {host}), mtu {mtu}, seed {seed}"),
            Event::StackStopped { closed, reset } => {
                format!("{closed} connections closed, {reset} reset")
            }
            Event::Listen {
                local,
                backlog,
                reuse,
                ..
            } => format!(
                "listening on {local}, backlog {backlog}{}",
                if *reuse {
                    ", in a reuse-port group"
                } else {
                    ""
                }
            ),
            Event::ListenFailed { local, reason } => format!("listen on {local} failed: {reason}"),
            Event::ListenClosed { local, reset, .. } => {
                format!("stopped listening on {local}, {reset} queued connections reset")
            }
            Event::Syn { isn, options, .. } => {
                let mut d = format!("isn={isn}");
                if let Some(m) = options.mss {
                    let _ = write!(d, " mss={m}");
                }
                if let Some(w) = options.window_scale {
                    let _ = write!(d, " wscale={w}");
                }
                if options.sack_permitted {
                    d.push_str(" sack");
                }
                if let Some(t) = options.timestamp {
                    let _ = write!(d, " tsval={t}");
                }
                d
            }
            Event::SynDropped { reason, .. } => format!("dropped: {}", reason.as_str()),
            Event::HandshakeHeld { .. } => "handshake ACK held back: accept queue full".into(),
            Event::NagleHeld {
                bytes,
                until_ack,
                rule,
                ..
            } => format!(
                "Nagle ({rule}) holds {bytes} bytes until the peer acknowledges {until_ack}"
            ),
            Event::NagleReleased { bytes, held_us, .. } => format!(
                "{bytes} bytes held by Nagle sent after {:.3} ms",
                *held_us as f64 / 1e3
            ),
            Event::RstSent { reason, .. } => format!("reset: {}", reason.as_str()),
            Event::SocketCreated {
                listener, cookie, ..
            } => match listener {
                Some((lid, l)) if *cookie => {
                    format!("new socket from listener {lid} ({l}), made from a SYN cookie")
                }
                Some((lid, l)) => format!("new socket from listener {lid} ({l})"),
                None => "new socket for an outbound connection".into(),
            },
            Event::SynFlood {
                local,
                phase,
                cookies_sent,
                validated,
                rejected,
                duration_ms,
                ..
            } => match *phase {
                "start" => format!("SYN queue of {local} full: answering with SYN cookies"),
                _ => format!(
                    "SYN flood on {local} over after {:.1} s: {cookies_sent} cookies sent, \
                     {validated} validated, {rejected} rejected",
                    *duration_ms as f64 / 1e3
                ),
            },
            Event::PortChosen {
                algorithm,
                tried,
                rejected,
                ..
            } => {
                let mut d = format!("local port chosen by {algorithm} after {tried} candidate(s)");
                for (port, why) in rejected {
                    let _ = write!(d, "; {port} rejected: {why}");
                }
                d
            }
            Event::Accepted { queued_us, by, .. } => {
                let mut d = format!(
                    "accepted after {:.3} ms in the queue",
                    *queued_us as f64 / 1e3
                );
                if let Some(by) = by {
                    let _ = write!(d, " by {by}");
                }
                d
            }
            Event::State { from, to, .. } => format!("{from} -> {to}"),
            Event::Closed { by, .. } => match by {
                Closer::Local => "closed (stack closed first, holds TIME-WAIT)".into(),
                Closer::Remote => "closed (peer closed first)".into(),
                Closer::Reset => "closed by reset".into(),
                Closer::Timeout => "closed: handshake timed out".into(),
                Closer::Evicted => "closed: evicted from a full SYN queue".into(),
            },
            Event::TimeWaitExpired { .. } => "TIME-WAIT over, 4-tuple free".into(),
            Event::TimeWaitReused { .. } => "new SYN reuses a TIME-WAIT 4-tuple".into(),
            Event::PacketDropped { reason, .. } => format!("dropped: {}", reason.as_str()),
            Event::UdpBind { local, reuse, .. } => format!(
                "udp socket bound to {local}{}",
                if *reuse {
                    ", in a reuse-port group"
                } else {
                    ""
                }
            ),
            Event::UdpClosed {
                local,
                received,
                sent,
                ..
            } => format!("udp socket on {local} closed: {received} datagrams in, {sent} out"),
            Event::UdpFlow { .. } => "first datagram from this sender to this socket".into(),
            Event::PortUnreachable { .. } => "no socket on this port: ICMP port unreachable".into(),
            Event::App { detail, .. } => detail.clone(),
            Event::Suppressed { kind, count } => format!("{count} {kind} events left out"),
        };
        s.push(' ');
        s.push_str(&detail);
        if let Some(f) = self.frame {
            let _ = write!(s, " [frame {f}]");
        }
        s
    }

    /// One JSON object (no trailing newline), schema [`SCHEMA_VERSION`].
    pub fn json(&self) -> String {
        to_json(self)
    }
}

/// `value` as one line of JSON. Our values are maps with string keys,
/// strings and numbers, which serde_json always writes.
pub fn to_json(value: &impl Serialize) -> String {
    serde_json::to_string(value).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// A time as the schema writes it: Unix seconds with exactly six decimals
/// (`1700000000.000250`), a JSON number.
struct Seconds(Instant);

impl Serialize for Seconds {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let micros = self.0.total_micros();
        let text = format!(
            "{}.{:06}",
            micros.div_euclid(1_000_000),
            micros.rem_euclid(1_000_000)
        );
        RawValue::from_string(text)
            .map_err(serde::ser::Error::custom)?
            .serialize(s)
    }
}

/// A value written with its `Display` form, as a JSON string (addresses,
/// TCP states), without an allocation of its own.
pub struct Shown<T>(pub T);

impl<T: std::fmt::Display> Serialize for Shown<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// A rejected port candidate of `port_chosen`: `{"port":…,"reason":…}`.
struct RejectedPort(u16, &'static str);

impl Serialize for RejectedPort {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("port", &self.0)?;
        m.serialize_entry("reason", self.1)?;
        m.end()
    }
}

impl Serialize for Record {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut o = s.serialize_map(None)?;
        o.serialize_entry("v", &SCHEMA_VERSION)?;
        o.serialize_entry("ts", &Seconds(self.ts))?;
        o.serialize_entry("event", self.event.kind())?;
        if let Some(f) = self.frame {
            o.serialize_entry("frame", &f)?;
        }
        if let Some(id) = self.event.id() {
            o.serialize_entry("id", &id.0)?;
        }
        if let Some(q) = self.event.quad() {
            o.serialize_entry("local", &Shown(q.local))?;
            o.serialize_entry("remote", &Shown(q.remote))?;
        }
        match &self.event {
            Event::StackStarted {
                device,
                addr,
                host,
                mtu,
                seed,
            } => {
                o.serialize_entry("device", device)?;
                o.serialize_entry("addr", addr)?;
                o.serialize_entry("host", host)?;
                o.serialize_entry("mtu", mtu)?;
                o.serialize_entry("seed", seed)?;
            }
            Event::StackStopped { closed, reset } => {
                o.serialize_entry("closed", closed)?;
                o.serialize_entry("reset", reset)?;
            }
            Event::Listen {
                local,
                backlog,
                reuse,
                ..
            } => {
                o.serialize_entry("local", &Shown(local))?;
                o.serialize_entry("backlog", backlog)?;
                o.serialize_entry("reuse", reuse)?;
            }
            Event::ListenFailed { local, reason } => {
                o.serialize_entry("local", &Shown(local))?;
                o.serialize_entry("reason", reason)?;
            }
            Event::ListenClosed { local, reset, .. } => {
                o.serialize_entry("local", &Shown(local))?;
                o.serialize_entry("reset", reset)?;
            }
            Event::Syn { isn, options, .. } => {
                o.serialize_entry("isn", isn)?;
                if let Some(m) = options.mss {
                    o.serialize_entry("mss", &m)?;
                }
                if let Some(w) = options.window_scale {
                    o.serialize_entry("wscale", &w)?;
                }
                o.serialize_entry("sack_permitted", &options.sack_permitted)?;
                if let Some(t) = options.timestamp {
                    o.serialize_entry("tsval", &t)?;
                }
            }
            Event::SynDropped { reason, .. } => o.serialize_entry("reason", reason.as_str())?,
            Event::HandshakeHeld { .. } => o.serialize_entry("reason", "accept queue full")?,
            Event::NagleHeld {
                bytes,
                until_ack,
                rule,
                ..
            } => {
                o.serialize_entry("bytes", bytes)?;
                o.serialize_entry("until_ack", until_ack)?;
                o.serialize_entry("rule", rule)?;
            }
            Event::NagleReleased { bytes, held_us, .. } => {
                o.serialize_entry("bytes", bytes)?;
                o.serialize_entry("held_us", held_us)?;
            }
            Event::RstSent { reason, .. } => o.serialize_entry("reason", reason.as_str())?,
            Event::SocketCreated {
                listener, cookie, ..
            } => {
                match listener {
                    Some((lid, l)) => {
                        o.serialize_entry("listener", &Shown(l))?;
                        o.serialize_entry("listener_id", &lid.0)?;
                    }
                    None => o.serialize_entry("origin", "connect")?,
                }
                if *cookie {
                    o.serialize_entry("cookie", &true)?;
                }
            }
            Event::SynFlood {
                local,
                phase,
                cookies_sent,
                validated,
                rejected,
                duration_ms,
                ..
            } => {
                o.serialize_entry("local", &Shown(local))?;
                o.serialize_entry("phase", phase)?;
                o.serialize_entry("cookies_sent", cookies_sent)?;
                o.serialize_entry("validated", validated)?;
                o.serialize_entry("rejected", rejected)?;
                o.serialize_entry("duration_ms", duration_ms)?;
            }
            Event::PortChosen {
                algorithm,
                tried,
                rejected,
                ..
            } => {
                o.serialize_entry("algorithm", algorithm)?;
                o.serialize_entry("tried", tried)?;
                let list: Vec<RejectedPort> = rejected
                    .iter()
                    .map(|&(p, why)| RejectedPort(p, why))
                    .collect();
                o.serialize_entry("rejected", &list)?;
            }
            Event::Accepted { queued_us, by, .. } => {
                o.serialize_entry("queued_us", queued_us)?;
                if let Some(by) = by {
                    o.serialize_entry("by", by)?;
                }
            }
            Event::State { from, to, .. } => {
                o.serialize_entry("from", &Shown(from))?;
                o.serialize_entry("to", &Shown(to))?;
            }
            Event::Closed { by, .. } => o.serialize_entry("by", by.as_str())?,
            Event::TimeWaitExpired { .. } | Event::TimeWaitReused { .. } => {}
            Event::PacketDropped { reason, .. } => o.serialize_entry("reason", reason.as_str())?,
            Event::UdpBind { local, reuse, .. } => {
                o.serialize_entry("local", &Shown(local))?;
                o.serialize_entry("reuse", reuse)?;
            }
            Event::UdpClosed {
                local,
                received,
                sent,
                ..
            } => {
                o.serialize_entry("local", &Shown(local))?;
                o.serialize_entry("received", received)?;
                o.serialize_entry("sent", sent)?;
            }
            Event::UdpFlow { .. } | Event::PortUnreachable { .. } => {}
            Event::App { detail, .. } => o.serialize_entry("detail", detail)?,
            Event::Suppressed { kind, count } => {
                o.serialize_entry("kind", kind)?;
                o.serialize_entry("count", count)?;
            }
        }
        o.end()
    }
}

/// Per-kind token buckets: `burst` events at once, refilled at `per_second`.
/// What a bucket leaves out is counted and reported by [`RateLimiter::flush`]
/// at most once a second per kind, as one `suppressed` event.
#[derive(Debug)]
pub struct RateLimiter {
    burst: f64,
    per_second: f64,
    /// One per event kind seen, in the order first seen: a couple of dozen
    /// at most, found by a short scan (cheaper than hashing the name, on
    /// the path of every event).
    buckets: Vec<(&'static str, Bucket)>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
    suppressed: u64,
    last_summary: Instant,
}

impl RateLimiter {
    /// `per_second == 0` turns rate limiting off.
    pub fn new(burst: u32, per_second: u32) -> RateLimiter {
        RateLimiter {
            burst: f64::from(burst.max(1)),
            per_second: f64::from(per_second),
            buckets: Vec::new(),
        }
    }

    /// Records `event`, or counts it if its kind is over its rate.
    pub fn admit(&mut self, now: Instant, frame: Option<u64>, event: Event, out: &mut Vec<Record>) {
        if self.allow(now, event.class()) {
            out.push(Record {
                ts: now,
                event,
                frame,
            });
        }
    }

    /// Whether one more event of `class` fits its rate now; if not, it is
    /// counted for the next summary ([`RateLimiter::flush`]).
    pub fn allow(&mut self, now: Instant, class: &'static str) -> bool {
        if self.per_second > 0.0 {
            let (burst, rate) = (self.burst, self.per_second);
            let i = match self
                .buckets
                .iter()
                .position(|(c, _)| std::ptr::eq(*c, class) || *c == class)
            {
                Some(i) => i,
                None => {
                    self.buckets.push((
                        class,
                        Bucket {
                            tokens: burst,
                            last: now,
                            suppressed: 0,
                            last_summary: now,
                        },
                    ));
                    self.buckets.len() - 1
                }
            };
            let b = &mut self.buckets[i].1;
            if now > b.last {
                let elapsed = (now - b.last).total_micros() as f64 / 1e6;
                b.tokens = (b.tokens + elapsed * rate).min(burst);
                b.last = now;
            }
            if b.tokens < 1.0 {
                b.suppressed += 1;
                return false;
            }
            b.tokens -= 1.0;
        }
        true
    }

    /// Reports, once a second per kind, how many events were left out.
    pub fn flush(&mut self, now: Instant, out: &mut Vec<Record>) {
        let first = out.len();
        for (class, b) in self.buckets.iter_mut() {
            if b.suppressed > 0 && (now - b.last_summary).total_millis() >= 1000 {
                out.push(Record {
                    ts: now,
                    event: Event::Suppressed {
                        kind: class,
                        count: std::mem::take(&mut b.suppressed),
                    },
                    frame: None,
                });
                b.last_summary = now;
            }
        }
        // In the order of their names, as before.
        out[first..].sort_by_key(|r| match r.event {
            Event::Suppressed { kind, .. } => kind,
            _ => "",
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quad() -> Quad {
        Quad::new(
            "10.0.0.2:80".parse().unwrap(),
            "10.0.0.1:40000".parse().unwrap(),
        )
    }

    #[test]
    fn json_envelope_has_version_time_kind_and_tuple() {
        let r = Record {
            ts: Instant::from_micros(1_700_000_000_123_456i64),
            event: Event::SocketCreated {
                id: SocketId(7),
                quad: quad(),
                listener: Some((SocketId(1), "0.0.0.0:80".parse().unwrap())),
                cookie: false,
            },
            frame: Some(3),
        };
        assert_eq!(
            r.json(),
            r#"{"v":1,"ts":1700000000.123456,"event":"socket_created","frame":3,"id":7,"local":"10.0.0.2:80","remote":"10.0.0.1:40000","listener":"0.0.0.0:80","listener_id":1}"#
        );
        assert!(r.human().contains("10.0.0.2:80 <- 10.0.0.1:40000"));
    }

    #[test]
    fn json_strings_are_escaped() {
        let r = Record {
            ts: Instant::from_micros(0),
            event: Event::App {
                kind: "http_bad_request".into(),
                id: None,
                quad: None,
                detail: "bad \"line\"\n\u{1}".into(),
            },
            frame: None,
        };
        assert!(r.json().contains(r#""detail":"bad \"line\"\n\u0001""#));
    }

    #[test]
    fn rate_limiter_counts_what_it_leaves_out() {
        let mut rl = RateLimiter::new(3, 1);
        let mut out = Vec::new();
        let t0 = Instant::from_secs(100);
        for _ in 0..10 {
            let ev = Event::SynDropped {
                quad: quad(),
                reason: SynDropReason::SynQueueFull,
            };
            rl.admit(t0, None, ev, &mut out);
        }
        assert_eq!(out.len(), 3);
        rl.flush(Instant::from_secs(102), &mut out);
        assert_eq!(
            out.last().map(|r| r.event.clone()),
            Some(Event::Suppressed {
                kind: "syn_dropped",
                count: 7
            })
        );
    }
}
