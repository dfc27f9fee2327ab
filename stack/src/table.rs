//! The connection table: every listener and socket, as a snapshot.
//!
//! The kernel's `ss` cannot see a userspace stack's sockets, so the stack
//! reports them itself: the HTML page, `/connections.json` and `portlab ss`
//! all show this table. It is rendered here, once, as JSON and as
//! tab-separated lines (what `portlab ss` reads over the control socket).

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

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

impl Stats {
    /// The counters a page shows, in a sentence.
    pub fn summary(&self) -> String {
        format!(
            "SYNs seen {}, dropped {}, handshakes held {}, resets sent {}, sockets created {}, \
             TIME-WAIT reused {}",
            self.syns,
            self.syns_dropped,
            self.handshakes_held,
            self.resets_sent,
            self.sockets_created,
            self.time_wait_reused
        )
    }
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
        listeners_json(o, &self.listeners);
        o.push(',');
        sockets_json(o, &self.sockets);
        o.push(',');
        stats_json(o, &self.stats);
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

// ----- a page of the table ---------------------------------------------------

/// The state names a row can have: TCP's (as smoltcp and RFC 9293 write
/// them) and `UNCONN` for an unconnected UDP socket.
pub const STATES: [&str; 12] = [
    "SYN-SENT",
    "SYN-RECEIVED",
    "ESTABLISHED",
    "FIN-WAIT-1",
    "FIN-WAIT-2",
    "CLOSE-WAIT",
    "CLOSING",
    "LAST-ACK",
    "TIME-WAIT",
    "CLOSED",
    "LISTEN",
    "UNCONN",
];

/// A TCP state's name in [`STATES`] (as smoltcp's `Display` writes it).
pub fn tcp_state(s: smoltcp::socket::tcp::State) -> &'static str {
    use smoltcp::socket::tcp::State;
    STATES[match s {
        State::SynSent => 0,
        State::SynReceived => 1,
        State::Established => 2,
        State::FinWait1 => 3,
        State::FinWait2 => 4,
        State::CloseWait => 5,
        State::Closing => 6,
        State::LastAck => 7,
        State::TimeWait => 8,
        State::Closed => 9,
        State::Listen => 10,
    }]
}

/// The canonical name of a state as a user may write it: any case, and
/// `ss`'s short forms (`ESTAB`, `SYN-RECV`, `TIME_WAIT`).
pub fn state_named(name: &str) -> Option<&'static str> {
    let up = name.trim().to_ascii_uppercase().replace('_', "-");
    let up = match up.as_str() {
        "ESTAB" => "ESTABLISHED",
        "SYN-RECV" => "SYN-RECEIVED",
        other => other,
    };
    STATES.iter().copied().find(|s| *s == up)
}

/// Whose connections a filter keeps: one remote host, or one remote socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remote {
    Host(IpAddr),
    Addr(SocketAddr),
}

impl Remote {
    pub fn matches(&self, addr: &SocketAddr) -> bool {
        match self {
            Remote::Host(ip) => addr.ip() == *ip,
            Remote::Addr(a) => addr == a,
        }
    }
}

/// Which rows to show: a filter (every part optional), then a page of the
/// matching rows, newest (highest id) first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// Only rows in this state (one of [`STATES`]).
    pub state: Option<&'static str>,
    /// Only rows on this local port.
    pub port: Option<u16>,
    pub remote: Option<Remote>,
    /// Matching rows to skip, newest first.
    pub offset: usize,
    /// Rows to return at most (see [`Query::MAX_LIMIT`]).
    pub limit: usize,
    /// The visitor's own socket: returned on its own, whatever the filter.
    pub you: Option<SocketId>,
}

impl Default for Query {
    fn default() -> Query {
        Query {
            state: None,
            port: None,
            remote: None,
            offset: 0,
            limit: Query::DEFAULT_LIMIT,
            you: None,
        }
    }
}

impl Query {
    pub const DEFAULT_LIMIT: usize = 50;
    /// At most this many rows a page: 500 rows of HTML are about 100 KB.
    pub const MAX_LIMIT: usize = 500;

    /// Whether a row with this state, local port and remote address passes.
    pub fn matches(&self, state: &str, quad: &Quad) -> bool {
        self.state
            .is_none_or(|s| std::ptr::eq(s, state) || s == state)
            && self.port.is_none_or(|p| p == quad.local.port())
            && self.remote.is_none_or(|r| r.matches(&quad.remote))
    }
}

/// Hosts listed by name in [`Counts::by_remote`]; the rest are only counted.
pub const TOP_REMOTES: usize = 10;

/// What the whole table holds, counted without listing it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Rows in the table (TCP connections, TIME-WAIT entries, UDP sockets).
    pub total: usize,
    /// Rows that pass the query's filter.
    pub matched: usize,
    /// Rows per state, in the order of [`STATES`], states with none left out.
    pub by_state: Vec<(&'static str, usize)>,
    /// Open TCP connections (not TIME-WAIT, not closing) per local port.
    pub by_port: Vec<(u16, usize)>,
    /// TCP rows per remote host, the [`TOP_REMOTES`] largest (ties: lower address first).
    pub by_remote: Vec<(IpAddr, usize)>,
    /// Distinct remote hosts of TCP rows.
    pub remote_hosts: usize,
}

/// Counts the rows of the table one at a time.
#[derive(Debug, Default)]
pub struct Counter {
    total: usize,
    matched: usize,
    states: [usize; STATES.len()],
    /// Few ports have connections: a short list beats a map.
    ports: Vec<(u16, usize)>,
    remotes: std::collections::HashMap<IpAddr, usize>,
}

impl Counter {
    /// One row: its state (one of [`STATES`]), its 4-tuple, whether it is
    /// TCP, whether it is still open (not TIME-WAIT, not closing), and
    /// whether it passed the filter.
    pub fn row(&mut self, state: &str, quad: &Quad, tcp: bool, open: bool, matched: bool) {
        self.total += 1;
        self.matched += usize::from(matched);
        // The names come from `STATES` itself: found by address first.
        let i = STATES
            .iter()
            .position(|s| std::ptr::eq(*s, state))
            .or_else(|| STATES.iter().position(|s| *s == state));
        if let Some(i) = i {
            self.states[i] += 1;
        }
        if tcp {
            if open {
                let port = quad.local.port();
                match self.ports.iter_mut().find(|(p, _)| *p == port) {
                    Some((_, n)) => *n += 1,
                    None => self.ports.push((port, 1)),
                }
            }
            *self.remotes.entry(quad.remote.ip()).or_default() += 1;
        }
    }

    pub fn finish(mut self) -> Counts {
        self.ports.sort_unstable();
        let mut by_remote: Vec<(IpAddr, usize)> = self.remotes.into_iter().collect();
        let remote_hosts = by_remote.len();
        let top = TOP_REMOTES.min(by_remote.len());
        let order = |a: &(IpAddr, usize), b: &(IpAddr, usize)| b.1.cmp(&a.1).then(a.0.cmp(&b.0));
        if top > 0 && top < by_remote.len() {
            by_remote.select_nth_unstable_by(top - 1, order);
        }
        by_remote.truncate(top);
        by_remote.sort_by(order);
        Counts {
            total: self.total,
            matched: self.matched,
            by_state: STATES
                .iter()
                .zip(self.states)
                .filter(|(_, n)| *n > 0)
                .map(|(s, n)| (*s, n))
                .collect(),
            by_port: self.ports,
            by_remote,
            remote_hosts,
        }
    }
}

/// The ids of the page's rows: the matching ids, newest first, after
/// `offset`, at most `limit` (chosen in linear time, whatever the table's size).
pub fn page_of(mut ids: Vec<SocketId>, offset: usize, limit: usize) -> Vec<SocketId> {
    let end = offset.saturating_add(limit).min(ids.len());
    if offset >= end {
        return Vec::new();
    }
    if end < ids.len() {
        ids.select_nth_unstable_by(end - 1, |a, b| b.cmp(a));
        ids.truncate(end);
    }
    ids.sort_unstable_by(|a, b| b.cmp(a));
    ids.drain(..offset);
    ids
}

/// A page of the connection table: its counts, the visitor's own row, and
/// the rows the query asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TablePage {
    pub listeners: Vec<ListenerInfo>,
    pub counts: Counts,
    pub you: Option<SocketInfo>,
    pub sockets: Vec<SocketInfo>,
    pub offset: usize,
    pub limit: usize,
    pub stats: Stats,
}

impl TablePage {
    /// Open connections on `port` (what "one of N connections" counts).
    pub fn open_on_port(&self, port: u16) -> usize {
        self.counts
            .by_port
            .iter()
            .find(|(p, _)| *p == port)
            .map_or(0, |(_, n)| *n)
    }
}

impl TablePage {
    /// The page's fields: `"listeners"`, `"counts"` (`total`, `matched`,
    /// `by_state`, `by_port`, `by_remote`, `remote_hosts`), `"page"`
    /// (`offset`, `limit`, `returned`), `"sockets"` and `"stats"`.
    pub fn json_fields(&self, o: &mut String) {
        listeners_json(o, &self.listeners);
        let c = &self.counts;
        let _ = write!(
            o,
            ",\"counts\":{{\"total\":{},\"matched\":{},\"by_state\":{{",
            c.total, c.matched
        );
        for (i, (state, n)) in c.by_state.iter().enumerate() {
            let _ = write!(o, "{}\"{state}\":{n}", if i > 0 { "," } else { "" });
        }
        o.push_str("},\"by_port\":{");
        for (i, (port, n)) in c.by_port.iter().enumerate() {
            let _ = write!(o, "{}\"{port}\":{n}", if i > 0 { "," } else { "" });
        }
        o.push_str("},\"by_remote\":[");
        for (i, (host, n)) in c.by_remote.iter().enumerate() {
            let _ = write!(
                o,
                "{}{{\"host\":\"{host}\",\"count\":{n}}}",
                if i > 0 { "," } else { "" }
            );
        }
        let _ = write!(
            o,
            "],\"remote_hosts\":{}}},\"page\":{{\"offset\":{},\"limit\":{},\"returned\":{}}},",
            c.remote_hosts,
            self.offset,
            self.limit,
            self.sockets.len()
        );
        sockets_json(o, &self.sockets);
        o.push(',');
        stats_json(o, &self.stats);
    }
}

fn listeners_json(o: &mut String, listeners: &[ListenerInfo]) {
    o.push_str("\"listeners\":[");
    for (i, l) in listeners.iter().enumerate() {
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
    o.push(']');
}

fn sockets_json(o: &mut String, sockets: &[SocketInfo]) {
    o.push_str("\"sockets\":[");
    for (i, s) in sockets.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        o.push('{');
        s.json_fields(o);
        o.push('}');
    }
    o.push(']');
}

impl SocketInfo {
    /// The row's fields: `id`, `local`, `remote`, `state`, `owner`,
    /// `accepted_by`, `served_by`, `recv_q`, `send_q`.
    pub fn json_fields(&self, o: &mut String) {
        let _ = write!(o, "\"id\":{},\"local\":", self.id.0);
        push_json_string(o, &self.quad.local.to_string());
        o.push_str(",\"remote\":");
        push_json_string(o, &self.quad.remote.to_string());
        o.push_str(",\"state\":");
        push_json_string(o, &self.state);
        o.push_str(",\"owner\":");
        push_json_string(o, self.owner);
        for (key, v) in [
            ("accepted_by", &self.accepted_by),
            ("served_by", &self.served_by),
        ] {
            let _ = write!(o, ",\"{key}\":");
            match v {
                Some(b) => push_json_string(o, b),
                None => o.push_str("null"),
            }
        }
        let _ = write!(
            o,
            ",\"recv_q\":{},\"send_q\":{}",
            self.recv_queue, self.send_queue
        );
    }
}

fn stats_json(o: &mut String, st: &Stats) {
    let _ = write!(
        o,
        "\"stats\":{{\"syns\":{},\"syns_dropped\":{},\"handshakes_held\":{},\
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

    #[test]
    fn a_page_is_the_newest_matching_ids_after_the_offset() {
        let ids: Vec<SocketId> = [5, 1, 9, 3, 7, 2].map(SocketId).to_vec();
        let ids_of = |v: Vec<SocketId>| v.into_iter().map(|i| i.0).collect::<Vec<_>>();
        assert_eq!(ids_of(page_of(ids.clone(), 0, 3)), [9, 7, 5]);
        assert_eq!(ids_of(page_of(ids.clone(), 3, 3)), [3, 2, 1]);
        assert_eq!(ids_of(page_of(ids.clone(), 4, 10)), [2, 1]);
        assert_eq!(ids_of(page_of(ids.clone(), 6, 3)), [] as [u64; 0]);
        assert_eq!(ids_of(page_of(ids, usize::MAX, usize::MAX)), [] as [u64; 0]);
    }

    #[test]
    fn tcp_states_have_their_engine_names() {
        use smoltcp::socket::tcp::State;
        for st in [
            State::Closed,
            State::Listen,
            State::SynSent,
            State::SynReceived,
            State::Established,
            State::FinWait1,
            State::FinWait2,
            State::CloseWait,
            State::Closing,
            State::LastAck,
            State::TimeWait,
        ] {
            assert_eq!(tcp_state(st), st.to_string());
        }
    }

    #[test]
    fn states_are_read_as_ss_and_rfc_write_them() {
        assert_eq!(state_named("estab"), Some("ESTABLISHED"));
        assert_eq!(state_named("time_wait"), Some("TIME-WAIT"));
        assert_eq!(state_named("SYN-RECV"), Some("SYN-RECEIVED"));
        assert_eq!(state_named("bogus"), None);
    }

    #[test]
    fn counts_cover_every_row_and_name_the_busiest_hosts() {
        let quad = |host: u8, lport: u16, rport: u16| {
            Quad::new(
                SocketAddr::from(([10, 0, 0, 2], lport)),
                SocketAddr::from(([10, 0, 1, host], rport)),
            )
        };
        let q = Query {
            port: Some(80),
            remote: Some(Remote::Host("10.0.1.3".parse().unwrap())),
            ..Query::default()
        };
        let mut c = Counter::default();
        for host in 0..30u8 {
            for n in 0..=u16::from(host) {
                let quad = quad(host, 80, 1000 + n);
                c.row(
                    "ESTABLISHED",
                    &quad,
                    true,
                    true,
                    q.matches("ESTABLISHED", &quad),
                );
            }
        }
        let tw = quad(3, 80, 999);
        c.row("TIME-WAIT", &tw, true, false, q.matches("TIME-WAIT", &tw));
        let udp = quad(3, 7, 999);
        c.row("UNCONN", &udp, false, true, q.matches("UNCONN", &udp));
        let counts = c.finish();
        // 1 + 2 + … + 30 connections, one TIME-WAIT, one UDP socket.
        assert_eq!(counts.total, 465 + 2);
        assert_eq!(
            counts.matched,
            4 + 1,
            "host 3's four connections and its TIME-WAIT"
        );
        assert_eq!(
            counts.by_state,
            [("ESTABLISHED", 465), ("TIME-WAIT", 1), ("UNCONN", 1)]
        );
        assert_eq!(counts.by_port, [(80, 465)], "open TCP only");
        assert_eq!(counts.remote_hosts, 30);
        assert_eq!(counts.by_remote.len(), TOP_REMOTES);
        assert_eq!(counts.by_remote[0], ("10.0.1.29".parse().unwrap(), 30));
        assert_eq!(counts.by_remote[9], ("10.0.1.20".parse().unwrap(), 21));
    }
}
