//! Ctrl-C, SIGTERM and a closed terminal (SIGHUP): a clean stop.
//!
//! The three signals are blocked in every thread (the mask is inherited by
//! threads started later), and one thread waits for them with `sigwait`.
//! When one arrives, that thread calls the given function in ordinary
//! context — no async-signal-safety puzzles: the stack closes its peers,
//! flushes the event file and removes its device.

use std::io;

fn stop_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
        set
    }
}

/// Blocks SIGINT, SIGTERM and SIGHUP in this thread and every thread it starts
/// afterwards. Call first thing in `main`.
pub fn block() -> io::Result<()> {
    let set = stop_signals();
    // SAFETY: valid set pointer; old mask not requested.
    let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(())
}

/// Starts a thread that waits for SIGINT, SIGTERM or SIGHUP and then runs
/// `on_stop` with the signal's name.
pub fn on_stop(on_stop: impl FnOnce(&'static str) + Send + 'static) -> io::Result<()> {
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let set = stop_signals();
            let mut sig: libc::c_int = 0;
            // SAFETY: valid set and output pointer.
            let r = unsafe { libc::sigwait(&set, &mut sig) };
            if r == 0 {
                on_stop(match sig {
                    libc::SIGINT => "SIGINT",
                    libc::SIGHUP => "SIGHUP",
                    _ => "SIGTERM",
                });
            }
        })
        .map(|_| ())
}
