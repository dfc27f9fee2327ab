//! Fixed-seed sweeps of the fuzz harnesses in [`portlab::fuzz`], so that every
//! `cargo test` runs what `cargo fuzz` runs (see `fuzz/` and
//! `scripts/fuzz.sh`): pseudo-random input from fixed seeds instead of a
//! fuzzer's corpus. The harnesses assert the bounds after every step; these
//! tests also check that the sweeps reached the interesting states rather
//! than bouncing off the stack.

use portlab::fuzz::{self, seeded_input};

#[test]
fn hostile_ingress_never_panics_and_keeps_the_bounds() {
    let mut sockets = 0;
    let mut accepted = 0;
    let mut resets = 0;
    for seed in 0..16 {
        let r = fuzz::ingress(&seeded_input(seed, 48 * 1024));
        sockets += r.stats.sockets_created;
        accepted += r.accepted;
        resets += r.stats.resets_sent;
    }
    eprintln!("{sockets} sockets, {accepted} accepted, {resets} resets");
    assert!(sockets >= 50, "only {sockets} sockets created");
    assert!(accepted >= 5, "only {accepted} connections accepted");
    assert!(resets >= 100, "only {resets} resets sent");
}

#[test]
fn random_sessions_end_with_every_socket_closed_and_freed() {
    let mut accepted = 0;
    for seed in 0..24 {
        let r = fuzz::session(&seeded_input(seed, 12 * 1024));
        assert!(
            r.stats.sockets_created >= 3,
            "seed {seed}: only {} sockets created",
            r.stats.sockets_created
        );
        accepted += r.accepted;
    }
    // The sweep must have reached the interesting states, not bounced off.
    assert!(
        accepted >= 50,
        "only {accepted} connections accepted in all sessions"
    );
}

#[test]
fn repaired_checksums_verify() {
    // A datagram with a zeroed checksum, repaired, parses and verifies.
    let mut v = Vec::new();
    etherparse::PacketBuilder::ipv4([10, 0, 0, 1], fuzz::STACK, 64)
        .tcp(40000, 80, 1, 1000)
        .syn()
        .write(&mut v, b"x")
        .unwrap();
    let good = v.clone();
    v[10] = 0;
    v[11] = 0;
    v[36] ^= 0xff;
    v[37] ^= 0xff;
    portlab::wire::checksum::fill_checksums(&mut v);
    assert_eq!(v, good);
}
