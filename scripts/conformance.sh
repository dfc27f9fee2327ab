#!/usr/bin/env bash
# Conformance: packetdrill scripts against portlab's stack.
#
#   ./scripts/conformance.sh [SCRIPT.pkt|DIR ...]     (default: conformance/)
#
# packetdrill (google/packetdrill) injects the segments a script gives, makes
# its system calls and checks every segment the stack sends back. Here it
# loads portlab's stack as a shared object (--so_filename): no TUN device, no
# root, no network; time is packetdrill's clock, the packets never leave the
# process.
#
# packetdrill is not part of portlab and is not built here. The script uses
#   PACKETDRILL=/path/to/packetdrill   if set, else
#   packetdrill                        on PATH.
# With neither it says how to get one and exits with status 3 (skipped), so
# that a caller can tell "skipped" from "failed" (status 1).
#
# Each script may start with lines of its own options:
#   // so_flags: overflow=rst,syn_queue=2   settings for portlab (packetdrill/src/flags.rs)
#   --ip_version=ipv6                       an IPv6 script (packetdrill's own option)
# PORTLAB_EVENTS=1 prints the stack's events beside packetdrill's output.
set -uo pipefail
cd "$(dirname "$0")/.."

SKIPPED=3

pd="${PACKETDRILL:-}"
if [ -z "$pd" ]; then
    pd="$(command -v packetdrill || true)"
fi
if [ -z "$pd" ] || [ ! -x "$pd" ]; then
    cat >&2 <<'EOF'
conformance: SKIPPED: no packetdrill binary.
  packetdrill is Google's TCP test tool (GPLv2), not shipped with portlab.
  Get its source from https://github.com/google/packetdrill, build it as its
  README says (gtests/net/packetdrill: ./configure && make; Debian needs
  bison and flex), then run
      PACKETDRILL=/path/to/packetdrill ./scripts/conformance.sh
  or put packetdrill on PATH.
EOF
    exit $SKIPPED
fi

echo "== building the packetdrill interface (portlab-packetdrill, release)"
cargo build --release --quiet -p portlab-packetdrill || { echo "conformance: the .so did not build" >&2; exit 1; }
so="$PWD/target/release/libportlab_packetdrill.so"
[ -f "$so" ] || { echo "conformance: $so is missing after the build" >&2; exit 1; }

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(conformance)
scripts=()
for t in "${targets[@]}"; do
    if [ -d "$t" ]; then
        while IFS= read -r f; do scripts+=("$f"); done < <(find "$t" -name '*.pkt' | sort)
    elif [ -f "$t" ]; then
        scripts+=("$t")
    else
        echo "conformance: no such script or folder: $t" >&2
        exit 1
    fi
done
[ ${#scripts[@]} -gt 0 ] || { echo "conformance: no *.pkt scripts under ${targets[*]}" >&2; exit 1; }

passed=0
failed=0
failures=()
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
for script in "${scripts[@]}"; do
    flags="$(sed -n 's#^// so_flags: *##p' "$script" | head -1)"
    if grep -q '^--ip_version=ipv6' "$script"; then
        addrs=(--local_ip=fd3d:fa7b:d17d::2 --remote_ip=2001:db8::1 --gateway_ip=fd3d:fa7b:d17d:8888::)
    else
        addrs=(--local_ip=192.168.0.2 --remote_ip=192.0.2.1 --gateway_ip=192.168.0.1 --netmask_ip=255.255.0.0)
    fi
    [ -n "${PORTLAB_EVENTS:-}" ] && flags="${flags:+$flags,}events"
    # Every run is bounded: a script that hangs is a failure, not a stall.
    if timeout 60 "$pd" --so_filename="$so" "${addrs[@]}" --so_flags="$flags" \
        "$script" >"$log" 2>&1; then
        passed=$((passed + 1))
        echo "ok      $script"
        [ -n "${PORTLAB_EVENTS:-}" ] && sed 's/^/        /' "$log"
    else
        failed=$((failed + 1))
        failures+=("$script")
        echo "FAILED  $script"
        sed 's/^/        /' "$log"
    fi
done

echo "conformance: $passed passed, $failed failed"
if [ $failed -gt 0 ]; then
    printf '  failed: %s\n' "${failures[@]}"
    exit 1
fi
