//! What a serving model is asked to serve: which model (the `--model`
//! flag's values), on which port, with which backlog and how many workers.

use clap::ValueEnum;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Model {
    /// A new thread for every accepted connection.
    ThreadPerConnection,
    /// Serve one connection to the end, then accept the next; the rest wait in the queue.
    OneAtATime,
    /// Netcat-style: stop listening while serving, so the next client is refused.
    Single,
    /// N worker threads all accepting on one listener (--workers).
    Workers,
    /// N listeners in a reuse-port group, one per worker thread (--workers).
    Reuseport,
    /// One thread serving every connection with non-blocking sockets and a poller.
    EventLoop,
}

impl Model {
    pub fn name(self) -> &'static str {
        match self {
            Model::ThreadPerConnection => "thread-per-connection",
            Model::OneAtATime => "one-at-a-time",
            Model::Single => "single",
            Model::Workers => "workers",
            Model::Reuseport => "reuseport",
            Model::EventLoop => "event-loop",
        }
    }
}

/// What a model is asked to serve: the `serve` command's choices.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub model: Model,
    pub port: u16,
    pub backlog: usize,
    /// Threads, for `workers` and `reuseport`.
    pub workers: usize,
}
