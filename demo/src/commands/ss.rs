//! `portlab ss`: a running stack's sockets, like `ss -tan`.
//!
//! Asks the stack's control socket for its connection table and prints it
//! with the columns of Linux's `ss`: for a listener, Recv-Q is the accept
//! queue's current length and Send-Q its backlog; for a connection, the
//! bytes not yet read by the application and not yet acknowledged by the
//! peer. Two columns `ss` cannot have: the stack's socket id and the thread
//! that serves the connection.

use portlab::api::control;

use crate::cli::SsArgs;

/// One row of the table, as the control socket sends it.
#[derive(Debug, PartialEq, Eq)]
pub struct Row {
    pub listening: bool,
    pub udp: bool,
    pub state: String,
    pub recv_q: String,
    pub send_q: String,
    pub local: String,
    pub peer: String,
    pub id: String,
    pub thread: String,
}

/// Parses the tab-separated table (see `portlab::observe::table::Table::tsv`).
pub fn parse(tsv: &str) -> Vec<Row> {
    tsv.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            let [kind, state, recv_q, send_q, local, peer, id, thread] = f[..] else {
                return None;
            };
            Some(Row {
                listening: kind == "listen",
                udp: kind == "udp",
                state: ss_state(state).to_string(),
                recv_q: recv_q.into(),
                send_q: send_q.into(),
                local: local.into(),
                peer: peer.into(),
                id: format!("#{id}"),
                thread: thread.into(),
            })
        })
        .collect()
}

/// The state names `ss` uses.
fn ss_state(s: &str) -> &str {
    match s {
        "ESTABLISHED" => "ESTAB",
        "SYN-RECEIVED" => "SYN-RECV",
        other => other,
    }
}

/// Formats rows as aligned columns under `ss`'s headings.
pub fn format(rows: &[&Row]) -> String {
    let headings = [
        "State",
        "Recv-Q",
        "Send-Q",
        "Local Address:Port",
        "Peer Address:Port",
        "Socket",
        "Thread",
    ];
    let cells: Vec<[&str; 7]> = rows
        .iter()
        .map(|r| {
            [
                r.state.as_str(),
                &r.recv_q,
                &r.send_q,
                &r.local,
                &r.peer,
                &r.id,
                &r.thread,
            ]
        })
        .collect();
    let mut widths = headings.map(str::len);
    for c in &cells {
        for (w, v) in widths.iter_mut().zip(c) {
            *w = (*w).max(v.len());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(headings).chain(cells) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        out.push_str(line.join(" ").trim_end());
        out.push('\n');
    }
    out
}

pub fn run(args: &SsArgs) -> Result<(), Box<dyn std::error::Error>> {
    let stacks = targets(args)?;
    if args.json {
        let [one] = &stacks[..] else {
            return Err(several("--json shows one stack's table", &stacks).into());
        };
        crate::output::stdout(&control::request(&one.path, "sockets json")?)?;
        return Ok(());
    }
    let mut out = String::new();
    for (i, stack) in stacks.iter().enumerate() {
        if args.summary {
            if stacks.len() > 1 {
                out.push_str(&format!("portlab on {}:\n", stack.device));
            }
            out.push_str(&summary(&control::request(&stack.path, "summary tsv")?));
            continue;
        }
        let rows = parse(&control::request(&stack.path, "sockets tsv")?);
        // As ss: -t and -u choose protocols (TCP by default); -l listening
        // sockets only (a bound UDP socket counts as listening), -a everything.
        let (tcp, udp) = (args.tcp || !args.udp, args.udp);
        let shown: Vec<&Row> = rows
            .iter()
            .filter(|r| if r.udp { udp } else { tcp })
            .filter(|r| args.all || (r.listening || r.udp) == args.listening)
            .collect();
        if stacks.len() > 1 {
            if i > 0 {
                out.push('\n');
            }
            out.push_str(&format!(
                "portlab on {} ({}):\n",
                stack.device,
                stack.path.display()
            ));
        }
        out.push_str(&format(&shown));
    }
    crate::output::stdout(&out)?;
    Ok(())
}

/// `ss -s` for a userspace stack: what the stack counted, and where each
/// listener's queues stand (from the control socket's `summary tsv`).
pub fn summary(tsv: &str) -> String {
    let mut stat = std::collections::HashMap::new();
    let mut listeners = String::new();
    for line in tsv.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        match f[..] {
            ["stat", name, n] => {
                stat.insert(name, n);
            }
            ["listen", local, syn_q, accept_q, backlog, cookies] => {
                listeners.push_str(&format!(
                    "Listening on {local}: SYN queue {syn_q}, accept queue {accept_q} of {backlog}{}\n",
                    if cookies == "1" {
                        " - SYN queue full, answering with SYN cookies"
                    } else {
                        ""
                    }
                ));
            }
            _ => {}
        }
    }
    let n = |k: &str| stat.get(k).copied().unwrap_or("0");
    format!(
        "SYNs: {} received, {} dropped; {} handshakes held (accept queue full); {} resets sent\n\
         SYN cookies: {} sent, {} validated, {} rejected\n\
         Sockets: {} created, {} TIME-WAIT reused\n\
         Packets: {} in, {} out, {} dropped ({} IP fragments)\n{listeners}",
        n("syns"),
        n("syns_dropped"),
        n("handshakes_held"),
        n("resets_sent"),
        n("cookies_sent"),
        n("cookies_validated"),
        n("cookies_rejected"),
        n("sockets_created"),
        n("time_wait_reused"),
        n("packets_in"),
        n("packets_out"),
        n("packets_dropped"),
        n("fragments_dropped"),
    )
}

/// The stacks to show: the one `--control` or `--tun` names, else every
/// one running in this network namespace.
fn targets(args: &SsArgs) -> Result<Vec<control::Found>, String> {
    if let Some(path) = &args.control {
        let device = args.tun.clone().unwrap_or_else(|| "?".into());
        return Ok(vec![control::Found {
            device,
            path: path.clone(),
        }]);
    }
    if let Some(tun) = &args.tun {
        return Ok(vec![control::Found {
            device: tun.clone(),
            path: control::default_path(tun),
        }]);
    }
    let found = control::running_here();
    if found.is_empty() {
        return Err(format!(
            "no portlab is running in this network namespace (no live control socket \
             {}/*-{}.sock). Start one ('sudo portlab serve'), run this in the stack's \
             namespace ('ip netns exec NS portlab ss'), or pass --control PATH",
            control::socket_dir().display(),
            control::netns_id()
        ));
    }
    Ok(found)
}

/// Several stacks where one is needed: which they are, and how to choose.
fn several(what: &str, stacks: &[control::Found]) -> String {
    let list: Vec<String> = stacks
        .iter()
        .map(|s| format!("--tun {} ({})", s.device, s.path.display()))
        .collect();
    format!(
        "{what}, and {} are running in this network namespace: choose one with {}",
        stacks.len(),
        list.join(" or ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_parsed_and_aligned_like_ss() {
        let rows = parse(
            "listen\tLISTEN\t0\t511\t0.0.0.0:80\t*\t1\t-\n\
             socket\tESTABLISHED\t0\t0\t10.203.80.2:80\t10.203.80.1:51234\t2\tconn-2\n",
        );
        assert_eq!(rows.len(), 2);
        assert!(rows[0].listening);
        assert_eq!(rows[1].state, "ESTAB");
        let text = format(&rows.iter().collect::<Vec<_>>());
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("State  Recv-Q Send-Q Local Address:Port"));
        assert!(lines[1].starts_with("LISTEN 0      511    0.0.0.0:80"));
        assert!(
            lines[2].ends_with("10.203.80.1:51234 #2     conn-2"),
            "{text}"
        );
    }

    #[test]
    fn the_summary_names_cookies_and_a_flooded_listener() {
        let tsv = "stat\tsyns\t99139\nstat\tcookies_sent\t98113\nstat\tcookies_validated\t51\n\
                   listen\t[::]:80\t1024\t0\t511\t1\nlisten\t[::]:7\t0\t0\t511\t0\n";
        let s = summary(tsv);
        assert!(s.contains("SYNs: 99139 received"), "{s}");
        assert!(
            s.contains("SYN cookies: 98113 sent, 51 validated, 0 rejected"),
            "{s}"
        );
        assert!(s.contains(
            "Listening on [::]:80: SYN queue 1024, accept queue 0 of 511 - SYN queue full, answering with SYN cookies"
        ));
        assert!(s.contains("Listening on [::]:7: SYN queue 0, accept queue 0 of 511\n"));
    }
}
