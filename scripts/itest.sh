#!/usr/bin/env bash
# The namespace integration suite: real curl and real sockets against
# `portlab serve` on a TUN device, all inside network namespaces this script
# creates and deletes. Needs root and a release build (scripts/test.sh does both).
#
#   scripts/itest.sh            run every test
#   scripts/itest.sh NAME...    run the named tests (see `scripts/itest.sh --list`)
set -u
. "$(dirname "$0")/lib/netns.sh"

ADDR=10.203.80.2
URL="http://$ADDR/"
TESTS=(concurrent_50 sequential_200 time_wait_reuse closed_port http_limits device_busy start_errors sigint_closes_peers restart_after_sigkill connect_20 shared_local_port)

if [ "${1:-}" = "--list" ]; then
    printf '%s\n' "${TESTS[@]}"
    exit 0
fi
require_root "scripts/itest.sh"
[ -x "$PORTLAB_BIN" ] || die "$PORTLAB_BIN is missing: run 'cargo build --release' first"
command -v curl >/dev/null || die "curl is missing: apt-get install curl"
command -v python3 >/dev/null || die "python3 is missing: apt-get install python3"
lab_init

FAILED=()
fail() { echo "    FAIL: $*"; return 1; }
ok() { echo "    ok: $*"; }

# Each test gets a namespace of its own with portlab serving in it.
setup() {
    NS="pl-it-$$-$1"
    EV="$LAB_TMP/$1.jsonl"
    LOG="$LAB_TMP/$1.log"
    lab_ns "$NS"
    shift
    portlab_start "$NS" "$EV" "$LOG" "$@"
}
in_ns() { ip netns exec "$NS" "$@"; }

test_concurrent_50() {
    setup concurrent_50
    local out="$LAB_TMP/c50.txt" start end
    start=$(date +%s.%N)
    local pids=()
    for i in $(seq 50); do
        in_ns curl -s -m 20 -o /dev/null -w '%{http_code} %{local_port}\n' "$URL" >>"$out" &
        pids+=($!)
    done
    wait "${pids[@]}"
    end=$(date +%s.%N)
    local oks ports syns created listens
    oks=$(grep -c '^200 ' "$out")
    ports=$(awk '{print $2}' "$out" | sort -u | wc -l)
    syns=$(events "$EV" ports syn | wc -l)
    created=$(events "$EV" count socket_created)
    listens=$(events "$EV" count listen)
    echo "    50 concurrent curls took $(python3 -c "print(f'{$end - $start:.3f}')") s"
    [ "$oks" = 50 ] || fail "$oks of 50 requests got 200" || return 1
    [ "$ports" = 50 ] || fail "curl reported $ports distinct client ports" || return 1
    [ "$syns" = 50 ] || fail "events show $syns distinct client ports in SYNs, want 50" || return 1
    [ "$created" = 50 ] || fail "$created socket_created events, want 50" || return 1
    [ "$listens" = 1 ] || fail "$listens listen events, want 1" || return 1
    ok "50 x 200 OK, 50 distinct client ports, 50 sockets, one listener"
}

test_sequential_200() {
    setup sequential_200
    local out="$LAB_TMP/s200.txt"
    for i in $(seq 200); do
        in_ns curl -s -m 10 -o /dev/null -w '%{http_code}\n' "$URL" >>"$out"
    done
    local oks refused
    oks=$(grep -c '^200$' "$out")
    refused=$(events "$EV" count rst_sent)
    [ "$oks" = 200 ] || fail "$oks of 200 back-to-back connections got 200" || return 1
    [ "$refused" = 0 ] || fail "$refused resets sent" || return 1
    ok "200 back-to-back connections, none refused"
}

test_time_wait_reuse() {
    setup time_wait_reuse
    local port=41234 t1 t2
    # The server closes first (Connection: close), so the stack holds TIME-WAIT
    # for 10.203.80.2:80 <- 10.203.80.1:41234; the client kernel does not.
    t1=$(in_ns curl -s -m 10 -o /dev/null -H 'Connection: close' --local-port $port -w '%{http_code} %{time_total}' "$URL")
    sleep 0.2
    local tw
    tw=$(in_ns curl -s -m 5 "http://$ADDR/connections.json" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(sum(1 for s in d["sockets"] if s["state"]=="TIME-WAIT" and s["remote"].endswith(":'$port'")))')
    t2=$(in_ns curl -s -m 10 -o /dev/null -H 'Connection: close' --local-port $port -w '%{http_code} %{time_total}' "$URL")
    echo "    first: $t1   reconnect from the same port: $t2"
    [ "$tw" = 1 ] || fail "the stack did not hold the 4-tuple in TIME-WAIT" || return 1
    [ "${t2%% *}" = 200 ] || fail "reconnect got '${t2%% *}'" || return 1
    python3 -c "import sys; sys.exit(0 if float('${t2##* }') < 0.5 else 1)" \
        || fail "reconnect took ${t2##* } s: a SYN retransmission stall" || return 1
    [ "$(events "$EV" count time_wait_reused)" -ge 1 ] || fail "no time_wait_reused event" || return 1
    [ "$(events "$EV" count rst_sent)" = 0 ] || fail "a reset was sent" || return 1
    ok "SYN on a TIME-WAIT 4-tuple reused it at once (no 1 s stall)"
}

test_closed_port() {
    setup closed_port
    local rc
    in_ns curl -s -m 5 -o /dev/null "http://$ADDR:81/"
    rc=$?
    [ "$rc" = 7 ] || fail "curl exit code $rc, want 7 (connection refused)" || return 1
    grep -q '"event":"rst_sent".*"reason":"no listener on port"' "$EV" \
        || fail "no rst_sent event with reason 'no listener on port'" || return 1
    ok "connection refused: RST from a port nobody listens on"
}

test_device_busy() {
    setup device_busy
    local out rc
    out=$(in_ns "$PORTLAB_BIN" serve --events "$LAB_TMP/busy2.jsonl" 2>&1)
    rc=$?
    [ "$rc" != 0 ] || fail "a second portlab on the same device name started" || return 1
    echo "$out" | grep -q "is busy" || fail "unhelpful message: $out" || return 1
    in_ns curl -s -m 5 -o /dev/null -w '%{http_code}' "$URL" | grep -q 200 \
        || fail "the first portlab stopped serving" || return 1
    ok "second start on the same device: '$(echo "$out" | tail -1 | cut -c1-90)...'"
}

test_http_limits() {
    setup http_limits --header-timeout 1
    local out
    out=$(in_ns python3 - "$ADDR" <<'PY'
import socket, sys, time
addr = sys.argv[1]
def exchange(payload, wait_close=True):
    s = socket.create_connection((addr, 80), timeout=5)
    if payload:
        s.sendall(payload)
    data = b""
    start = time.time()
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    return data.split(b"\r\n")[0].decode(), time.time() - start
status, _ = exchange(b"NONSENSE\r\n\r\n")
print("garbage:", status)
status, t = exchange(b"GET / HTTP/1.1\r\nHost: slow")
print(f"partial head: {status} after {t:.1f}s")
status, _ = exchange(b"GET /nothing-here HTTP/1.1\r\nConnection: close\r\n\r\n")
print("unknown path:", status)
status, _ = exchange(b"GET / HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n")
print("huge head:", status)
PY
)
    echo "$out" | sed 's/^/    /'
    echo "$out" | grep -q "garbage: HTTP/1.1 400" || fail "garbage did not get 400 and a close" || return 1
    echo "$out" | grep -q "partial head: HTTP/1.1 408" || fail "a stalled head did not time out with 408" || return 1
    echo "$out" | grep -q "unknown path: HTTP/1.1 404" || fail "unknown path did not get 404" || return 1
    echo "$out" | grep -q "huge head: HTTP/1.1 431" || fail "a huge head did not get 431" || return 1
    [ "$(events "$EV" count http_header_timeout)" = 1 ] || fail "no http_header_timeout event" || return 1
    [ "$(events "$EV" count http_bad_request)" -ge 2 ] || fail "no http_bad_request events" || return 1
    ok "400, 408 after the header timeout, 404, 431; each with its event"
}

test_start_errors() {
    NS="pl-it-$$-start_errors"
    lab_ns "$NS"
    local out
    out=$(in_ns setpriv --reuid 65534 --regid 65534 --clear-groups "$PORTLAB_BIN" serve 2>&1)
    echo "$out" | grep -q "permission denied.*sudo.*setcap" || fail "as nobody: $out" || return 1
    echo "    as an unprivileged user: $(echo "$out" | cut -c1-100)..."
    out=$(in_ns "$PORTLAB_BIN" serve --addr 10.203.80.2/24 --host-addr 10.203.80.2 2>&1)
    echo "$out" | grep -q "must differ" || fail "same address: $out" || return 1
    in_ns ip link add v0 type veth peer name v1
    in_ns ip addr add 10.203.0.1/16 dev v0
    in_ns ip link set v0 up
    out=$(in_ns "$PORTLAB_BIN" serve 2>&1)
    echo "$out" | grep -q "overlaps the route 10.203.0.0/16 on v0" || fail "overlap: $out" || return 1
    echo "    overlapping prefix: $(echo "$out" | cut -c1-100)..."
    in_ns ip link del v0
    ok "no permission, equal addresses and an overlapping route each explained"
}

test_sigint_closes_peers() {
    setup sigint_closes_peers
    # A client with an idle keep-alive connection waits to see it closed.
    in_ns python3 - "$ADDR" >"$LAB_TMP/sigint-client.txt" 2>&1 <<'PY' &
import socket, sys, time
s = socket.create_connection((sys.argv[1], 80), timeout=10)
s.sendall(b"GET /connections.json HTTP/1.1\r\nHost: lab\r\n\r\n")
data = b""
while b"\r\n\r\n" not in data:
    data += s.recv(65536)
print("response", data.split(b"\r\n")[0].decode(), flush=True)
start = time.time()
try:
    while True:
        chunk = s.recv(65536)
        if not chunk:
            print(f"closed: EOF after {time.time() - start:.2f}s")
            break
except ConnectionResetError:
    print(f"closed: reset after {time.time() - start:.2f}s")
except socket.timeout:
    print("still open after 10s")
PY
    local client=$!
    sleep 0.5
    portlab_stop INT
    wait $client
    cat "$LAB_TMP/sigint-client.txt" | sed 's/^/    client: /'
    grep -q '^closed:' "$LAB_TMP/sigint-client.txt" || fail "the client did not see its connection closed" || return 1
    events "$EV" complete >/dev/null || fail "the event file is not complete" || return 1
    [ "$(events "$EV" last)" = stack_stopped ] || fail "the event file does not end with stack_stopped" || return 1
    in_ns ip link show portlab0 >/dev/null 2>&1 && { fail "the TUN device is still there"; return 1; }
    ok "SIGINT: peer closed, event file complete, device removed"
}

test_restart_after_sigkill() {
    setup restart_after_sigkill
    in_ns curl -s -m 5 -o /dev/null "$URL"
    portlab_stop KILL
    portlab_start "$NS" "$LAB_TMP/restart2.jsonl" "$LAB_TMP/restart2.log"
    local code
    code=$(in_ns curl -s -m 5 -o /dev/null -w '%{http_code}' "$URL")
    [ "$code" = 200 ] || fail "after restart: got '$code'" || return 1
    ok "restart after SIGKILL serves again"
}

# kernel_http NS PORT: a small HTTP server on the kernel side of the namespace.
kernel_http() {
    mkdir -p "$LAB_TMP/www"
    echo "hello from the kernel side" >"$LAB_TMP/www/index.html"
    (cd "$LAB_TMP/www" && exec ip netns exec "$1" python3 -m http.server "$2" --bind 0.0.0.0) >/dev/null 2>&1 &
    LAB_PIDS+=($!)
    local i
    for i in $(seq 100); do
        ip netns exec "$1" curl -s -m 1 -o /dev/null "http://127.0.0.1:$2/" && return 0
        sleep 0.05
    done
    die "the kernel-side HTTP server on port $2 did not start"
}

test_connect_20() {
    NS="pl-it-$$-connect_20"
    EV="$LAB_TMP/connect_20.jsonl"
    lab_ns "$NS"
    kernel_http "$NS" 8000
    local out
    out=$(in_ns "$PORTLAB_BIN" --log-level warn connect --events "$EV" --connections 20 "http://10.203.80.1:8000/" 2>&1)
    echo "$out" | tail -1 | sed 's/^/    /'
    [ "$(echo "$out" | grep -c 'HTTP/1.0 200 OK')" = 20 ] || fail "not 20 x 200: $out" || return 1
    [ "$(events "$EV" count port_chosen)" = 20 ] || fail "want 20 port_chosen events" || return 1
    local tuples
    tuples=$(grep '"event":"port_chosen"' "$EV" | python3 -c 'import json,sys; print(len({(e["local"],e["remote"]) for e in map(json.loads,sys.stdin)}))')
    [ "$tuples" = 20 ] || fail "$tuples distinct 4-tuples, want 20" || return 1
    ok "20 connections from the stack: 20 port_chosen events, 20 distinct 4-tuples, 20 x 200"
}

test_shared_local_port() {
    NS="pl-it-$$-shared_local_port"
    lab_ns "$NS"
    kernel_http "$NS" 8000
    kernel_http "$NS" 8001
    local out
    out=$(in_ns "$PORTLAB_BIN" --log-level warn connect --local-port 50000 "http://10.203.80.1:8000/" "http://10.203.80.1:8001/" 2>&1)
    echo "$out" | sed 's/^/    /'
    [ "$(echo "$out" | grep -c '10.203.80.2:50000 .*HTTP/1.0 200 OK')" = 2 ] \
        || fail "both connections from port 50000 should succeed" || return 1
    ok "one local port, two remote endpoints, two connections at once"
}

run=("$@")
[ ${#run[@]} -gt 0 ] || run=("${TESTS[@]}")
for t in "${run[@]}"; do
    echo "== $t"
    if ! "test_$t"; then
        FAILED+=("$t")
        for f in "$LAB_TMP/$t.log"; do
            [ -f "$f" ] && tail -20 "$f" | sed 's/^/    log: /'
        done
    fi
    [ -n "${PORTLAB_PID:-}" ] && kill -0 "$PORTLAB_PID" 2>/dev/null && portlab_stop INT
done
echo
if [ ${#FAILED[@]} -gt 0 ]; then
    echo "namespace integration: ${#FAILED[@]} of ${#run[@]} failed: ${FAILED[*]}"
    exit 1
fi
echo "namespace integration: all ${#run[@]} passed"
