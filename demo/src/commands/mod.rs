//! The commands, one file each: what `portlab <command>` does once its flags
//! are parsed (`crate::cli`).
//!
//! * [`serve`] — the stack and its HTTP server on port 80 (and, with
//!   flags, the inetd services and UDP echo), served by a serving model;
//! * [`connect`] — the stack as a client: connections out, each with the
//!   ephemeral port the stack chose;
//! * [`listen`] — one port, several listen calls: `AddrInUse`, and
//!   reuse-port groups;
//! * [`ss`] — a running stack's sockets, asked over its control socket;
//! * [`kernel_serve`] — the same HTTP server on the kernel's sockets, the
//!   benchmarks' comparator.
//!
//! Beside them, the services that `serve` (and `kernel-serve`) can start:
//! [`inetd`] (echo, discard, chargen over TCP) and [`udp_echo`].

pub mod connect;
pub mod inetd;
pub mod kernel_serve;
pub mod listen;
pub mod serve;
pub mod ss;
pub mod udp_echo;
