//! `portlab`: the demonstrations, on a userspace TCP/IP stack.
//!
//! This binary is thin: flags are parsed in `cli`, each command is a file in
//! `commands`, the HTTP server and its pages are in `http`, the serving
//! models in `models`, clean stops in `signals`. Errors end up
//! here, printed as one actionable sentence, with exit code 1 (2 for usage).

mod cli;
mod commands;
mod http;
mod models;
mod output;
mod signals;
mod stream;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use portlab::api::net::Stack;

use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    keep_freed_heap();
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

/// Lets glibc keep up to 1 MiB of freed memory at the top of the heap
/// instead of handing it back to the kernel as soon as 128 KiB are free.
/// Every response allocates and frees a few buffers of tens of KB (the page,
/// the response, a GSO packet); with the default, each request gave them back
/// and took them again as fresh zeroed pages, and the page faults were 17% of
/// the CPU the event-loop model spent on `/` with 50 connections (19,988 ->
/// 26,896 req/s with 8 MiB, 25,453 to 27,974 with 1 MiB).
fn keep_freed_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets a malloc parameter; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 20);
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
        Command::Serve(args) => commands::serve::run(&args),
        Command::Ss(args) => commands::ss::run(&args),
        Command::KernelServe(args) => commands::kernel_serve::run(&args),
        Command::Listen(args) => {
            let stack = Arc::new(Stack::start(args.device.stack_config()?)?);
            let s2 = stack.clone();
            signals::on_stop(move |_| s2.shutdown(Duration::from_millis(500)))?;
            let result = commands::listen::run(&args, stack.clone());
            stack.shutdown(Duration::from_millis(500));
            result
        }
        Command::Connect(args) => {
            let stack = Arc::new(Stack::start(args.stack_config()?)?);
            let s2 = stack.clone();
            signals::on_stop(move |_| s2.shutdown(Duration::from_millis(200)))?;
            let result = commands::connect::run(&args, stack.clone());
            stack.shutdown(Duration::from_millis(500));
            result
        }
    }
}
