//! The connection table as `ss` and the live page see it: a snapshot of
//! every listener and socket, or one page of it.

use smoltcp::socket::tcp::State as TcpState;

use super::udp::udp_info;
use super::{Conn, NetStack, Owner};
use crate::observe::table::{self, ListenerInfo, Query, SocketInfo, Table, TableIndex, TablePage};
use crate::wire::quad::{Quad, SocketId};

impl NetStack {
    /// A snapshot of every listener and socket (sorted by id).
    pub fn table(&mut self) -> Table {
        debug_assert_eq!(self.index_by_walk(), self.index.rows().collect::<Vec<_>>());
        let listeners = self.listener_infos();
        let mut sockets: Vec<SocketInfo> = Vec::new();
        for (id, conn) in self.conns.iter_mut() {
            if conn.sockets.is_some() {
                sockets.push(conn_info(*id, conn));
            }
        }
        for (quad, tw) in self.demux.time_waits() {
            sockets.push(time_wait_info(tw.id, *quad));
        }
        sockets.extend(self.udp.iter().map(udp_info));
        sockets.sort_by_key(|s| s.id);
        Table {
            listeners,
            sockets,
            stats: self.stats.clone(),
        }
    }

    /// A page of the table: the counts of every row, the visitor's own
    /// row, and the rows `q` asks for, newest first, read off the index
    /// (see [`TableIndex`]): without a filter, or with a state alone, the
    /// page costs what it shows, whatever the table holds.
    pub fn table_page(&mut self, q: &Query) -> TablePage {
        debug_assert_eq!(self.index_by_walk(), self.index.rows().collect::<Vec<_>>());
        let udp: Vec<(SocketId, &'static str, Quad)> = self
            .udp
            .iter()
            .map(|u| {
                let info = udp_info(u);
                (u.id, info.state, info.quad)
            })
            .collect();
        let limit = q.limit.min(Query::MAX_LIMIT);
        let (counts, page) = self.index.select(&Query { limit, ..q.clone() }, &udp);
        // Every id on the page has a row: one allocation, not a growth per row.
        let mut sockets = Vec::with_capacity(page.len());
        sockets.extend(page.iter().filter_map(|id| self.row_info(*id)));
        let you = q.you.and_then(|y| self.row_info(y));
        TablePage {
            listeners: self.listener_infos(),
            counts,
            you,
            sockets,
            offset: q.offset,
            limit,
            stats: self.stats.clone(),
        }
    }

    /// The index's rows as the sockets themselves say (a check, in debug
    /// builds, that the events kept it right): live connections and
    /// TIME-WAIT records, by id.
    pub(super) fn index_by_walk(&self) -> Vec<(SocketId, table::Row)> {
        let mut check = TableIndex::default();
        for (id, conn) in &self.conns {
            if conn.sockets.is_some() && conn.state != TcpState::Closed {
                check.insert(*id, conn.quad, conn.state);
            }
        }
        for (quad, tw) in self.demux.time_waits() {
            check.insert(tw.id, *quad, TcpState::TimeWait);
        }
        check.rows().collect()
    }

    /// The row of a live connection, a TIME-WAIT record or a UDP socket.
    pub(super) fn row_info(&mut self, id: SocketId) -> Option<SocketInfo> {
        if let Some(conn) = self.conns.get_mut(&id).filter(|c| c.sockets.is_some()) {
            return Some(conn_info(id, conn));
        }
        if let Some(row) = self.index.get(id).filter(|r| r.state() == "TIME-WAIT") {
            return Some(time_wait_info(id, row.quad));
        }
        self.udp.iter().find(|u| u.id == id).map(udp_info)
    }

    pub(super) fn listener_infos(&self) -> Vec<ListenerInfo> {
        let mut listeners: Vec<ListenerInfo> = self
            .listeners
            .iter()
            .map(|l| ListenerInfo {
                id: l.id,
                reuse: l.reuse,
                local: l.local,
                backlog: l.backlog,
                syn_queue: l.syn_queue.len(),
                accept_queue: l.accept_queue.len(),
                syn_cookies: self.floods.contains_key(&l.id),
            })
            .collect();
        listeners.sort_by_key(|l| (l.local.port(), l.id));
        listeners
    }
}

/// A live connection's row of the table.
pub(super) fn conn_info(id: SocketId, conn: &mut Conn) -> SocketInfo {
    let owner = match conn.owner {
        Owner::SynQueue => "syn queue",
        Owner::AcceptQueue => "accept queue",
        Owner::App => "application",
        Owner::Orphan => "closing",
    };
    let (recv_queue, send_queue, state) = conn
        .socket()
        .map(|s| (s.recv_queue(), s.send_queue(), table::tcp_state(s.state())))
        .unwrap_or_default();
    SocketInfo {
        id,
        quad: conn.quad,
        state,
        owner,
        accepted_by: conn.accepted_by.clone(),
        served_by: conn.served_by.clone().or_else(|| conn.accepted_by.clone()),
        recv_queue,
        send_queue,
    }
}

pub(super) fn time_wait_info(id: SocketId, quad: Quad) -> SocketInfo {
    SocketInfo {
        id,
        quad,
        state: table::tcp_state(TcpState::TimeWait),
        owner: "time-wait",
        accepted_by: None,
        served_by: None,
        recv_queue: 0,
        send_queue: 0,
    }
}
