//! The connection table's query string: which rows a page shows.
//!
//! `/` and `/connections.json` take the same parameters, each optional:
//!
//! * `state` — one TCP state (`ESTABLISHED`, `TIME-WAIT`, … in any case, or
//!   `ss`'s `estab`, `syn-recv`), or `UNCONN` for unconnected UDP sockets;
//! * `port` — the local port;
//! * `remote` — the remote host (`10.203.80.1`, `fd70:6c61:6200::1`) or one
//!   remote socket (`10.203.80.1:51234`, `[fd70:6c61:6200::1]:51234`);
//! * `limit` — rows per page, 1 to 500 (default 50);
//! * `offset` — matching rows to skip, newest first (default 0).
//!
//! `/events` (the event stream) takes `port` and `remote` too, and `kind`:
//! event names, comma-separated (`kind=syn,socket_created`).
//!
//! Anything else, or a value that does not parse, is an error that says
//! what was wrong: the server answers it with `400`.

use std::net::{IpAddr, SocketAddr};

use portlab::observe::event_stream::EventFilter;
use portlab::observe::table::{Query, Remote, STATES, state_named};

/// The parameters a query may have.
pub const PARAMS: [&str; 5] = ["state", "port", "remote", "limit", "offset"];

/// Reads a query string (what follows `?`, percent-encoded as a form).
pub fn parse(query: &str) -> Result<Query, String> {
    let mut q = Query::default();
    each_param(query, &PARAMS, "; the table takes", |key, value| {
        match key {
            "state" => {
                q.state = Some(state_named(value).ok_or_else(|| {
                    format!(
                        "state '{value}' is not a state; one of: {}",
                        STATES.join(", ")
                    )
                })?)
            }
            "port" => q.port = Some(port(value)?),
            "remote" => q.remote = Some(remote(value)?),
            "limit" => {
                q.limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=Query::MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        format!(
                            "limit '{value}' is not a number of rows from 1 to {}",
                            Query::MAX_LIMIT
                        )
                    })?
            }
            "offset" => {
                q.offset = value
                    .parse::<usize>()
                    .map_err(|_| format!("offset '{value}' is not a number of rows"))?
            }
            // `each_param` lets through only the names in `PARAMS`.
            _ => {}
        }
        Ok(())
    })?;
    Ok(q)
}

/// Hands each parameter of a query string to `f`, its value trimmed; an
/// empty one (an empty field of the page's form) means "any" and is
/// skipped; a name not in `known` is an error that lists them.
fn each_param(
    query: &str,
    known: &[&str],
    takes: &str,
    mut f: impl FnMut(&str, &str) -> Result<(), String>,
) -> Result<(), String> {
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        let value = value.trim();
        if value.is_empty() {
            continue;
        }
        if !known.contains(&&*key) {
            return Err(format!(
                "unknown parameter '{key}'{takes}: {}",
                known.join(", ")
            ));
        }
        f(&key, value)?;
    }
    Ok(())
}

/// The parameters an event stream may have.
pub const EVENT_PARAMS: [&str; 3] = ["kind", "port", "remote"];

/// Reads the query string of `/events`.
pub fn parse_events(query: &str) -> Result<EventFilter, String> {
    let mut f = EventFilter::default();
    each_param(
        query,
        &EVENT_PARAMS,
        " for /events; it takes",
        |key, value| {
            match key {
                "kind" => {
                    let kinds: Vec<String> = value
                        .split(',')
                        .map(|k| k.trim().to_string())
                        .filter(|k| !k.is_empty())
                        .collect();
                    if let Some(bad) = kinds
                        .iter()
                        .find(|k| !k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
                    {
                        return Err(format!(
                            "kind '{bad}' is not an event name (snake_case, like socket_created)"
                        ));
                    }
                    f.kinds = Some(kinds);
                }
                "port" => f.port = Some(port(value)?),
                "remote" => f.remote = Some(remote(value)?),
                _ => {}
            }
            Ok(())
        },
    )?;
    Ok(f)
}

fn port(value: &str) -> Result<u16, String> {
    value
        .parse::<u16>()
        .map_err(|_| format!("port '{value}' is not a port number (0 to 65535)"))
}

fn remote(value: &str) -> Result<Remote, String> {
    if let Ok(a) = value.parse::<SocketAddr>() {
        return Ok(Remote::Addr(a));
    }
    let host = value.trim_start_matches('[').trim_end_matches(']');
    host.parse::<IpAddr>().map(Remote::Host).map_err(|_| {
        format!("remote '{value}' is neither an address (10.203.80.1) nor address:port")
    })
}

/// The query string that asks for `q` (without `you`), for links and the
/// page's polling: the same rows, another offset.
pub fn to_string(q: &Query, offset: usize) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    if let Some(state) = q.state {
        s.append_pair("state", state);
    }
    if let Some(port) = q.port {
        s.append_pair("port", &port.to_string());
    }
    match q.remote {
        Some(Remote::Host(ip)) => {
            s.append_pair("remote", &ip.to_string());
        }
        Some(Remote::Addr(a)) => {
            s.append_pair("remote", &a.to_string());
        }
        None => {}
    }
    if q.limit != Query::DEFAULT_LIMIT {
        s.append_pair("limit", &q.limit.to_string());
    }
    if offset > 0 {
        s.append_pair("offset", &offset.to_string());
    }
    s.finish()
}

/// The query string of the event stream that goes with a page of the
/// table: the same port and remote (a state filters rows, not events).
pub fn events_string(q: &Query) -> String {
    let rows = Query {
        state: None,
        limit: Query::DEFAULT_LIMIT,
        ..q.clone()
    };
    to_string(&rows, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_parameter_is_read_and_written_back() {
        let q = parse("state=estab&port=80&remote=%5Bfd70%3A%3A1%5D%3A5000&limit=20&offset=40")
            .unwrap();
        assert_eq!(q.state, Some("ESTABLISHED"));
        assert_eq!(q.port, Some(80));
        assert_eq!(
            q.remote,
            Some(Remote::Addr("[fd70::1]:5000".parse().unwrap()))
        );
        assert_eq!((q.limit, q.offset), (20, 40));
        assert_eq!(parse(&to_string(&q, 40)).unwrap(), q);
        let host = parse("remote=10.203.80.1&state=").unwrap();
        assert_eq!(
            host.remote,
            Some(Remote::Host("10.203.80.1".parse().unwrap()))
        );
        assert_eq!(host.state, None, "an empty field means any");
        assert_eq!(parse("").unwrap(), Query::default());
    }

    #[test]
    fn an_event_stream_takes_kinds_port_and_remote() {
        let f = parse_events("kind=syn,%20socket_created&port=80&remote=10.203.80.1").unwrap();
        assert_eq!(f.kinds, Some(vec!["syn".into(), "socket_created".into()]));
        assert_eq!(f.port, Some(80));
        assert_eq!(f.remote, Some(Remote::Host("10.203.80.1".parse().unwrap())));
        assert!(
            parse_events("limit=5")
                .unwrap_err()
                .contains("unknown parameter 'limit'")
        );
        assert!(
            parse_events("kind=Syn!")
                .unwrap_err()
                .contains("not an event name")
        );
    }

    #[test]
    fn a_bad_query_says_what_was_wrong() {
        let err = |s: &str| parse(s).unwrap_err();
        assert!(err("state=open").contains("one of: SYN-SENT"));
        assert!(err("port=99999").contains("not a port number"));
        assert!(err("limit=0").contains("from 1 to 500"));
        assert!(err("limit=501").contains("from 1 to 500"));
        assert!(err("offset=-1").contains("not a number"));
        assert!(err("remote=example.org").contains("neither an address"));
        assert!(err("sort=id").contains("unknown parameter 'sort'"));
    }
}
