//! `portlab listen`: one port, several listen calls.
//!
//! The rule behind "only one process can listen on port 80": a second
//! `listen` on a port fails with `AddrInUse` — unless every listener joined a
//! reuse-port group, in which case they share the port and the stack picks a
//! member for each new connection by a hash of its 4-tuple. This command
//! tries it: it opens `--count` listeners and reports each outcome; the ones
//! that succeeded then accept connections and tell each client which
//! listener (and which of its worker threads) accepted it.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use log::info;
use portlab::api::net::{Stack, TcpListener};

use crate::cli::ListenArgs;

pub fn run(args: &ListenArgs, stack: Arc<Stack>) -> Result<(), Box<dyn std::error::Error>> {
    let mut report = String::new();
    let mut listeners: Vec<TcpListener> = Vec::new();
    for i in 1..=args.count.max(1) {
        let result = if args.reuse {
            stack.listen_reuse(args.port, 128)
        } else {
            stack.listen(args.port, 128)
        };
        match result {
            Ok(l) => {
                report.push_str(&format!(
                    "listen #{i} on port {}: ok, listening socket #{}{}\n",
                    args.port,
                    l.id().0,
                    if args.reuse {
                        " (reuse-port group)"
                    } else {
                        ""
                    }
                ));
                listeners.push(l);
            }
            Err(e) => report.push_str(&format!("listen #{i} on port {}: failed: {e}\n", args.port)),
        }
    }
    crate::output::stdout(&report)?;
    if args.duration > 0 {
        let s2 = stack.clone();
        let d = Duration::from_secs(args.duration);
        std::thread::spawn(move || {
            std::thread::sleep(d);
            s2.shutdown(Duration::from_millis(200));
        });
    }
    info!(
        "accepting on {} listener(s); Ctrl-C to stop",
        listeners.len()
    );
    let threads: Vec<_> = listeners
        .into_iter()
        .enumerate()
        .map(|(i, l)| {
            std::thread::Builder::new()
                .name(format!("listener-{}", i + 1))
                .spawn(move || {
                    while let Ok((mut stream, quad)) = l.accept() {
                        let line = format!(
                            "you are {} talking to {}: accepted by listening socket #{}\n",
                            quad.remote,
                            quad.local,
                            l.id().0
                        );
                        let _ = stream.write_all(line.as_bytes());
                    }
                })
        })
        .collect::<Result<_, _>>()?;
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}
