//! The engine: the sans-IO core that ties the layers together and drives
//! smoltcp.
//!
//! [`netstack`] holds [`NetStack`](netstack::NetStack): packets and the
//! time go in, packets and events come out, and it never touches a device or
//! a clock. It asks the transport layer where each segment goes (a known
//! 4-tuple, a listener, TIME-WAIT, UDP, nowhere) and hands a connection's
//! segments to smoltcp through [`driver`], which gives the engine exactly
//! one connection's socket set and exactly one packet, so that a packet's
//! cost does not grow with the number of connections. [`buffers`] are the
//! socket buffers, which cost nothing until used; [`timers`] keeps every
//! connection's next deadline in order, so that a wake-up does not scan
//! them either.
//!
//! May use: wire, observe, transport, device::packet_pool, config.

pub mod buffers;
pub mod driver;
pub mod netstack;
pub mod timers;
