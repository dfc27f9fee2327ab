//! Random sessions against a small backlog: see `portlab::fuzz::session`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    portlab::fuzz::session(data);
});
