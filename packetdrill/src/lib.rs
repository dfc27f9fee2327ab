//! portlab's stack behind packetdrill's shared-object interface.
//!
//! packetdrill (google/packetdrill) tests a TCP stack with scripts: inject
//! this segment at this time, make this system call, expect exactly this
//! segment back. Given `--so_filename=FILE.so` it tests a stack that is not
//! the kernel's, through the table of functions `packetdrill.h` documents.
//! This crate builds that `.so` (`libportlab_packetdrill.so`) over portlab's
//! own stack: our listen/accept, backlog and 4-tuple demux, smoltcp's
//! engine, ports, TIME-WAIT, UDP; no TUN, no root, and packetdrill's clock
//! as the stack's clock.
//!
//! * [`interface`]: the C table, pointers and `errno`, threads and blocking;
//! * [`sockets`]: the socket calls as Linux answers them, by descriptor;
//! * [`host`]: the stack under packetdrill's virtual clock, packets in and out;
//! * [`flags`]: what `--so_flags` may set.
//!
//! `scripts/conformance.sh` builds it and runs `conformance/*.pkt` with it.

pub mod flags;
pub mod host;
pub mod interface;
pub mod sockets;

pub use flags::Flags;
pub use host::{Host, Outbound};
