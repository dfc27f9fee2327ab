//! Observation: what the stack tells the people watching it.
//!
//! The mission is to *show*, with evidence from real packets, how one port
//! serves many connections. Every layer above speaks the vocabulary defined
//! here, which is why it sits this low: [`event`] is the one typed event
//! enum (each SYN, port choice, socket creation, accept, close) and its two
//! renderings, a human line and a versioned JSON line; [`event_stream`]
//! pushes those events to subscribers as they happen (`GET /events`);
//! [`story`] keeps each connection's story, its events and the segments of
//! its handshake and teardown; [`table`] is the connection table as a
//! snapshot, as `ss` would show it, with its counters.
//!
//! This layer records and renders; it never decides what happens to a
//! packet. The control socket that serves the table to `portlab ss` from
//! another process needs the running stack, so it lives with the API
//! (`api::control`).
//!
//! May use: wire.

pub mod event;
pub mod event_stream;
pub mod story;
pub mod table;
