//! `portlab connect`: the stack as a client.
//!
//! Opens connections from the stack to servers on the kernel side of the
//! TUN, all at once (every connection is held open until all are up), and
//! reports the local port the stack chose for each — the other half of the
//! story: a client's port is its stack's choice, and only the 4-tuple has to
//! be unique.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Barrier};

use portlab::api::net::Stack;

use crate::cli::ConnectArgs;

/// A place to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub addr: SocketAddr,
    /// `Some(path)`: send an HTTP GET for it.
    pub http_path: Option<String>,
}

/// Parses `http://IP[:PORT][/PATH]` or `IP:PORT`. No DNS.
pub fn parse_target(s: &str) -> Result<Target, String> {
    let no_dns = || {
        format!(
            "'{s}': give an IP address, like http://10.203.80.1:8000/ or 10.203.80.1:22 (no DNS)"
        )
    };
    if let Some(rest) = s.strip_prefix("http://") {
        let (hostport, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let addr = match hostport.parse::<SocketAddr>() {
            Ok(a) => a,
            Err(_) => SocketAddr::new(hostport.parse().map_err(|_| no_dns())?, 80),
        };
        return Ok(Target {
            addr,
            http_path: Some(path.to_string()),
        });
    }
    let addr = s.parse::<SocketAddr>().map_err(|_| no_dns())?;
    Ok(Target {
        addr,
        http_path: None,
    })
}

struct Outcome {
    target: SocketAddr,
    result: Result<(u16, String), String>,
}

pub fn run(args: &ConnectArgs, stack: Arc<Stack>) -> Result<(), Box<dyn std::error::Error>> {
    let targets = args
        .targets
        .iter()
        .map(|t| parse_target(t))
        .collect::<Result<Vec<_>, _>>()?;
    let n = args.connections.max(1);
    let total = targets.len() * n;
    let barrier = Arc::new(Barrier::new(total));
    let mut threads = Vec::new();
    for (t, target) in targets.iter().enumerate() {
        for i in 0..n {
            let stack = stack.clone();
            let barrier = barrier.clone();
            let target = target.clone();
            let local_port = args.local_port;
            let name = format!("client-{}", t * n + i + 1);
            threads.push(
                std::thread::Builder::new()
                    .name(name)
                    .spawn(move || one(&stack, &target, local_port, &barrier))?,
            );
        }
    }
    let outcomes: Vec<Outcome> = threads.into_iter().filter_map(|t| t.join().ok()).collect();
    let mut report = format!("{:<6} {:<22} {:<22} result\n", "conn", "local", "remote");
    let mut ok = 0;
    let mut ports = std::collections::BTreeSet::new();
    for (i, o) in outcomes.iter().enumerate() {
        match &o.result {
            Ok((port, status)) => {
                ok += 1;
                ports.insert(*port);
                let local = SocketAddr::from((stack.addr(), *port));
                let _ = writeln!(
                    report,
                    "{:<6} {:<22} {:<22} {status}",
                    i + 1,
                    local,
                    o.target
                );
            }
            Err(e) => {
                let _ = writeln!(
                    report,
                    "{:<6} {:<22} {:<22} failed: {e}",
                    i + 1,
                    "-",
                    o.target
                );
            }
        }
    }
    let _ = writeln!(
        report,
        "{ok} of {total} connections succeeded, from {} distinct local port(s), algorithm {}",
        ports.len(),
        if args.local_port.is_some() {
            "none (--local-port)"
        } else {
            args.algorithm.algorithm().as_str()
        }
    );
    crate::output::stdout(&report)?;
    if ok == total {
        Ok(())
    } else {
        Err(format!("{} of {total} connections failed", total - ok).into())
    }
}

/// One connection: connect, wait until every connection is up, then talk.
fn one(stack: &Stack, target: &Target, local_port: Option<u16>, barrier: &Barrier) -> Outcome {
    let conn = stack.connect_from(local_port, target.addr);
    barrier.wait();
    let result = match conn {
        Err(e) => Err(e.to_string()),
        Ok(mut stream) => {
            let port = stream.local_addr().port();
            match &target.http_path {
                None => Ok((port, "connected".to_string())),
                Some(path) => http_get(&mut stream, target.addr, path)
                    .map(|status| (port, status))
                    .map_err(|e| e.to_string()),
            }
        }
    };
    Outcome {
        target: target.addr,
        result,
    }
}

/// Sends a GET and returns the response's status line.
fn http_get(
    stream: &mut portlab::api::net::TcpStream,
    host: SocketAddr,
    path: &str,
) -> std::io::Result<String> {
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10)));
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: portlab\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(req.as_bytes())?;
    let mut response = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        response.extend_from_slice(&chunk[..n]);
    }
    let line = response.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line).trim().to_string();
    if line.starts_with("HTTP/") {
        Ok(line)
    } else {
        Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "no HTTP response",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_ip_literals() {
        assert_eq!(
            parse_target("http://10.203.80.1:8000/x").unwrap(),
            Target {
                addr: "10.203.80.1:8000".parse().unwrap(),
                http_path: Some("/x".into())
            }
        );
        assert_eq!(
            parse_target("http://10.203.80.1").unwrap().addr,
            "10.203.80.1:80".parse().unwrap()
        );
        assert_eq!(parse_target("10.203.80.1:22").unwrap().http_path, None);
        assert!(
            parse_target("http://example.com/")
                .unwrap_err()
                .contains("no DNS")
        );
    }
}
