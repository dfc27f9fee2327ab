//! The connection table: every listener and socket, as a snapshot.
//!
//! The kernel's `ss` cannot see a userspace stack's sockets, so the stack
//! reports them itself: the HTML page, `/connections.json` and `portlab ss`
//! all show this table. It is rendered here, once, as JSON and as
//! tab-separated lines (what `portlab ss` reads over the control socket).

use std::fmt::Write as _;
use std::net::SocketAddr;

use crate::event::push_json_string;
use crate::quad::{Quad, SocketId};

/// Counters, for the connection table and the closing note of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub packets_in: u64,
    pub packets_out: u64,
    pub syns: u64,
    pub syns_dropped: u64,
    pub handshakes_held: u64,
    pub resets_sent: u64,
    pub packets_dropped: u64,
    pub fragments_dropped: u64,
    pub sockets_created: u64,
    pub time_wait_reused: u64,
    pub pings: u64,
    pub datagrams_in: u64,
    pub port_unreachable: u64,
}

/// One row of the connection table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketInfo {
    pub id: SocketId,
    pub quad: Quad,
    /// TCP state, as smoltcp names it (`ESTABLISHED`, `TIME-WAIT`, …).
    pub state: String,
    /// Where it is: `syn queue`, `accept queue`, `application`, `closing`, `time-wait`.
    pub owner: &'static str,
    /// The thread that accepted it, when the application named one.
    pub accepted_by: Option<String>,
    /// The thread (or worker) serving it, when the application said so;
    /// otherwise the accepting thread.
    pub served_by: Option<String>,
    /// Bytes waiting to be read / to be acknowledged.
    pub recv_queue: usize,
    pub send_queue: usize,
}

/// A listener's row: its queues, as `ss -ltn` shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerInfo {
    /// The listening socket's id.
    pub id: SocketId,
    /// Whether it is a member of a reuse-port group.
    pub reuse: bool,
    pub local: SocketAddr,
    pub backlog: usize,
    pub syn_queue: usize,
    pub accept_queue: usize,
}

/// A snapshot of every socket: the live connection table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    pub listeners: Vec<ListenerInfo>,
    pub sockets: Vec<SocketInfo>,
    pub stats: Stats,
}

impl Table {
    /// The table as one JSON object: `{"listeners":[…],"sockets":[…],"stats":{…}}`.
    pub fn json(&self) -> String {
        let mut o = String::from("{");
        self.json_fields(&mut o);
        o.push('}');
        o
    }

    /// The table's fields (`"listeners":…,"sockets":…,"stats":…`), for
    /// embedding in a larger object.
    pub fn json_fields(&self, o: &mut String) {
        o.push_str("\"listeners\":[");
        for (i, l) in self.listeners.iter().enumerate() {
            if i > 0 {
                o.push(',');
            }
            let _ = write!(o, "{{\"id\":{},\"local\":", l.id.0);
            push_json_string(o, &l.local.to_string());
            let _ = write!(
                o,
                ",\"reuse\":{},\"backlog\":{},\"syn_queue\":{},\"accept_queue\":{}}}",
                l.reuse, l.backlog, l.syn_queue, l.accept_queue
            );
        }
        o.push_str("],\"sockets\":[");
        for (i, s) in self.sockets.iter().enumerate() {
            if i > 0 {
                o.push(',');
            }
            let _ = write!(o, "{{\"id\":{},\"local\":", s.id.0);
            push_json_string(o, &s.quad.local.to_string());
            o.push_str(",\"remote\":");
            push_json_string(o, &s.quad.remote.to_string());
            o.push_str(",\"state\":");
            push_json_string(o, &s.state);
            o.push_str(",\"owner\":");
            push_json_string(o, s.owner);
            for (key, v) in [("accepted_by", &s.accepted_by), ("served_by", &s.served_by)] {
                let _ = write!(o, ",\"{key}\":");
                match v {
                    Some(b) => push_json_string(o, b),
                    None => o.push_str("null"),
                }
            }
            let _ = write!(
                o,
                ",\"recv_q\":{},\"send_q\":{}}}",
                s.recv_queue, s.send_queue
            );
        }
        let st = &self.stats;
        let _ = write!(
            o,
            "],\"stats\":{{\"syns\":{},\"syns_dropped\":{},\"handshakes_held\":{},\
             \"resets_sent\":{},\"sockets_created\":{},\"time_wait_reused\":{},\
             \"packets_in\":{},\"packets_out\":{},\"packets_dropped\":{},\"pings\":{},\
             \"datagrams_in\":{},\"port_unreachable\":{}}}",
            st.syns,
            st.syns_dropped,
            st.handshakes_held,
            st.resets_sent,
            st.sockets_created,
            st.time_wait_reused,
            st.packets_in,
            st.packets_out,
            st.packets_dropped,
            st.pings,
            st.datagrams_in,
            st.port_unreachable
        );
    }

    /// One line per listener and socket, tab-separated:
    /// `kind state recv_q send_q local peer id thread` (kind: `listen`,
    /// `socket` for TCP connections, `udp`). For a listener, as
    /// Linux's `ss` shows it: Recv-Q is the accept queue's length and Send-Q
    /// the backlog; the peer is `*`.
    pub fn tsv(&self) -> String {
        let mut o = String::new();
        for l in &self.listeners {
            let _ = writeln!(
                o,
                "listen\tLISTEN\t{}\t{}\t{}\t*\t{}\t{}",
                l.accept_queue,
                l.backlog,
                l.local,
                l.id.0,
                if l.reuse { "reuseport" } else { "-" }
            );
        }
        for s in &self.sockets {
            let _ = writeln!(
                o,
                "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                if s.owner == "udp" { "udp" } else { "socket" },
                s.state,
                s.recv_queue,
                s.send_queue,
                s.quad.local,
                if s.owner == "udp" && s.state == "UNCONN" {
                    "*".to_string()
                } else {
                    s.quad.remote.to_string()
                },
                s.id.0,
                s.served_by
                    .as_deref()
                    .unwrap_or("-")
                    .replace(['\t', '\n'], " ")
            );
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listener_queues_show_as_recv_and_send_q() {
        let t = Table {
            listeners: vec![ListenerInfo {
                id: SocketId(1),
                reuse: false,
                local: "0.0.0.0:80".parse().unwrap(),
                backlog: 128,
                syn_queue: 2,
                accept_queue: 5,
            }],
            sockets: vec![SocketInfo {
                id: SocketId(2),
                quad: Quad::new(
                    "10.0.0.2:80".parse().unwrap(),
                    "10.0.0.1:5000".parse().unwrap(),
                ),
                state: "ESTABLISHED".into(),
                owner: "application",
                accepted_by: Some("main".into()),
                served_by: Some("conn-2".into()),
                recv_queue: 0,
                send_queue: 10,
            }],
            stats: Stats::default(),
        };
        assert_eq!(
            t.tsv(),
            "listen\tLISTEN\t5\t128\t0.0.0.0:80\t*\t1\t-\n\
             socket\tESTABLISHED\t0\t10\t10.0.0.2:80\t10.0.0.1:5000\t2\tconn-2\n"
        );
        assert!(t.json().contains(r#""accept_queue":5"#));
    }
}
