#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ (ingress, session, http), each for a
# while, and prints how many inputs each one ran.
#
#   scripts/fuzz.sh [--quick] [SECONDS] [TARGET...]
#
# SECONDS per target: 600 by default (the full run), 10 with --quick (the
# smoke test that scripts/test.sh runs). On the stable toolchain, so without
# a sanitizer (`-s none`): Rust's own checks (bounds, overflow in debug
# assertions, which cargo-fuzz turns on) and the harnesses' assertions are
# what catch bugs. A crash leaves its input in fuzz/artifacts/TARGET/; make
# it a regression test named after it and fix it. Corpora grow in
# fuzz/corpus/TARGET/ (not committed).
set -euo pipefail
cd "$(dirname "$0")/.."

secs=600
targets=()
for a in "$@"; do
    case "$a" in
        --quick) secs=10 ;;
        [0-9]*) secs=$a ;;
        ingress|session|http) targets+=("$a") ;;
        *) echo "usage: $0 [--quick] [SECONDS] [ingress|session|http ...]" >&2; exit 2 ;;
    esac
done
[ ${#targets[@]} -gt 0 ] || targets=(ingress session http)

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz (from crates.io)"
    cargo install cargo-fuzz --locked --quiet
fi

# Seed the HTTP corpus with real requests, so the fuzzer starts from them.
mkdir -p fuzz/corpus/http
printf 'GET / HTTP/1.1\r\nHost: 10.203.80.2\r\nUser-Agent: curl/8\r\nAccept: */*\r\n\r\n' > fuzz/corpus/http/curl
printf 'GET /you?delay=1 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n' > fuzz/corpus/http/http10
printf 'POST /x HTTP/1.1\r\nContent-Length: 4\r\n\r\nbody' > fuzz/corpus/http/post

cd fuzz
if ! out=$(cargo fuzz build -s none 2>&1); then
    echo "$out" >&2
    echo "FAIL: the fuzz targets do not build" >&2
    exit 1
fi
summary=()
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    echo "== fuzzing $t for ${secs}s"
    log=$(mktemp)
    if ! cargo fuzz run -s none "$t" "corpus/$t" -- \
        -max_total_time="$secs" -max_len=16384 -print_final_stats=1 >"$log" 2>&1; then
        tail -40 "$log"
        echo "FAIL: $t crashed; the input is in fuzz/artifacts/$t/" >&2
        rm -f "$log"
        exit 1
    fi
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo '?')
    corpus=$(find "corpus/$t" -type f | wc -l)
    summary+=("$(printf '%-8s %10s runs in %ss, coverage %s edges, corpus %s inputs' "$t" "$runs" "$secs" "$cov" "$corpus")")
    rm -f "$log"
done
echo "== fuzz summary (no crashes)"
printf '%s\n' "${summary[@]}"
