# Shared by the scripts: network-namespace labs that clean up after themselves.
#
# Every packet a lab sends stays inside a namespace the lab created: portlab
# runs inside it (its TUN device is created there) and so do the clients.
# Source this file, call `lab_init`, then `lab_ns NAME` for each namespace;
# everything is removed on exit, also on failure or Ctrl-C.

PORTLAB_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PORTLAB_BIN="$PORTLAB_ROOT/target/release/portlab"
EVENTS_PY="$PORTLAB_ROOT/scripts/lib/events.py"

LAB_NAMESPACES=()
LAB_PIDS=()
LAB_TMP=""

die() { echo "error: $*" >&2; exit 1; }

require_root() {
    [ "$(id -u)" = 0 ] || die "$1 needs root (network namespaces and TUN devices): run it with sudo"
    [ -e /dev/net/tun ] || die "/dev/net/tun is missing: load the tun module ('modprobe tun')"
    command -v ip >/dev/null || die "the 'ip' command is missing: install iproute2"
}

lab_cleanup() {
    local pid ns i
    # A clean stop first (portlab removes its control socket), then force.
    for pid in "${LAB_PIDS[@]}"; do
        kill -INT "$pid" 2>/dev/null
    done
    for i in $(seq 40); do
        for pid in "${LAB_PIDS[@]}"; do
            kill -0 "$pid" 2>/dev/null && break
        done
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    for pid in "${LAB_PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null
    done
    for pid in "${LAB_PIDS[@]}"; do
        wait "$pid" 2>/dev/null
    done
    for ns in "${LAB_NAMESPACES[@]}"; do
        ip netns pids "$ns" 2>/dev/null | xargs -r kill -KILL 2>/dev/null
        ip netns del "$ns" 2>/dev/null
    done
    [ -n "$LAB_TMP" ] && rm -rf "$LAB_TMP"
}

lab_init() {
    LAB_TMP=$(mktemp -d /tmp/portlab-lab.XXXXXX)
    trap lab_cleanup EXIT
    trap 'exit 130' INT TERM
}

# lab_ns NAME: a fresh namespace with loopback up.
lab_ns() {
    ip netns del "$1" 2>/dev/null
    ip netns add "$1" || die "cannot create network namespace $1"
    LAB_NAMESPACES+=("$1")
    ip netns exec "$1" ip link set lo up
}

# lab_veth NS_A DEV_A ADDR_A NS_B DEV_B ADDR_B: a veth pair between two lab
# namespaces, each end with its address (a /24) and up. Deleting either
# namespace deletes the pair.
lab_veth() {
    ip link add "$2" netns "$1" type veth peer name "$5" netns "$4" || die "cannot create veth $2/$5"
    ip netns exec "$1" ip addr add "$3/24" dev "$2"
    ip netns exec "$4" ip addr add "$6/24" dev "$5"
    ip netns exec "$1" ip link set "$2" up
    ip netns exec "$4" ip link set "$5" up
}

# portlab_start NS EVENTS_FILE LOG_FILE [serve flags...]: starts `portlab serve`
# inside NS and waits until it listens. Sets PORTLAB_PID.
portlab_start() {
    local ns=$1 events=$2 log=$3
    shift 3
    ip netns exec "$ns" "$PORTLAB_BIN" serve --events "$events" "$@" >"$log" 2>&1 &
    PORTLAB_PID=$!
    LAB_PIDS+=("$PORTLAB_PID")
    local i
    # Generous: a loaded CI machine may take seconds to start a process.
    for i in $(seq 300); do
        if [ -s "$events" ] && grep -q '"event":"listen"' "$events" 2>/dev/null; then
            return 0
        fi
        if ! kill -0 "$PORTLAB_PID" 2>/dev/null; then
            cat "$log" >&2
            die "portlab exited during start-up (log above)"
        fi
        sleep 0.05
    done
    cat "$log" >&2
    die "portlab did not start listening within 15 s"
}

# portlab_stop [SIGNAL]: stops the last started portlab and waits for it.
portlab_stop() {
    kill "-${1:-INT}" "$PORTLAB_PID" 2>/dev/null
    local i
    for i in $(seq 100); do
        kill -0 "$PORTLAB_PID" 2>/dev/null || break
        sleep 0.05
    done
    { wait "$PORTLAB_PID"; } 2>/dev/null
}

events() { python3 "$EVENTS_PY" "$@"; }

# stuck_server_burst NS ADDR HOLD_SECS OUT: a client connects to ADDR:80 and
# says nothing for HOLD_SECS (a one-at-a-time server is stuck on it), then six
# curls arrive at once; each appends "CODE exit=N SECONDS" to OUT.
stuck_server_burst() {
    local ns=$1 addr=$2 hold=$3 out=$4 i
    ip netns exec "$ns" python3 -c "
import socket, time
s = socket.create_connection(('$addr', 80)); time.sleep($hold)" &
    local holder=$! pids=()
    sleep 0.2
    for i in $(seq 6); do
        ip netns exec "$ns" curl -s -m 25 -o /dev/null -w '%{http_code} exit=%{exitcode} %{time_total}\n' \
            "http://$addr/" >>"$out" &
        pids+=($!)
    done
    wait "${pids[@]}"
    wait $holder
}
