//! The control socket: how `portlab ss` sees a running stack's sockets.
//!
//! The kernel's `ss` and `netstat` cannot see a userspace stack's sockets.
//! A running stack therefore listens on a Unix socket and answers one request
//! per connection, a line:
//!
//! * `sockets tsv` — the connection table as tab-separated lines (`table::Table::tsv`);
//! * `sockets json` — the same as one JSON object (`table::Table::json`);
//! * `summary tsv` — the counters and the listeners' queues (`table::Table::summary_tsv`).
//!
//! The path is [`default_path`]: `/run/portlab/<device>-<netns>.sock`, where
//! `<netns>` is the inode of the network namespace (two stacks in two
//! namespaces may both call their device `portlab0`). It is printed at
//! start-up, removed on a clean exit, and a stale one left by a killed
//! process is replaced at the next start.

use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::api::runtime::Shared;

/// The directory for control sockets: `/run/portlab` as root, else a
/// per-user directory under the runtime or temporary directory.
pub fn socket_dir() -> PathBuf {
    // SAFETY: geteuid(2) cannot fail.
    let uid = unsafe { libc::geteuid() };
    if uid == 0 {
        return PathBuf::from("/run/portlab");
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) => PathBuf::from(d).join("portlab"),
        None => std::env::temp_dir().join(format!("portlab-{uid}")),
    }
}

/// The inode of this process's network namespace (0 if unknown).
pub fn netns_id() -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/net")
        .map(|m| m.ino())
        .unwrap_or(0)
}

/// Where the stack on `device` in this network namespace listens.
pub fn default_path(device: &str) -> PathBuf {
    socket_dir().join(format!("{device}-{}.sock", netns_id()))
}

/// A stack found running in this network namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Its TUN device's name.
    pub device: String,
    /// Its control socket.
    pub path: PathBuf,
}

/// Every stack running in this network namespace, by device name: the live
/// control sockets named `<device>-<netns>.sock` in [`socket_dir`] (and, for
/// a user other than root, in `/run/portlab`, where stacks started with sudo
/// put theirs). A socket nobody answers on (left by a killed process) is
/// not a stack.
pub fn running_here() -> Vec<Found> {
    let suffix = format!("-{}.sock", netns_id());
    let mut dirs = vec![socket_dir()];
    if dirs[0] != Path::new("/run/portlab") {
        dirs.push(PathBuf::from("/run/portlab"));
    }
    let mut found: Vec<Found> = dirs
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flatten()
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let name = entry.file_name().into_string().ok()?;
            let device = name.strip_suffix(&suffix)?.to_string();
            let path = entry.path();
            UnixStream::connect(&path).ok()?;
            Some(Found { device, path })
        })
        .collect();
    found.sort_by(|a, b| a.device.cmp(&b.device));
    found.dedup_by(|a, b| a.device == b.device);
    found
}

/// A running control server; dropping it stops it and removes the socket.
pub struct ControlServer {
    path: PathBuf,
    listener: Arc<UnixListener>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ControlServer {
    /// Binds `path` (replacing a stale socket, refusing a live one) and
    /// serves requests on a thread of its own.
    pub fn start(path: &Path, shared: Arc<Shared>) -> io::Result<ControlServer> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
            if dir == Path::new("/run/portlab") {
                // Sticky and world-writable, like /tmp: a stack that dropped
                // root (--user) can still remove its own socket on exit.
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o1777));
            }
        }
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!(
                        "the control socket {} belongs to another running portlab",
                        path.display()
                    ),
                ));
            }
            // Left behind by a process that was killed: replace it.
            std::fs::remove_file(path)?;
        }
        let listener = Arc::new(UnixListener::bind(path)?);
        let l2 = listener.clone();
        let thread = std::thread::Builder::new()
            .name("portlab-control".into())
            .spawn(move || serve(&l2, &shared))?;
        Ok(ControlServer {
            path: path.to_path_buf(),
            listener,
            thread: Some(thread),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        // Wakes the accept loop with an error so that the thread ends.
        // SAFETY: shutdown(2) on a socket we own.
        unsafe { libc::shutdown(self.listener.as_raw_fd(), libc::SHUT_RDWR) };
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(listener: &UnixListener, shared: &Shared) {
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else {
            return;
        };
        let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
        let mut line = String::new();
        if BufReader::new(io::Read::take(&conn, 256))
            .read_line(&mut line)
            .is_err()
        {
            continue;
        }
        let reply = match line.trim() {
            "sockets tsv" => shared.lock().net.table().tsv(),
            "sockets json" => shared.lock().net.table().json() + "\n",
            "summary tsv" => shared.lock().net.table().summary_tsv(),
            other => format!("error: unknown request '{other}'\n"),
        };
        let _ = conn.write_all(reply.as_bytes());
    }
}

/// Asks the stack listening on `path` for `request`; returns its reply.
pub fn request(path: &Path, request: &str) -> io::Result<String> {
    let mut conn = UnixStream::connect(path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "cannot reach a running portlab at {}: {e}. Is it running, in this network \
                 namespace, with this --tun name? (or pass --control PATH)",
                path.display()
            ),
        )
    })?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    conn.write_all(format!("{request}\n").as_bytes())?;
    conn.shutdown(std::net::Shutdown::Write)?;
    let mut reply = String::new();
    io::Read::read_to_string(&mut conn, &mut reply)?;
    Ok(reply)
}
