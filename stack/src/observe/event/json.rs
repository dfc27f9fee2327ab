//! An event as one JSON line for scripts: schema version 1, as documented in
//! the folder's essay and README. serde_json writes it; the `Serialize`
//! impls here say which keys each event has.

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::value::RawValue;
use smoltcp::time::Instant;

use super::kinds::{Event, Record, SCHEMA_VERSION};

impl Record {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::quad::{Quad, SocketId};

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
}
