//! The application's view: a blocking, std::net-like API.
//!
//! ```no_run
//! use std::io::{Read, Write};
//! use portlab::api::net::{Stack, StackConfig};
//!
//! let stack = Stack::start(StackConfig::default()).expect("start the stack");
//! let listener = stack.listen(80, 128).expect("listen");
//! loop {
//!     let (mut stream, quad) = listener.accept().expect("accept");
//!     // `quad` is this connection's 4-tuple: one listener, one socket per client.
//!     std::thread::spawn(move || {
//!         let mut buf = [0u8; 1024];
//!         let _ = stream.read(&mut buf);
//!         let _ = stream.write_all(format!("you are {}\n", quad.remote).as_bytes());
//!     });
//! }
//! ```
//!
//! [`Stack`] starts the runtime thread on a TUN device. [`TcpListener::accept`]
//! blocks until the listener's accept queue has a connection and returns a
//! [`TcpStream`] — a new socket — with its [`Quad`](crate::Quad). Streams implement `Read`
//! and `Write`, can be half-closed with `shutdown`, and close when dropped.
//! Every type is `Send + Sync`; blocked threads sleep on a condition variable
//! of their own socket until the runtime wakes them.
//!
//! One idea a file: [`stack`](Stack) starts it and opens sockets; `tcp` and
//! `udp` are the sockets; `poll` waits for many at once; `blocking` is how
//! every call waits.

mod blocking;
mod poll;
mod stack;
mod tcp;
mod udp;

pub use poll::{Interest, PollEvent, Poller, Source};
pub use stack::{
    CONNECT_TIMEOUT, DEFAULT_ADDR, DEFAULT_ADDR6, DEFAULT_PREFIX, DEFAULT_TUN, Stack, StackConfig,
    StartError, random_seed,
};
pub use tcp::{TcpListener, TcpStream};
pub use udp::UdpSocket;
