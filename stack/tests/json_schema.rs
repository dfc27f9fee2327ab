//! The JSON the stack writes, byte for byte: every event kind of schema
//! version 1 (README, *Events*), the connection table (`portlab ss --json`)
//! and a page of it (`/connections.json`'s stack part). Whatever writes the
//! JSON, these lines must not change unless the schema's version does.

use std::net::SocketAddr;

use portlab::observe::event::{Closer, DropReason, RstReason, SynDropReason, SynOptions};
use portlab::observe::table::{
    Counts, ListenerInfo, SocketInfo, Stats, Table, TablePage, TcpState,
};
use portlab::time::Instant;
use portlab::{Event, Quad, Record, SocketId};

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn quad() -> Quad {
    Quad::new(addr("10.0.0.2:80"), addr("10.0.0.1:40000"))
}

fn quad6() -> Quad {
    Quad::new(addr("[fd70::2]:80"), addr("[fd70::1]:40001"))
}

/// One event of every kind, with the odd values a schema must survive
/// (strings that need escaping, IPv6, a frame number, none).
fn every_event() -> Vec<Record> {
    let id = SocketId(7);
    let events = vec![
        Event::StackStarted {
            device: "portlab0".into(),
            addr: "10.0.0.2".into(),
            host: "10.0.0.1".into(),
            mtu: 1500,
            seed: 42,
        },
        Event::StackStopped {
            closed: 3,
            reset: 1,
        },
        Event::Listen {
            id: SocketId(1),
            local: addr("0.0.0.0:80"),
            backlog: 128,
            reuse: false,
        },
        Event::ListenFailed {
            local: addr("[::]:80"),
            reason: "address in use",
        },
        Event::ListenClosed {
            id: SocketId(1),
            local: addr("0.0.0.0:80"),
            reset: 2,
        },
        Event::Syn {
            quad: quad(),
            isn: 4_000_000_000,
            options: SynOptions {
                mss: Some(1460),
                window_scale: Some(7),
                sack_permitted: true,
                timestamp: Some(99),
            },
        },
        Event::Syn {
            quad: quad6(),
            isn: 1,
            options: SynOptions::default(),
        },
        Event::SynDropped {
            quad: quad(),
            reason: SynDropReason::SynQueueFull,
        },
        Event::HandshakeHeld { id, quad: quad() },
        Event::NagleHeld {
            id,
            quad: quad(),
            bytes: 212,
            until_ack: 9000,
            rule: "minshall",
        },
        Event::NagleReleased {
            id,
            quad: quad(),
            bytes: 212,
            held_us: 40_000,
        },
        Event::RstSent {
            quad: quad(),
            id: None,
            reason: RstReason::NoListener,
        },
        Event::RstSent {
            quad: quad(),
            id: Some(id),
            reason: RstReason::Aborted,
        },
        Event::SocketCreated {
            id,
            quad: quad(),
            listener: Some((SocketId(1), addr("0.0.0.0:80"))),
            cookie: false,
        },
        Event::SocketCreated {
            id,
            quad: quad(),
            listener: Some((SocketId(1), addr("0.0.0.0:80"))),
            cookie: true,
        },
        Event::SocketCreated {
            id,
            quad: quad6(),
            listener: None,
            cookie: false,
        },
        Event::SynFlood {
            id: SocketId(1),
            local: addr("[::]:80"),
            phase: "end",
            cookies_sent: 97091,
            validated: 49,
            rejected: 0,
            duration_ms: 5120,
        },
        Event::PortChosen {
            quad: quad(),
            algorithm: "double-hash",
            tried: 1,
            rejected: vec![],
        },
        Event::PortChosen {
            quad: quad(),
            algorithm: "double-hash",
            tried: 3,
            rejected: vec![(40000, "4-tuple in use"), (40001, "in \"time-wait\"")],
        },
        Event::Accepted {
            id,
            quad: quad(),
            queued_us: 12,
            by: Some("worker-1".into()),
        },
        Event::Accepted {
            id,
            quad: quad(),
            queued_us: 0,
            by: None,
        },
        Event::State {
            id,
            quad: quad(),
            from: TcpState::SynReceived,
            to: TcpState::Established,
        },
        Event::Closed {
            id,
            quad: quad(),
            by: Closer::Remote,
        },
        Event::TimeWaitExpired { id, quad: quad() },
        Event::TimeWaitReused { id, quad: quad() },
        Event::PacketDropped {
            reason: DropReason::BadChecksum,
            quad: None,
        },
        Event::PacketDropped {
            reason: DropReason::InexactReset,
            quad: Some(quad()),
        },
        Event::UdpBind {
            id: SocketId(3),
            local: addr("[::]:7"),
            reuse: true,
        },
        Event::UdpClosed {
            id: SocketId(3),
            local: addr("[::]:7"),
            received: 10,
            sent: 9,
        },
        Event::UdpFlow {
            id: SocketId(3),
            quad: quad(),
        },
        Event::PortUnreachable { quad: quad() },
        Event::App {
            kind: "http_bad_request".into(),
            id: Some(id),
            quad: Some(quad()),
            detail: "bad \"line\"\\ \n\r\t\u{1}\u{1f} é".into(),
        },
        Event::App {
            kind: "not_listening".into(),
            id: None,
            quad: None,
            detail: String::new(),
        },
        Event::Suppressed {
            kind: "syn_dropped",
            count: 1234,
        },
    ];
    events
        .into_iter()
        .enumerate()
        .map(|(i, event)| Record {
            ts: Instant::from_micros(1_700_000_000_000_000i64 + i as i64 * 250_001),
            event,
            frame: (i % 3 == 0).then_some(i as u64 + 1),
        })
        .collect()
}

fn socket(
    id: u64,
    q: Quad,
    state: &'static str,
    owner: &'static str,
    by: Option<&str>,
) -> SocketInfo {
    SocketInfo {
        id: SocketId(id),
        quad: q,
        state,
        owner,
        accepted_by: by.map(Into::into),
        served_by: by.map(|b| format!("{b} \"x\"").into()),
        recv_queue: 5,
        send_queue: 4400,
    }
}

fn table() -> Table {
    Table {
        listeners: vec![ListenerInfo {
            id: SocketId(1),
            reuse: false,
            local: addr("[::]:80"),
            backlog: 511,
            syn_queue: 2,
            accept_queue: 1,
            syn_cookies: true,
        }],
        sockets: vec![
            socket(7, quad(), "ESTABLISHED", "application", Some("conn-7")),
            socket(8, quad6(), "TIME-WAIT", "time-wait", None),
        ],
        stats: Stats {
            syns: 10,
            cookies_sent: 3,
            packets_in: 99,
            ..Stats::default()
        },
    }
}

fn page() -> TablePage {
    let t = table();
    TablePage {
        listeners: t.listeners.clone(),
        counts: Counts {
            total: 2,
            matched: 1,
            by_state: vec![("ESTABLISHED", 1), ("TIME-WAIT", 1)],
            by_port: vec![(80, 1)],
            by_remote: vec![
                ("10.0.0.1".parse().unwrap(), 1),
                ("fd70::1".parse().unwrap(), 1),
            ],
            remote_hosts: 2,
        },
        you: t.sockets.first().cloned(),
        sockets: t.sockets.clone(),
        offset: 0,
        limit: 50,
        stats: t.stats.clone(),
    }
}

fn page_json(p: &TablePage) -> String {
    struct Whole<'a>(&'a TablePage);
    impl serde::Serialize for Whole<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeMap;
            let mut m = s.serialize_map(None)?;
            self.0.serialize_fields(&mut m)?;
            m.end()
        }
    }
    portlab::observe::event::to_json(&Whole(p))
}

/// Schema version 1, as the stack writes it.
const EVENTS: &[&str] = &[
    r##"{"v":1,"ts":1700000000.000000,"event":"stack_started","frame":1,"device":"portlab0","addr":"10.0.0.2","host":"10.0.0.1","mtu":1500,"seed":42}"##,
    r##"{"v":1,"ts":1700000000.250001,"event":"stack_stopped","closed":3,"reset":1}"##,
    r##"{"v":1,"ts":1700000000.500002,"event":"listen","id":1,"local":"0.0.0.0:80","backlog":128,"reuse":false}"##,
    r##"{"v":1,"ts":1700000000.750003,"event":"listen_failed","frame":4,"local":"[::]:80","reason":"address in use"}"##,
    r##"{"v":1,"ts":1700000001.000004,"event":"listen_closed","id":1,"local":"0.0.0.0:80","reset":2}"##,
    r##"{"v":1,"ts":1700000001.250005,"event":"syn","local":"10.0.0.2:80","remote":"10.0.0.1:40000","isn":4000000000,"mss":1460,"wscale":7,"sack_permitted":true,"tsval":99}"##,
    r##"{"v":1,"ts":1700000001.500006,"event":"syn","frame":7,"local":"[fd70::2]:80","remote":"[fd70::1]:40001","isn":1,"sack_permitted":false}"##,
    r##"{"v":1,"ts":1700000001.750007,"event":"syn_dropped","local":"10.0.0.2:80","remote":"10.0.0.1:40000","reason":"syn queue full"}"##,
    r##"{"v":1,"ts":1700000002.000008,"event":"handshake_held","id":7,"local":"10.0.0.2:80","remote":"10.0.0.1:40000","reason":"accept queue full"}"##,
    r##"{"v":1,"ts":1700000002.250009,"event":"nagle_held","frame":10,"id":7,"local":"10.0.0.2:80","remote":"10.0.0.1:40000","bytes":212,"until_ack":9000,"rule":"minshall"}"##,
    r##"{"v":1,"ts":1700000002.500010,"event":"nagle_released","id":7,"local":"10.0.0.2:80","remote":"10.0.0.1:40000","bytes":212,"held_us":40000}"##,
    r##"{"v":1,"ts":1700000002.750011,"event":"rst_sent","local":"10.0.0.2:80","remote":"10.0.0.1:40000","reason":"no listener on port"}"##,
    r##"{"v":1,"ts":1700000003.000012,"event":"rst_sent","frame":13,"id":7,"local":"10.0.0.2:80","remote":"10.0.0.1:40000","reason":"aborted by application"}"##,
    r##"{"v":1,"ts":1700000003.250013,"event":"socket_created","id":7,"local":"10.0.0.2:80","remote":"10.0.0.1:40000","listener":"0.0.0.0:80","listener_id":1}"##,
    r##"{"v":1,"ts":1700000003.500014,"event":"socket_created","id":7,"local":"10.0.0.2:80","remote":"10.0.0.1:40000","listener":"0.0.0.0:80","listener_id":1,"cookie":true}"##,
    r##"{"v":1,"ts":1700000003.750015,"event":"socket_created","frame":16,"id":7,"local":"[fd70::2]:80","remote":"[fd70::1]:40001","origin":"connect"}"##,
    r##"{"v":1,"ts":1700000004.000016,"event":"syn_flood","id":1,"local":"[::]:80","phase":"end","cookies_sent":97091,"validated":49,"rejected":0,"duration_ms":5120}"##,
    r##"{"v":1,"ts":1700000004.250017,"event":"port_chosen","local":"10.0.0.2:80","remote":"10.0.0.1:40000","algorithm":"double-hash","tried":1,"rejected":[]}"##,
    r##"{"v":1,"ts":1700000004.500018,"event":"port_chosen","frame":19,"local":"10.0.0.2:80","remote":"10.0.0.1:40000","algorithm":"double-hash","tried":3,"rejected":[{"port":40000,"reason":"4-tuple in use"},{"port":40001,"reason":"in \"time-wait\""}]}"##,
    r##"{"v":1,"ts":1700000004.750019,"event":"accepted","id":7,"local":"10.0.0.2:80","remote":"10.0.0.1:40000","queued_us":12,"by":"worker-1"}"##,
    r##"{"v":1,"ts":1700000005.000020,"event":"accepted","id":7,"local":"10.0.0.2:80","remote":"10.0.0.1:40000","queued_us":0}"##,
    r##"{"v":1,"ts":1700000005.250021,"event":"state","frame":22,"id":7,"local":"10.0.0.2:80","remote":"10.0.0.1:40000","from":"SYN-RECEIVED","to":"ESTABLISHED"}"##,
    r##"{"v":1,"ts":1700000005.500022,"event":"closed","id":7,"local":"10.0.0.2:80","remote":"10.0.0.1:40000","by":"remote"}"##,
    r##"{"v":1,"ts":1700000005.750023,"event":"time_wait_expired","id":7,"local":"10.0.0.2:80","remote":"10.0.0.1:40000"}"##,
    r##"{"v":1,"ts":1700000006.000024,"event":"time_wait_reused","frame":25,"id":7,"local":"10.0.0.2:80","remote":"10.0.0.1:40000"}"##,
    r##"{"v":1,"ts":1700000006.250025,"event":"packet_dropped","reason":"bad checksum"}"##,
    r##"{"v":1,"ts":1700000006.500026,"event":"packet_dropped","local":"10.0.0.2:80","remote":"10.0.0.1:40000","reason":"reset not at the expected sequence number"}"##,
    r##"{"v":1,"ts":1700000006.750027,"event":"udp_bind","frame":28,"id":3,"local":"[::]:7","reuse":true}"##,
    r##"{"v":1,"ts":1700000007.000028,"event":"udp_closed","id":3,"local":"[::]:7","received":10,"sent":9}"##,
    r##"{"v":1,"ts":1700000007.250029,"event":"udp_flow","id":3,"local":"10.0.0.2:80","remote":"10.0.0.1:40000"}"##,
    r##"{"v":1,"ts":1700000007.500030,"event":"port_unreachable","frame":31,"local":"10.0.0.2:80","remote":"10.0.0.1:40000"}"##,
    r##"{"v":1,"ts":1700000007.750031,"event":"http_bad_request","id":7,"local":"10.0.0.2:80","remote":"10.0.0.1:40000","detail":"bad \"line\"\\ \n\r\t\u0001\u001f é"}"##,
    r##"{"v":1,"ts":1700000008.000032,"event":"not_listening","detail":""}"##,
    r##"{"v":1,"ts":1700000008.250033,"event":"suppressed","frame":34,"kind":"syn_dropped","count":1234}"##,
];

const TABLE: &str = r##"{"listeners":[{"id":1,"local":"[::]:80","reuse":false,"backlog":511,"syn_queue":2,"accept_queue":1,"syn_cookies":true}],"sockets":[{"id":7,"local":"10.0.0.2:80","remote":"10.0.0.1:40000","state":"ESTABLISHED","owner":"application","accepted_by":"conn-7","served_by":"conn-7 \"x\"","recv_q":5,"send_q":4400},{"id":8,"local":"[fd70::2]:80","remote":"[fd70::1]:40001","state":"TIME-WAIT","owner":"time-wait","accepted_by":null,"served_by":null,"recv_q":5,"send_q":4400}],"stats":{"syns":10,"syns_dropped":0,"handshakes_held":0,"resets_sent":0,"sockets_created":0,"time_wait_reused":0,"packets_in":99,"packets_out":0,"packets_dropped":0,"pings":0,"datagrams_in":0,"port_unreachable":0,"cookies_sent":3,"cookies_validated":0,"cookies_rejected":0,"fragments_dropped":0}}"##;

const PAGE: &str = r##"{"listeners":[{"id":1,"local":"[::]:80","reuse":false,"backlog":511,"syn_queue":2,"accept_queue":1,"syn_cookies":true}],"counts":{"total":2,"matched":1,"by_state":{"ESTABLISHED":1,"TIME-WAIT":1},"by_port":{"80":1},"by_remote":[{"host":"10.0.0.1","count":1},{"host":"fd70::1","count":1}],"remote_hosts":2},"page":{"offset":0,"limit":50,"returned":2},"sockets":[{"id":7,"local":"10.0.0.2:80","remote":"10.0.0.1:40000","state":"ESTABLISHED","owner":"application","accepted_by":"conn-7","served_by":"conn-7 \"x\"","recv_q":5,"send_q":4400},{"id":8,"local":"[fd70::2]:80","remote":"[fd70::1]:40001","state":"TIME-WAIT","owner":"time-wait","accepted_by":null,"served_by":null,"recv_q":5,"send_q":4400}],"stats":{"syns":10,"syns_dropped":0,"handshakes_held":0,"resets_sent":0,"sockets_created":0,"time_wait_reused":0,"packets_in":99,"packets_out":0,"packets_dropped":0,"pings":0,"datagrams_in":0,"port_unreachable":0,"cookies_sent":3,"cookies_validated":0,"cookies_rejected":0,"fragments_dropped":0}}"##;

#[test]
fn every_event_kind_is_written_as_schema_version_1_says() {
    let records = every_event();
    assert_eq!(records.len(), EVENTS.len());
    for (r, want) in records.iter().zip(EVENTS) {
        assert_eq!(&r.json(), want, "{:?}", r.event);
    }
}

#[test]
fn the_table_and_a_page_of_it_are_written_as_before() {
    assert_eq!(table().json(), TABLE);
    assert_eq!(page_json(&page()), PAGE);
}
