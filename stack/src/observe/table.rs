//! The connection table: every listener and socket, as a snapshot.
//!
//! The kernel's `ss` cannot see a userspace stack's sockets, so the stack
//! reports them itself: the HTML page, `/connections.json` and `portlab ss`
//! all show this table. It is rendered here, once, as JSON and as
//! tab-separated lines (what `portlab ss` reads over the control socket).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use serde::ser::{Serialize, SerializeMap, Serializer};
/// The engine's TCP states, as the index takes them.
pub use smoltcp::socket::tcp::State as TcpState;

use crate::observe::event::{Shown, to_json};
use crate::wire::quad::{Quad, SocketId};

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
    /// SYN-ACKs sent with a SYN cookie, and the ACKs that came back with
    /// a good one (a connection made) or a bad or expired one (a reset).
    pub cookies_sent: u64,
    pub cookies_validated: u64,
    pub cookies_rejected: u64,
}

impl Stats {
    /// Every counter by its name in the JSON (`"stats"`), in order.
    pub fn fields(&self) -> [(&'static str, u64); 16] {
        [
            ("syns", self.syns),
            ("syns_dropped", self.syns_dropped),
            ("handshakes_held", self.handshakes_held),
            ("resets_sent", self.resets_sent),
            ("sockets_created", self.sockets_created),
            ("time_wait_reused", self.time_wait_reused),
            ("packets_in", self.packets_in),
            ("packets_out", self.packets_out),
            ("packets_dropped", self.packets_dropped),
            ("pings", self.pings),
            ("datagrams_in", self.datagrams_in),
            ("port_unreachable", self.port_unreachable),
            ("cookies_sent", self.cookies_sent),
            ("cookies_validated", self.cookies_validated),
            ("cookies_rejected", self.cookies_rejected),
            ("fragments_dropped", self.fragments_dropped),
        ]
    }

    /// The counters a page shows, in a sentence.
    pub fn summary(&self) -> String {
        format!(
            "SYNs seen {}, dropped {}, handshakes held {}, resets sent {}, sockets created {}, \
             TIME-WAIT reused {}, SYN cookies sent {} (validated {}, rejected {})",
            self.syns,
            self.syns_dropped,
            self.handshakes_held,
            self.resets_sent,
            self.sockets_created,
            self.time_wait_reused,
            self.cookies_sent,
            self.cookies_validated,
            self.cookies_rejected
        )
    }
}

/// One row of the connection table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketInfo {
    pub id: SocketId,
    pub quad: Quad,
    /// TCP state, as smoltcp names it (`ESTABLISHED`, `TIME-WAIT`, …): one of [`STATES`].
    pub state: &'static str,
    /// Where it is: `syn queue`, `accept queue`, `application`, `closing`, `time-wait`.
    pub owner: &'static str,
    /// The thread that accepted it, when the application named one.
    pub accepted_by: Option<Arc<str>>,
    /// The thread (or worker) serving it, when the application said so;
    /// otherwise the accepting thread.
    pub served_by: Option<Arc<str>>,
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
    /// Answering SYNs with SYN cookies now (its SYN queue overflowed).
    pub syn_cookies: bool,
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
        to_json(self)
    }

    /// What `portlab ss -s` shows: a `stat\tname\tvalue` line per counter
    /// ([`Stats::fields`]), then a `listen\tlocal\tsyn_queue\taccept_queue\tbacklog\tcookies`
    /// line per listener (cookies: `1` while it answers with SYN cookies).
    pub fn summary_tsv(&self) -> String {
        let mut o = String::new();
        for (name, n) in self.stats.fields() {
            let _ = writeln!(o, "stat\t{name}\t{n}");
        }
        for l in &self.listeners {
            let _ = writeln!(
                o,
                "listen\t{}\t{}\t{}\t{}\t{}",
                l.local,
                l.syn_queue,
                l.accept_queue,
                l.backlog,
                u8::from(l.syn_cookies)
            );
        }
        o
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
pub fn tcp_state(s: TcpState) -> &'static str {
    STATES[usize::from(tcp_state_index(s))]
}

fn tcp_state_index(s: TcpState) -> u8 {
    use smoltcp::socket::tcp::State;
    match s {
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
    }
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

/// A TCP row as the index keeps it: enough to count it and filter it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    pub quad: Quad,
    /// Its position in [`STATES`].
    state: u8,
}

impl Row {
    pub fn state(&self) -> &'static str {
        STATES[usize::from(self.state)]
    }

    /// An open connection: not closing, not in TIME-WAIT.
    fn open(&self) -> bool {
        !matches!(self.state, 3 | 4 | 6..=9)
    }
}

/// The TCP part of the table, kept up to date as connections come, change
/// state and go (the stack feeds it the same events its log shows), so that
/// a page costs what it shows, not what the table holds: counts by state, by
/// local port and by remote host are read off, and the newest rows are the
/// last keys of an ordered map. Only a filtered page walks the rows, and
/// then these small records, not the sockets.
#[derive(Debug, Default)]
pub struct TableIndex {
    rows: BTreeMap<SocketId, Row>,
    states: [usize; STATES.len()],
    /// Open connections per local port (few ports have any).
    ports: HashMap<u16, usize>,
    /// Rows per remote host, and the hosts ranked by that count (largest
    /// first, ties: lower address first).
    remotes: HashMap<IpAddr, usize>,
    ranked: BTreeSet<(Reverse<usize>, IpAddr)>,
}

impl TableIndex {
    /// A new row (or a row that replaces the one with the same id).
    pub fn insert(&mut self, id: SocketId, quad: Quad, state: TcpState) {
        self.remove(id);
        let row = Row {
            quad,
            state: tcp_state_index(state),
        };
        self.count(row, true);
        self.host(quad.remote.ip(), true);
        self.rows.insert(id, row);
    }

    pub fn set_state(&mut self, id: SocketId, state: TcpState) {
        let Some(row) = self.rows.get(&id).copied() else {
            return;
        };
        let new = Row {
            state: tcp_state_index(state),
            ..row
        };
        self.count(row, false);
        self.count(new, true);
        self.rows.insert(id, new);
    }

    pub fn remove(&mut self, id: SocketId) -> Option<Row> {
        let row = self.rows.remove(&id)?;
        self.count(row, false);
        self.host(row.quad.remote.ip(), false);
        Some(row)
    }

    pub fn get(&self, id: SocketId) -> Option<Row> {
        self.rows.get(&id).copied()
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Every row, oldest first.
    pub fn rows(&self) -> impl Iterator<Item = (SocketId, Row)> + '_ {
        self.rows.iter().map(|(id, row)| (*id, *row))
    }

    fn count(&mut self, row: Row, add: bool) {
        let n = &mut self.states[usize::from(row.state)];
        *n = if add { *n + 1 } else { n.saturating_sub(1) };
        if row.open() {
            let port = row.quad.local.port();
            let n = self.ports.entry(port).or_default();
            *n = if add { *n + 1 } else { n.saturating_sub(1) };
            if *n == 0 {
                self.ports.remove(&port);
            }
        }
    }

    fn host(&mut self, ip: IpAddr, add: bool) {
        let n = self.remotes.entry(ip).or_default();
        let old = *n;
        *n = if add { old + 1 } else { old.saturating_sub(1) };
        let new = *n;
        if new == 0 {
            self.remotes.remove(&ip);
        }
        self.ranked.remove(&(Reverse(old), ip));
        if new > 0 {
            self.ranked.insert((Reverse(new), ip));
        }
    }

    /// The counts and the ids of the page that `q` asks for, newest first.
    /// `others` are the rows the index does not keep (UDP sockets, each
    /// with its state and 4-tuple): counted and paged with the rest.
    pub fn select(
        &self,
        q: &Query,
        others: &[(SocketId, &'static str, Quad)],
    ) -> (Counts, Vec<SocketId>) {
        let mut states = self.states;
        for (_, state, _) in others {
            if let Some(i) = STATES.iter().position(|s| s == state) {
                states[i] += 1;
            }
        }
        let keep = |state: &str, quad: &Quad| q.matches(state, quad);
        let mut theirs: Vec<SocketId> = others
            .iter()
            .filter(|(_, state, quad)| keep(state, quad))
            .map(|(id, _, _)| *id)
            .collect();
        theirs.sort_unstable_by(|a, b| b.cmp(a));
        let ours = match (q.state, q.port, q.remote) {
            (None, None, None) => self.rows.len(),
            (Some(state), None, None) => STATES
                .iter()
                .position(|s| *s == state)
                .map_or(0, |i| self.states[i]),
            _ => self
                .rows
                .values()
                .filter(|r| keep(r.state(), &r.quad))
                .count(),
        };
        // The newest matching rows: a merge of the two, by id, from the top.
        let mut tcp = self
            .rows
            .iter()
            .rev()
            .filter(|(_, r)| keep(r.state(), &r.quad))
            .map(|(id, _)| *id)
            .peekable();
        let mut udp = theirs.iter().copied().peekable();
        let mut page = Vec::with_capacity(q.limit.min(self.rows.len() + others.len()));
        let mut skipped = 0;
        while page.len() < q.limit {
            let next = match (tcp.peek(), udp.peek()) {
                (Some(a), Some(b)) if a > b => tcp.next(),
                (Some(_), None) => tcp.next(),
                (_, Some(_)) => udp.next(),
                (None, None) => None,
            };
            let Some(id) = next else {
                break;
            };
            if skipped < q.offset {
                skipped += 1;
            } else {
                page.push(id);
            }
        }
        let mut by_port: Vec<(u16, usize)> = self.ports.iter().map(|(p, n)| (*p, *n)).collect();
        by_port.sort_unstable();
        let counts = Counts {
            total: self.rows.len() + others.len(),
            matched: ours + theirs.len(),
            by_state: STATES
                .iter()
                .zip(states)
                .filter(|(_, n)| *n > 0)
                .map(|(s, n)| (*s, n))
                .collect(),
            by_port,
            by_remote: self
                .ranked
                .iter()
                .take(TOP_REMOTES)
                .map(|(Reverse(n), ip)| (*ip, *n))
                .collect(),
            remote_hosts: self.remotes.len(),
        };
        (counts, page)
    }
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
    /// The page's fields, for a larger object: `"listeners"`, `"counts"`
    /// (`total`, `matched`, `by_state`, `by_port`, `by_remote`,
    /// `remote_hosts`), `"page"` (`offset`, `limit`, `returned`), `"sockets"`
    /// and `"stats"`.
    pub fn serialize_fields<M: SerializeMap>(&self, m: &mut M) -> Result<(), M::Error> {
        m.serialize_entry("listeners", &self.listeners)?;
        m.serialize_entry("counts", &self.counts)?;
        m.serialize_entry(
            "page",
            &PageWindow {
                offset: self.offset,
                limit: self.limit,
                returned: self.sockets.len(),
            },
        )?;
        m.serialize_entry("sockets", &self.sockets)?;
        m.serialize_entry("stats", &self.stats)
    }
}

/// Where a page starts, how long it may be, and how many rows it holds.
struct PageWindow {
    offset: usize,
    limit: usize,
    returned: usize,
}

impl Serialize for PageWindow {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("offset", &self.offset)?;
        m.serialize_entry("limit", &self.limit)?;
        m.serialize_entry("returned", &self.returned)?;
        m.end()
    }
}

impl Serialize for Table {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("listeners", &self.listeners)?;
        m.serialize_entry("sockets", &self.sockets)?;
        m.serialize_entry("stats", &self.stats)?;
        m.end()
    }
}

impl Serialize for Counts {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(6))?;
        m.serialize_entry("total", &self.total)?;
        m.serialize_entry("matched", &self.matched)?;
        m.serialize_entry("by_state", &Pairs(&self.by_state))?;
        m.serialize_entry("by_port", &Pairs(&self.by_port))?;
        let remotes: Vec<RemoteCount> = self
            .by_remote
            .iter()
            .map(|&(h, n)| RemoteCount(h, n))
            .collect();
        m.serialize_entry("by_remote", &remotes)?;
        m.serialize_entry("remote_hosts", &self.remote_hosts)?;
        m.end()
    }
}

/// Counts by key as one JSON object (`{"ESTABLISHED":3}`, `{"80":3}`).
struct Pairs<'a, K>(&'a [(K, usize)]);

impl<K: Serialize> Serialize for Pairs<'_, K> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, n) in self.0 {
            m.serialize_entry(k, n)?;
        }
        m.end()
    }
}

/// A remote host and its rows: `{"host":"10.0.0.1","count":3}`.
struct RemoteCount(IpAddr, usize);

impl Serialize for RemoteCount {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("host", &Shown(self.0))?;
        m.serialize_entry("count", &self.1)?;
        m.end()
    }
}

impl Serialize for ListenerInfo {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(7))?;
        m.serialize_entry("id", &self.id.0)?;
        m.serialize_entry("local", &Shown(self.local))?;
        m.serialize_entry("reuse", &self.reuse)?;
        m.serialize_entry("backlog", &self.backlog)?;
        m.serialize_entry("syn_queue", &self.syn_queue)?;
        m.serialize_entry("accept_queue", &self.accept_queue)?;
        m.serialize_entry("syn_cookies", &self.syn_cookies)?;
        m.end()
    }
}

/// A row: `id`, `local`, `remote`, `state`, `owner`, `accepted_by`,
/// `served_by` (`null` when unknown), `recv_q`, `send_q`.
impl Serialize for SocketInfo {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(9))?;
        m.serialize_entry("id", &self.id.0)?;
        m.serialize_entry("local", &Shown(self.quad.local))?;
        m.serialize_entry("remote", &Shown(self.quad.remote))?;
        m.serialize_entry("state", self.state)?;
        m.serialize_entry("owner", self.owner)?;
        m.serialize_entry("accepted_by", &self.accepted_by.as_deref())?;
        m.serialize_entry("served_by", &self.served_by.as_deref())?;
        m.serialize_entry("recv_q", &self.recv_queue)?;
        m.serialize_entry("send_q", &self.send_queue)?;
        m.end()
    }
}

/// The counters ([`Stats::fields`]), in order, as one object.
impl Serialize for Stats {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let fields = self.fields();
        let mut m = s.serialize_map(Some(fields.len()))?;
        for (name, n) in fields {
            m.serialize_entry(name, &n)?;
        }
        m.end()
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
                syn_cookies: false,
            }],
            sockets: vec![SocketInfo {
                id: SocketId(2),
                quad: Quad::new(
                    "10.0.0.2:80".parse().unwrap(),
                    "10.0.0.1:5000".parse().unwrap(),
                ),
                state: "ESTABLISHED",
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

    fn quad(host: u8, lport: u16, rport: u16) -> Quad {
        Quad::new(
            SocketAddr::from(([10, 0, 0, 2], lport)),
            SocketAddr::from(([10, 0, 1, host], rport)),
        )
    }

    #[test]
    fn a_page_is_the_newest_matching_ids_after_the_offset() {
        let mut index = TableIndex::default();
        for id in [5, 1, 9, 3, 7] {
            index.insert(
                SocketId(id),
                quad(1, 80, 1000 + id as u16),
                TcpState::Established,
            );
        }
        let udp = [(SocketId(2), "UNCONN", quad(1, 7, 0))];
        let ids = |offset, limit| {
            let q = Query {
                offset,
                limit,
                ..Query::default()
            };
            let (counts, page) = index.select(&q, &udp);
            assert_eq!(counts.matched, 6);
            page.into_iter().map(|i| i.0).collect::<Vec<_>>()
        };
        assert_eq!(ids(0, 3), [9, 7, 5]);
        assert_eq!(ids(3, 3), [3, 2, 1], "UDP rows take their place by id");
        assert_eq!(ids(4, 10), [2, 1]);
        assert_eq!(ids(6, 3), [] as [u64; 0]);
        assert_eq!(ids(usize::MAX, usize::MAX), [] as [u64; 0]);
    }

    #[test]
    fn rows_follow_their_connections_state_by_state() {
        let mut index = TableIndex::default();
        let (a, b) = (SocketId(1), SocketId(2));
        index.insert(a, quad(1, 80, 1000), TcpState::Listen);
        index.insert(b, quad(1, 80, 1001), TcpState::Listen);
        index.set_state(a, TcpState::SynReceived);
        index.set_state(a, TcpState::Established);
        index.set_state(b, TcpState::SynReceived);
        let (c, _) = index.select(&Query::default(), &[]);
        assert_eq!(c.by_state, [("SYN-RECEIVED", 1), ("ESTABLISHED", 1)]);
        assert_eq!(c.by_port, [(80, 2)]);
        index.set_state(a, TcpState::FinWait1);
        index.set_state(a, TcpState::TimeWait);
        let (c, _) = index.select(&Query::default(), &[]);
        assert_eq!(c.by_state, [("SYN-RECEIVED", 1), ("TIME-WAIT", 1)]);
        assert_eq!(c.by_port, [(80, 1)], "TIME-WAIT is not open");
        assert_eq!(c.by_remote, [("10.0.1.1".parse().unwrap(), 2)]);
        index.remove(a);
        index.remove(b);
        assert_eq!(index.remove(b), None);
        let (c, page) = index.select(&Query::default(), &[]);
        assert_eq!(c, Counts::default());
        assert!(page.is_empty());
        assert!(index.ranked.is_empty() && index.remotes.is_empty() && index.ports.is_empty());
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
        let q = Query {
            port: Some(80),
            remote: Some(Remote::Host("10.0.1.3".parse().unwrap())),
            ..Query::default()
        };
        let mut index = TableIndex::default();
        let mut id = 0;
        let mut next = || {
            id += 1;
            SocketId(id)
        };
        for host in 0..30u8 {
            for n in 0..=u16::from(host) {
                index.insert(next(), quad(host, 80, 1000 + n), TcpState::Established);
            }
        }
        index.insert(next(), quad(3, 80, 999), TcpState::TimeWait);
        let udp = [(next(), "UNCONN", quad(3, 7, 999))];
        let (counts, page) = index.select(&q, &udp);
        // 1 + 2 + … + 30 connections, one TIME-WAIT, one UDP socket.
        assert_eq!(counts.total, 465 + 2);
        assert_eq!(
            counts.matched,
            4 + 1,
            "host 3's four connections and its TIME-WAIT"
        );
        assert_eq!(page.len(), 5);
        assert_eq!(page[0], SocketId(466), "the newest first");
        assert_eq!(
            counts.by_state,
            [("ESTABLISHED", 465), ("TIME-WAIT", 1), ("UNCONN", 1)]
        );
        assert_eq!(counts.by_port, [(80, 465)], "open TCP only");
        assert_eq!(counts.remote_hosts, 30);
        assert_eq!(counts.by_remote.len(), TOP_REMOTES);
        assert_eq!(counts.by_remote[0], ("10.0.1.29".parse().unwrap(), 30));
        assert_eq!(counts.by_remote[9], ("10.0.1.20".parse().unwrap(), 21));
        let state = Query {
            state: Some("TIME-WAIT"),
            ..Query::default()
        };
        assert_eq!(index.select(&state, &udp).0.matched, 1);
    }
}
