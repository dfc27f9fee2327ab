//! An event as one line for people: the kind, the socket, the 4-tuple and
//! what happened, in words (`log` adds the time).

use std::fmt::Write as _;

use super::kinds::{Closer, Event, Record};

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
}
