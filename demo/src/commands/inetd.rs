//! The classic inetd services over TCP, as a Unix machine offered them:
//! echo (port 7: every byte comes back), discard (9: every byte is read and
//! dropped) and chargen (19: an endless stream of characters).
//!
//! With `portlab serve --inetd` they run beside the HTTP server — port 7 then
//! carries TCP echo and UDP echo at once, two protocols with their own
//! sockets on one port number — and the benchmarks use them: echo for the
//! 1-byte ping-pong latency, discard and chargen for bulk transfer in each
//! direction. The same code serves the kernel's sockets in
//! `portlab kernel-serve`, written against [`Stream`].

use std::io::ErrorKind;
use std::thread;

use log::warn;

use crate::stream::{CHUNK, Stream};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    Echo,
    Discard,
    Chargen,
}

pub const ALL: [Service; 3] = [Service::Echo, Service::Discard, Service::Chargen];

impl Service {
    pub fn port(self) -> u16 {
        match self {
            Service::Echo => 7,
            Service::Discard => 9,
            Service::Chargen => 19,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Service::Echo => "echo",
            Service::Discard => "discard",
            Service::Chargen => "chargen",
        }
    }

    /// Serves one connection until the peer closes or an error.
    pub fn serve(self, stream: impl Stream) {
        let mut buf = vec![0u8; CHUNK];
        match self {
            Service::Echo => loop {
                match stream.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if stream.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => return,
                }
            },
            // Dropped where they arrive: nothing is copied out, and on
            // portlab this thread sleeps until the end of the stream.
            Service::Discard => {
                if stream.sink().is_err() {
                    return;
                }
            }
            Service::Chargen => {
                // RFC 864's rotating lines of 72 printable characters.
                for (i, b) in buf.iter_mut().enumerate() {
                    let line = i / 74;
                    let col = i % 74;
                    *b = match col {
                        72 => b'\r',
                        73 => b'\n',
                        _ => b' ' + ((line + col) % 95) as u8,
                    };
                }
                while stream.write_all(&buf).is_ok() {}
                return;
            }
        }
        // The peer closed its side: close ours.
        let _ = stream.write_all_then_shutdown(&[]);
    }
}

/// Accepts connections with `accept` until it returns `None`, serving each
/// on a thread of its own.
pub fn accept_loop<S: Stream>(service: Service, mut accept: impl FnMut() -> Option<S>) {
    while let Some(stream) = accept() {
        let spawned = thread::Builder::new()
            .name(format!("{}-{}", service.name(), stream.number()))
            .spawn(move || service.serve(stream));
        if let Err(e) = spawned {
            warn!(
                "cannot start a thread for a {} connection: {e}",
                service.name()
            );
        }
    }
}
