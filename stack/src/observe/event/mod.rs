//! Everything the stack reports, as data.
//!
//! The stack never formats log text where something happens. It records an
//! [`Event`] — a typed value — and the event is rendered in exactly one place,
//! this folder: [`Record::human`] (in `human.rs`) gives the line written
//! through the `log` crate, and [`Record::json`] (in `json.rs`) gives one
//! JSON object per line for scripts, written by serde_json.
//!
//! # JSON schema, version 1
//!
//! Every line is one object with these keys:
//!
//! * `"v"`: always `1` (this schema's version);
//! * `"ts"`: Unix time in seconds, a float with microsecond precision;
//! * `"event"`: the snake_case name of the event (`"syn"`, `"socket_created"`, …);
//! * where they apply: `"id"` (the socket's number), `"local"` and `"remote"`
//!   (`"ip:port"` strings), and the event's own fields.
//!
//! Within version 1 fields may be added, never removed or renamed. README.md
//! lists every event and field.
//!
//! # Rate limiting
//!
//! A SYN flood must not turn into a flood of log lines. Each event kind has a
//! token bucket ([`RateLimiter`], in `rate_limit.rs`); past it, events of that
//! kind are counted and a `suppressed` event later says how many were left out.

mod human;
mod json;
mod kinds;
mod rate_limit;

pub use json::{Shown, to_json};
pub use kinds::*;
pub use rate_limit::RateLimiter;
