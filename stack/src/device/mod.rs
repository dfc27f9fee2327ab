//! The device layer: where packets enter and leave the process.
//!
//! [`tun`] opens the TUN device (with the tun-tap package) and configures
//! it; it is the only code that touches the descriptor. [`packet_io`] is how
//! the runtime thread waits for packets and moves them in batches, through
//! [`uring`] (io_uring: many reads and writes for one system call) or a
//! system call per packet. With `--offload` the device carries a virtio
//! header, and [`gso`] splits the kernel's large segments and merges ours.
//! [`writer`] is an application thread's own batch of writes.
//! [`packet_pool`] reuses packet buffers per thread. Two middlewares sit on
//! the path of every packet: [`pcap`] writes the capture for Wireshark, and
//! [`faults`] is a lossy link (drop, duplicate, reorder, corrupt), because
//! the lab kernel has no `tc netem`.
//!
//! Nothing here knows TCP's state: it moves whole IP packets, and reads
//! headers only where offload needs them (checksums, segment boundaries).
//!
//! May use: wire, config.

pub mod faults;
pub mod gso;
pub mod packet_io;
pub mod packet_pool;
pub mod pcap;
pub mod tun;
pub mod uring;
pub mod writer;
