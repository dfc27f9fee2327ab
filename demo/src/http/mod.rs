//! HTTP: the demo's web server, from bytes to pages.
//!
//! [`message`] parses a request and writes a response, bounded and pure
//! (bytes in, request out), which is what the fuzz target drives.
//! [`server`] is what every connection of one server shares (its settings
//! and the count of connections it serves now); [`serve`] serves one
//! connection with keep-alive until it ends and routes each request. The
//! pages: [`page`] is the live page and `/connections.json` (the visitor's
//! own 4-tuple and a page of the connection table), [`query`] the query
//! string that filters and pages them, [`story_page`] one connection's
//! story, [`sse`] the event stream that pushes the stack's events to the
//! open page (`GET /events`).
//!
//! Everything here is written against `crate::stream::Stream`, so the same
//! server runs on the kernel's sockets (`portlab kernel-serve`). Which
//! thread serves which connection is not decided here: that is the serving
//! model's choice (`crate::models`).

pub mod message;
pub mod page;
pub mod query;
pub mod serve;
pub mod server;
pub mod sse;
pub mod story_page;
