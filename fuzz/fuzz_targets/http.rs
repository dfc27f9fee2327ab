//! The demo server's HTTP request parser: see `check_parser` in
//! `demo/src/http/message.rs`.
#![no_main]

#[allow(dead_code)]
#[path = "../../demo/src/http/message.rs"]
mod http;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    http::check_parser(data);
});
