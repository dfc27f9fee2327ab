//! The API: how programs reach the stack.
//!
//! [`runtime`] is the one thread that owns the device, the clock and the
//! core: it reads packets, feeds them to the engine with the time, writes
//! what comes out, and wakes the application threads whose sockets became
//! ready. [`net`] is what an application in the same process uses: a
//! blocking, std::net-like `Stack`, `TcpListener`, `TcpStream` and
//! `UdpSocket`, each call a message to the runtime. [`control`] is how a
//! program in another process (`portlab ss`) sees a running stack's
//! sockets: a Unix socket that answers with the connection table.
//!
//! This is the only layer that knows about threads and wall-clock time.
//!
//! May use: wire, observe, transport, device, engine, config.

pub mod control;
pub mod net;
pub mod runtime;
