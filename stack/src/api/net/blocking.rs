//! How a call blocks: it locks the running stack, or fails at once if the
//! stack has stopped; it sleeps on its own socket's condition variable
//! until the runtime wakes it or its deadline passes.

use std::io;
use std::sync::MutexGuard;

use crate::api::runtime::{Inner, Shared, Sleepers};

pub(super) fn live(shared: &Shared) -> io::Result<MutexGuard<'_, Inner>> {
    let g = shared.lock();
    if g.stopped {
        return Err(stopped());
    }
    Ok(g)
}

pub(super) fn stopped() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "the stack has stopped")
}

/// Sleeps on `sleepers` until woken or until `deadline`; `TimedOut` past it.
pub(super) fn wait<'a>(
    sleepers: &Sleepers,
    g: MutexGuard<'a, Inner>,
    deadline: Option<std::time::Instant>,
) -> io::Result<MutexGuard<'a, Inner>> {
    let timeout = match deadline {
        None => None,
        Some(d) => match d.checked_duration_since(std::time::Instant::now()) {
            Some(left) if !left.is_zero() => Some(left),
            _ => return Err(io::Error::new(io::ErrorKind::TimedOut, "timed out")),
        },
    };
    let g = sleepers.sleep(g, timeout);
    if g.stopped {
        return Err(stopped());
    }
    Ok(g)
}
