//! What `--so_flags` may say: the stack's addresses and the settings a
//! conformance script pins.
//!
//! packetdrill hands the string of `--so_flags=` to
//! `packetdrill_interface_init` untouched. Ours is a comma-separated list of
//! `key=value` settings (and bare words for switches):
//!
//! | flag | meaning | default |
//! |---|---|---|
//! | `local=IP` | the stack's IPv4 address (packetdrill's `--local_ip`) | `192.168.0.2` |
//! | `gateway=IP` | where off-subnet peers are reached (`--gateway_ip`) | `192.168.0.1` |
//! | `prefix=N` | the IPv4 prefix length | `16` |
//! | `local6=IP` | the stack's IPv6 address | `fd3d:fa7b:d17d::2` |
//! | `overflow=drop\|rst` | a full accept queue: hold the ACK back, or reset | `drop` |
//! | `cookies=auto\|always\|never` | SYN cookies | `auto` |
//! | `syn_queue=N` | SYN queue length per listener | `1024` |
//! | `time_wait=SECS` | how long TIME-WAIT lasts | portlab's `10` |
//! | `nagle=minshall\|classic` | Nagle's rule | `minshall` |
//! | `seed=N` | the seed of ISNs, ports and hashes | `1` |
//! | `complete=PORT:PORT…` | remote ports whose handshakes the interface completes itself (below) | none |
//! | `events` | write the stack's events to standard error, as they happen | off |
//!
//! packetdrill follows one connection at a time (its "socket under test"):
//! it drops any packet the stack sends to another 4-tuple, and cannot
//! acknowledge a SYN-ACK whose ISN it never saw. A script about queues needs
//! other clients too: a SYN the script sends from an explicit port
//! (`< 40001>8080 S 0:0(0) …`) whose port is listed in `complete` has its
//! SYN-ACK acknowledged at once by the interface, as a client in the
//! background would; such a client fills a place in the accept queue.
//!
//! An unknown flag is an error, reported before the script runs.

use std::net::{Ipv4Addr, Ipv6Addr};

use portlab::config::Duration;
use portlab::transport::syncookie::Mode;
use portlab::{NagleRule, NetConfig, Overflow};

/// The settings of one run.
#[derive(Debug, Clone)]
pub struct Flags {
    pub config: NetConfig,
    /// Write every event to standard error as it happens.
    pub events: bool,
    /// Remote ports whose SYN-ACKs the interface acknowledges itself.
    pub complete: Vec<u16>,
}

impl Default for Flags {
    fn default() -> Flags {
        Flags::parse("").unwrap_or_else(|_| unreachable!("the defaults parse"))
    }
}

impl Flags {
    /// Reads `--so_flags`. The error says which flag was wrong and why.
    pub fn parse(text: &str) -> Result<Flags, String> {
        let mut cfg = NetConfig::new(Ipv4Addr::new(192, 168, 0, 2), 16);
        cfg.default_gateway = Some(Ipv4Addr::new(192, 168, 0, 1));
        cfg.addr6 = Some(Ipv6Addr::new(0xfd3d, 0xfa7b, 0xd17d, 0, 0, 0, 0, 2));
        cfg.default_gateway6 = Some(Ipv6Addr::new(0xfd3d, 0xfa7b, 0xd17d, 0x8888, 0, 0, 0, 0));
        cfg.seed = 1;
        // A script sees every event; none is left out by the rate limiter.
        cfg.event_rate = 0;
        let mut events = false;
        let mut complete = Vec::new();
        for flag in text.split(',').map(str::trim).filter(|f| !f.is_empty()) {
            let (key, value) = flag.split_once('=').unwrap_or((flag, ""));
            let bad = |what: &str| format!("--so_flags: {flag}: {what}");
            match key {
                "local" => cfg.addr = value.parse().map_err(|_| bad("not an IPv4 address"))?,
                "gateway" => {
                    cfg.default_gateway =
                        Some(value.parse().map_err(|_| bad("not an IPv4 address"))?)
                }
                "prefix" => {
                    cfg.prefix_len = value
                        .parse()
                        .ok()
                        .filter(|p| *p <= 32)
                        .ok_or_else(|| bad("a prefix length is 0 to 32"))?
                }
                "local6" => {
                    cfg.addr6 = Some(value.parse().map_err(|_| bad("not an IPv6 address"))?)
                }
                "overflow" => {
                    cfg.overflow = match value {
                        "drop" => Overflow::Drop,
                        "rst" => Overflow::Rst,
                        _ => return Err(bad("drop or rst")),
                    }
                }
                "cookies" => {
                    cfg.syn_cookies = match value {
                        "auto" => Mode::Auto,
                        "always" => Mode::Always,
                        "never" => Mode::Never,
                        _ => return Err(bad("auto, always or never")),
                    }
                }
                "syn_queue" => {
                    cfg.syn_queue_cap = value
                        .parse()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| bad("a number of entries, at least 1"))?
                }
                "time_wait" => {
                    let secs: f64 = value
                        .parse()
                        .ok()
                        .filter(|s: &f64| s.is_finite() && *s >= 0.0)
                        .ok_or_else(|| bad("seconds"))?;
                    cfg.time_wait = Duration::from_micros((secs * 1e6) as u64);
                }
                "nagle" => {
                    cfg.nagle = match value {
                        "minshall" => NagleRule::Minshall,
                        "classic" => NagleRule::Classic,
                        _ => return Err(bad("minshall or classic")),
                    }
                }
                "seed" => cfg.seed = value.parse().map_err(|_| bad("a number"))?,
                "complete" => {
                    for port in value.split(':') {
                        complete.push(
                            port.parse()
                                .ok()
                                .filter(|p| *p != 0)
                                .ok_or_else(|| bad("ports 1 to 65535, separated by ':'"))?,
                        );
                    }
                }
                "events" if value.is_empty() => events = true,
                _ => return Err(bad("unknown flag (see packetdrill/src/flags.rs)")),
            }
        }
        Ok(Flags {
            config: cfg,
            events,
            complete,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_set_what_they_name() {
        let f = Flags::parse(
            "local=192.168.7.9, overflow=rst,cookies=never,syn_queue=4,time_wait=0.5,events,complete=40001:40002",
        )
        .unwrap();
        assert_eq!(f.complete, [40001, 40002]);
        assert_eq!(f.config.addr, Ipv4Addr::new(192, 168, 7, 9));
        assert_eq!(f.config.overflow, Overflow::Rst);
        assert_eq!(f.config.syn_cookies, Mode::Never);
        assert_eq!(f.config.syn_queue_cap, 4);
        assert_eq!(f.config.time_wait, Duration::from_millis(500));
        assert!(f.events);
    }

    #[test]
    fn a_wrong_flag_is_named() {
        let e = Flags::parse("overflow=maybe").unwrap_err();
        assert!(e.contains("overflow=maybe"), "{e}");
        let e = Flags::parse("colour=blue").unwrap_err();
        assert!(e.contains("unknown flag"), "{e}");
    }
}
