//! Writing results to standard output, as a command-line tool should: a
//! closed pipe (`portlab ss | head -1`) ends the program quietly with success
//! instead of a panic.

use std::io::{self, Write};

/// Writes `text` to standard output; exits with status 0 if the reader has
/// gone away.
pub fn stdout(text: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => std::process::exit(0),
        r => r,
    }
}
