#!/usr/bin/env bash
# Every test portlab has: unit tests and packet scripts (cargo test, no root
# needed), then the namespace integration suite (real curl against the stack
# on a TUN device, inside network namespaces; needs root).
#
# As root on Debian it installs what it needs (curl, iproute2, python3, tshark,
# chromium, iputils-ping, nmap, hping3, slowhttptest, wrk, nginx-light,
# python3-scapy, iperf3, ethtool).
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "error: $*" >&2; exit 1; }

is_root() { [ "$(id -u)" = 0 ]; }

missing=()
command -v curl >/dev/null || missing+=(curl)
command -v ip >/dev/null || missing+=(iproute2)
command -v python3 >/dev/null || missing+=(python3)
command -v tshark >/dev/null || missing+=(tshark)
command -v ping >/dev/null || missing+=(iputils-ping)
command -v nmap >/dev/null || missing+=(nmap)
command -v hping3 >/dev/null || missing+=(hping3)
command -v slowhttptest >/dev/null || missing+=(slowhttptest)
command -v wrk >/dev/null || missing+=(wrk)
command -v nginx >/dev/null || missing+=(nginx-light)
command -v iperf3 >/dev/null || missing+=(iperf3)
command -v ethtool >/dev/null || missing+=(ethtool)
/usr/bin/python3 -c 'import scapy' 2>/dev/null || missing+=(python3-scapy)
command -v chromium >/dev/null || command -v chromium-browser >/dev/null || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
    if is_root && command -v apt-get >/dev/null; then
        echo "== installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
        # Debian starts nginx as a service when it is installed; the benchmark
        # runs its own, inside a namespace.
        if printf '%s\n' "${missing[@]}" | grep -q nginx; then
            (systemctl stop nginx || service nginx stop) >/dev/null 2>&1 || true
            pkill -x nginx 2>/dev/null || true
        fi
    else
        die "missing tools: ${missing[*]}. Install them (Debian: sudo apt-get install ${missing[*]}) or run this script as root"
    fi
fi
command -v cargo >/dev/null || die "cargo is missing: install Rust (https://rustup.rs) and run again"

echo "== cargo test (unit tests and packet scripts)"
cargo test --workspace --quiet

echo "== conformance: packetdrill scripts against the stack (scripts/conformance.sh)"
conformance=0
./scripts/conformance.sh || conformance=$?
case $conformance in
    0) ;;
    3) echo "== conformance SKIPPED: no packetdrill binary here (set PACKETDRILL=path to run it)" ;;
    *) die "conformance scripts failed (status $conformance)" ;;
esac

echo "== fuzz targets, 10 s each (scripts/fuzz.sh runs them for 10 minutes)"
./scripts/fuzz.sh --quick

echo "== cargo build --release"
cargo build --release --quiet

echo "== namespace integration suite"
if is_root; then
    ./scripts/itest.sh
    echo "== the lab book's exercises (quick mode)"
    ./scripts/lab.sh all --quick
    echo "== benchmark smoke test (no thresholds)"
    ./scripts/bench.sh --quick
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo ./scripts/itest.sh
    echo "== the lab book's exercises (quick mode)"
    sudo ./scripts/lab.sh all --quick
    echo "== benchmark smoke test (no thresholds)"
    sudo ./scripts/bench.sh --quick
else
    die "the namespace tests need root (network namespaces, TUN devices): run 'sudo ./scripts/test.sh'"
fi
