//! Hostile packets into the core: see `portlab::fuzz::ingress`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    portlab::fuzz::ingress(data);
});
