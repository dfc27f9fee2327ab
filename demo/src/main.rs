//! `portlab`: the demonstrations, on a userspace TCP/IP stack.
//!
//! This binary is thin: flags are parsed in `cli`, the HTTP demo lives in
//! `serve` (with `http` and `page`), clean stops in `signals`. Errors end up
//! here, printed as one actionable sentence, with exit code 1 (2 for usage).

mod cli;
mod connect;
mod event_loop;
mod http;
mod inetd;
mod kernel_serve;
mod listen;
mod models;
mod output;
mod page;
mod query;
mod serve;
mod signals;
mod ss;
mod sse;
mod story_page;
mod stream;
mod udp_echo;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use portlab::api::net::Stack;

use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_level.as_deref());
    if let Err(e) = signals::block() {
        eprintln!("portlab: cannot set up signal handling: {e}");
        return ExitCode::from(1);
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("portlab: {e}");
            ExitCode::from(1)
        }
    }
}

/// The human log on standard error: coloured on a terminal (event names by
/// kind: new connections, trouble, endings), plain when redirected or with
/// `NO_COLOR` set.
fn init_logging(level: Option<&str>) {
    use std::io::Write;
    let mut b = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    if let Some(l) = level {
        b.parse_filters(l);
    }
    b.format(|buf, record| {
        let level = buf.default_level_style(record.level());
        let msg = record.args().to_string();
        let (kind, rest) = msg.split_once(' ').unwrap_or((&msg, ""));
        let style = if level == env_logger::fmt::style::Style::new() {
            level // colours are off
        } else {
            event_style(kind)
        };
        writeln!(
            buf,
            "{} {level}{:<5}{level:#} {style}{kind}{style:#} {rest}",
            buf.timestamp_millis(),
            record.level()
        )
    })
    .init();
}

/// The colour of an event name in the human log.
fn event_style(kind: &str) -> env_logger::fmt::style::Style {
    use env_logger::fmt::style::{AnsiColor, Effects, Style};
    match kind {
        "syn" | "socket_created" | "accepted" | "listen" | "port_chosen" => {
            AnsiColor::Cyan.on_default()
        }
        "rst_sent" | "syn_dropped" | "listen_failed" | "http_bad_request" => {
            AnsiColor::Red.on_default()
        }
        "handshake_held"
        | "nagle_held"
        | "packet_dropped"
        | "suppressed"
        | "http_header_timeout" => AnsiColor::Yellow.on_default(),
        "state" => AnsiColor::Blue.on_default(),
        "closed" | "time_wait_expired" | "time_wait_reused" | "listen_closed" => {
            Style::new().effects(Effects::DIMMED)
        }
        _ => Style::new(),
    }
}

fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    match cli.command {
        Command::Serve(args) => {
            let config = args.stack_config()?;
            let stack = Arc::new(Stack::start(config)?);
            log::info!(
                "stack {} up on device {} (kernel side {}): open http://{}:{}/",
                stack.addr(),
                stack.device_name(),
                stack.host_addr(),
                stack.addr(),
                args.port
            );
            log::info!(
                "control socket: {} (portlab ss)",
                stack.control_path().display()
            );
            if let Some(user) = &args.user {
                let (uid, gid) = stack
                    .drop_privileges(user)
                    .map_err(|e| format!("cannot drop privileges to '{user}': {e}"))?;
                log::info!("running as {user} (uid {uid}, gid {gid}) from now on");
            }
            let grace = Duration::from_millis(args.grace_ms);
            let s2 = stack.clone();
            signals::on_stop(move |sig| {
                log::info!(
                    "{sig}: closing connections (up to {} ms), then stopping",
                    grace.as_millis()
                );
                s2.shutdown(grace);
            })?;
            if args.udp_port != 0 {
                udp_echo::start(&stack, args.udp_port, args.udp_readers)?;
            }
            if args.inetd {
                start_inetd(&stack)?;
            }
            let server = serve::Server {
                stack: Some(stack.clone()),
                model: args.model.name(),
                header_timeout: args.header_timeout(),
                max_connections: args.max_connections.max(1),
                active: Default::default(),
                nodelay: args.nodelay.on(),
            };
            let result = models::run(&args, &stack, server);
            stack.shutdown(grace);
            result
        }
        Command::Ss(args) => ss::run(&args),
        Command::KernelServe(args) => kernel_serve::run(&args),
        Command::Listen(args) => {
            let stack = Arc::new(Stack::start(args.device.stack_config()?)?);
            let s2 = stack.clone();
            signals::on_stop(move |_| s2.shutdown(Duration::from_millis(500)))?;
            let result = listen::run(&args, stack.clone());
            stack.shutdown(Duration::from_millis(500));
            result
        }
        Command::Connect(args) => {
            let stack = Arc::new(Stack::start(args.stack_config()?)?);
            let s2 = stack.clone();
            signals::on_stop(move |_| s2.shutdown(Duration::from_millis(200)))?;
            let result = connect::run(&args, stack.clone());
            stack.shutdown(Duration::from_millis(500));
            result
        }
    }
}

/// The inetd services on the stack, one listener and accept thread each.
fn start_inetd(stack: &Arc<Stack>) -> Result<(), Box<dyn std::error::Error>> {
    for service in inetd::ALL {
        let listener = stack.listen(service.port(), 128).map_err(|e| {
            format!(
                "cannot listen on port {} ({}): {e}",
                service.port(),
                service.name()
            )
        })?;
        std::thread::Builder::new()
            .name(service.name().into())
            .spawn(move || {
                inetd::accept_loop(service, || listener.accept().ok().map(|(s, _)| s))
            })?;
    }
    Ok(())
}
