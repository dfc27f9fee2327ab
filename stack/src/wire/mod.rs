//! The wire: what a packet says, before anyone decides what to do with it.
//!
//! This layer reads bytes and names things. [`quad`] is a connection's
//! identity, the 4-tuple `(local ip:port, remote ip:port)` that every other
//! layer keys on; [`segment`] reads an incoming IP packet just far enough to
//! route it (addresses, ports, flags, a SYN's options) and says why one is
//! dropped; [`checksum`] verifies and fills in the Internet checksum.
//!
//! Nothing here keeps state between packets or knows that sockets exist: a
//! function of this layer takes bytes and returns a description of them, so
//! it can be tested (and fuzzed) with nothing but byte strings.
//!
//! May use: nothing else in the crate.

pub mod checksum;
pub mod quad;
pub mod segment;
