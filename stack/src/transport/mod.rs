//! The transport layer's own parts: what smoltcp lacks and the mission is about.
//!
//! smoltcp runs one TCP connection well, but it has no backlog, no
//! `accept()`, and it finds a segment's socket by walking every socket. The
//! parts that answer "how does one port serve many connections?" are here,
//! each in the file named after it:
//!
//! * [`demux`] — the 4-tuple table: which connection a segment belongs to,
//!   in one hash lookup however many connections there are;
//! * [`listener`] — listen/accept, the SYN queue, the accept queue and the
//!   backlog, as Linux does them;
//! * [`reuseport`] — who may bind a port: one owner (`AddrInUse` for the
//!   second), or a reuse-port group choosing one member per flow;
//! * [`ports`] — a client's ephemeral port (RFC 6056);
//! * [`timewait`] — TIME-WAIT as a compact record, not a whole socket;
//! * [`syncookie`] — SYN cookies: a SYN answered without keeping state;
//! * [`window`] — the receive window's edge, and the ACKs just past it;
//! * [`nagle`] — Nagle's algorithm as Linux runs it, and `TCP_NODELAY`;
//! * [`udp`] — UDP, which has no connections: bound ports and reader groups.
//!
//! Each part is a data structure with the rules of one idea, taking `now`
//! where time matters: none of them sends a packet or calls the engine.
//! The engine layer asks them and acts on the answer.
//!
//! May use: wire, observe.

pub mod demux;
pub mod listener;
pub mod nagle;
pub mod ports;
pub mod reuseport;
pub mod syncookie;
pub mod timewait;
pub mod udp;
pub mod window;
