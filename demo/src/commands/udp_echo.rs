//! The UDP echo service of `portlab serve` (port 7, as RFC 862's echo).
//!
//! UDP has no connections and no accept: a datagram goes to whichever socket
//! is bound to its port. With several readers, every reader binds the same
//! port in a reuse-port group, and the stack picks the reader for each
//! datagram by a hash of its sender — the events (`udp_flow`) show which
//! reader got which sender, and one sender always lands on the same reader.

use std::io::ErrorKind;
use std::sync::Arc;

use log::warn;
use portlab::Event;
use portlab::api::net::{Stack, UdpSocket};

/// Binds the readers and starts a thread for each; returns once all are bound.
pub fn start(
    stack: &Arc<Stack>,
    port: u16,
    readers: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let readers = readers.max(1);
    for i in 1..=readers {
        let socket = if readers == 1 {
            stack.udp_bind(port)
        } else {
            stack.udp_bind_reuse(port)
        }
        .map_err(|e| format!("cannot bind UDP port {port}: {e}"))?;
        let name = format!("udp-reader-{i}");
        stack.emit(Event::App {
            kind: "udp_reader".into(),
            id: Some(socket.id()),
            quad: None,
            detail: format!(
                "{name} reads UDP port {port} with socket #{}",
                socket.id().0
            ),
        });
        socket.set_served_by(&name);
        std::thread::Builder::new()
            .name(name)
            .spawn(move || echo(socket))?;
    }
    Ok(())
}

fn echo(socket: UdpSocket) {
    let mut buf = vec![0u8; 65536];
    loop {
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => {
                if let Err(e) = socket.send_to(&buf[..n], from) {
                    warn!("udp echo to {from}: {e}");
                }
            }
            Err(e) if e.kind() == ErrorKind::NotConnected => return, // the stack stopped
            Err(e) => {
                warn!("udp echo: {e}");
                return;
            }
        }
    }
}
