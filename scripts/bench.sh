#!/usr/bin/env bash
# Benchmarks: portlab against the Linux kernel, measured in the same run.
#
#   sudo scripts/bench.sh            the full suite (about 17 minutes)
#   sudo scripts/bench.sh --quick    short forms of every workload (a smoke test, as in CI)
#
# Workloads (issue #7), each with its comparators in the same run, rounds
# interleaved, medians reported:
#   bulk       bytes from chargen / to discard (portlab-bench bulk), both
#              directions, MTU 1500: portlab vs stock smoltcp (same buffers, and
#              its examples' 64 KiB) and vs the same services on kernel sockets
#              over veth with offloads off; portlab --offload vs offloads on;
#              iperf3 for reference. All of these servers run at once; after
#              one unmeasured transfer each, every round measures every one,
#              each round starting one further on in the order (7 rounds: bulk
#              is fast, and noisy)
#   keepalive  small GET on 50 keep-alive connections (wrk): portlab vs the
#              same server on kernel sockets (portlab kernel-serve); nginx for reference
#   newconn    a new connection per request, 50 at a time (wrk, Connection: close),
#              60 s a run: ports come round again while their 4-tuple is in TIME-WAIT
#   latency    1-byte ping-pong on one connection (portlab-bench pingpong), p50 and p99
#   fixed      kernel -> stack at a fixed 4 Gbit/s (paced by the kernel):
#              CPU time per GiB of portlab and of stock smoltcp, at equal load
#   flatcost   keepalive beside 10 / 1,000 / 10,000 idle connections: CPU time
#              of the portlab process per request
#   memory     resident and virtual size per idle connection, at 10,000
#   page       the live page / keep-alive with 1 and 50 connections (wrk
#              --latency; portlab as started by default, with --offload, and
#              with --model event-loop, one thread as nginx, with and
#              without --offload),
#              /connections.json beside the largest number of idle
#              connections, and / loaded in headless Chromium: against nginx
#              serving the same bytes (the page as portlab served it under
#              that load) as a static file; portlab as started against
#              nginx with the veth's offloads off (both send 1500-byte
#              segments), and for reference on; --offload against them on
#
# Placement: portlab (and every kernel-side server) is pinned to CPU 0, the
# load generator to CPU 1 (taskset), when the machine has two CPUs. The kernel
# comparators run between two namespaces over a veth pair; portlab runs on
# its TUN in a third. Nothing leaves those namespaces. Prints a table with
# ratios and pass/fall-short per line and writes it as Markdown and JSON to
# target/bench/.
set -u
cd "$(dirname "$0")/.."
. scripts/lib/netns.sh

QUICK=0
[ "${1:-}" = --quick ] && QUICK=1
if [ "$QUICK" = 1 ]; then
    DURATION=2 NEWCONN_DURATION=2 ROUNDS=1 BULK_ROUNDS=1 BULK_BYTES=$((64 << 20)) PINGS=2000 HOLDS="10 1000"
    FIXED_BYTES=$((64 << 20))
else
    # A bulk transfer takes seconds: more rounds for a steadier median. A
    # new connection per request runs 60 s, longer than one client
    # address's ports last at that rate with a 10 s TIME-WAIT: 4-tuples
    # still in TIME-WAIT at portlab are reused by new SYNs.
    DURATION=10 NEWCONN_DURATION=60 ROUNDS=3 BULK_ROUNDS=7 BULK_BYTES=$((1 << 30)) PINGS=20000 HOLDS="10 1000 10000"
    FIXED_BYTES=$((512 << 20))
fi
# The fixed rate of the CPU-per-GiB comparison: half of what either
# receiver reaches flat out here.
FIXED_MBIT=4000

require_root "scripts/bench.sh"
for tool in wrk nginx taskset iperf3 ethtool; do
    command -v "$tool" >/dev/null || die "$tool is missing: apt-get install wrk nginx-light util-linux iperf3 ethtool"
done
cargo build --release --quiet || die "the build failed"
BENCH_BIN="$PORTLAB_ROOT/target/release/portlab-bench"
lab_init
ulimit -n "$(ulimit -Hn)" 2>/dev/null

CPUS=$(nproc)
SERVER_CPU=0
CLIENT_CPU=$([ "$CPUS" -ge 2 ] && echo 1 || echo 0)
RESULTS="$LAB_TMP/results.txt"
: >"$RESULTS"
record() { echo "$1 $2" >>"$RESULTS"; }
# portlab's default buffers per connection (NetConfig::rx_buffer, tx_buffer).
PORTLAB_RX_KIB=1024
PORTLAB_TX_KIB=256
record rx_kib "$PORTLAB_RX_KIB"
record tx_kib "$PORTLAB_TX_KIB"
# cpu_ticks PID: the user and system time of process PID, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
median() { sort -g | awk '{ a[NR] = $1 } END { print (NR ? a[int((NR + 1) / 2)] : 0) }'; }
json_field() { python3 -c "import json,sys; print(json.loads(sys.stdin.read())['$1'])"; }

# wait_http NS URL LOG WHAT: waits up to 5 s for URL to answer from NS.
wait_http() {
    local i
    for i in $(seq 100); do
        ip netns exec "$1" curl -s -m 1 -o /dev/null "$2" && return 0
        sleep 0.05
    done
    cat "$3" >&2
    die "$4 did not start"
}

# portlab: the stack on a TUN in its own namespace; clients from the kernel side.
NS_P=portlab-bench-stack
P_ADDR=10.203.80.2
lab_ns "$NS_P"
portlab_bench_start() {
    ip netns exec "$NS_P" taskset -c "$SERVER_CPU" "$PORTLAB_BIN" --log-level warn serve \
        --inetd --udp-port 0 --max-connections 20000 "$@" >"$LAB_TMP/portlab.log" 2>&1 &
    PORTLAB_PID=$!
    LAB_PIDS+=("$PORTLAB_PID")
    wait_http "$NS_P" "http://$P_ADDR/you" "$LAB_TMP/portlab.log" portlab
}
# A second portlab, with --offload, beside the first during the bulk runs.
NS_PO=portlab-bench-offload
lab_ns "$NS_PO"

# Stock smoltcp (bench/src/bin/smoltcp-server.rs) on a TUN of its own in a
# namespace of its own; its kernel side is 10.205.80.1. Two at once for the
# bulk runs (portlab's buffer sizes, and its examples' 64 KiB).
NS_S=portlab-bench-stock
NS_S64=portlab-bench-stock64
S_ADDR=10.205.80.2
lab_ns "$NS_S"
lab_ns "$NS_S64"
STOCK_PID=""
# stock_start NS RECEIVE_KIB LISTENERS [SEND_KIB]: sets STOCK_PID.
stock_start() {
    local ns=$1
    shift
    ip netns exec "$ns" taskset -c "$SERVER_CPU" "$PORTLAB_ROOT/target/release/smoltcp-server" \
        --tun plstock0 --addr "$S_ADDR/24" --buffer "$1" --send-buffer "${3:-$1}" --listeners "$2" \
        >"$LAB_TMP/stock-$ns.log" 2>&1 &
    STOCK_PID=$!
    LAB_PIDS+=("$STOCK_PID")
    local i
    for i in $(seq 100); do
        ip netns exec "$ns" ip link show plstock0 >/dev/null 2>&1 && break
        sleep 0.05
    done
    ip netns exec "$ns" ip addr add 10.205.80.1/24 dev plstock0
    ip netns exec "$ns" ip link set plstock0 up
    wait_http "$ns" "http://$S_ADDR/" "$LAB_TMP/stock-$ns.log" "the stock smoltcp server"
}
# stop_pid PID
stop_pid() {
    kill "$1" 2>/dev/null
    wait "$1" 2>/dev/null
}

# The kernel: servers in one namespace, clients in another, a veth pair between.
NS_KS=portlab-bench-ksrv
NS_KC=portlab-bench-kcli
K_ADDR=10.204.80.2
lab_ns "$NS_KS"
lab_ns "$NS_KC"
lab_veth "$NS_KS" pbench0 "$K_ADDR" "$NS_KC" pbench1 10.204.80.1
offloads() {
    ip netns exec "$NS_KS" ethtool -K pbench0 tso "$1" gso "$1" gro "$1" >/dev/null 2>&1
    ip netns exec "$NS_KC" ethtool -K pbench1 tso "$1" gso "$1" gro "$1" >/dev/null 2>&1
}
mkdir -p "$LAB_TMP/www" "$LAB_TMP/nginx"
# nginx's workers run as nobody, and mktemp made $LAB_TMP for root alone:
# without this every answer of nginx was a 153-byte 403 Forbidden, which
# is what its rows measured until 2026-12-06.
chmod 755 "$LAB_TMP"
# About the size of portlab's /you page.
head -c 300 /dev/zero | tr '\0' 'x' >"$LAB_TMP/www/you"
cat >"$LAB_TMP/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $LAB_TMP/nginx/nginx.pid;
error_log $LAB_TMP/nginx/error.log;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    server {
        listen $K_ADDR:80 reuseport backlog=4096;
        root $LAB_TMP/www;
    }
}
EOF
in_ks() { ip netns exec "$NS_KS" taskset -c "$SERVER_CPU" "$@"; }
in_ks nginx -c "$LAB_TMP/nginx/nginx.conf" &
LAB_PIDS+=($!)
# The same HTTP server code as portlab's, on kernel sockets, with the same services.
in_ks "$PORTLAB_BIN" --log-level warn kernel-serve --listen "$K_ADDR" --port 8080 --inetd \
    --max-connections 20000 >"$LAB_TMP/kernel-serve.log" 2>&1 &
LAB_PIDS+=($!)
in_ks iperf3 -s -B "$K_ADDR" >/dev/null 2>&1 &
LAB_PIDS+=($!)
wait_http "$NS_KC" "http://$K_ADDR/you" "$LAB_TMP/nginx/error.log" nginx
wait_http "$NS_KC" "http://$K_ADDR:8080/you" "$LAB_TMP/kernel-serve.log" "portlab kernel-serve"
# nginx_serves FILE: nginx answers /FILE with 200 and exactly the file's
# bytes, or the run stops (a comparator that serves an error page is no
# comparator).
nginx_serves() {
    local want got
    want="200 $(stat -c %s "$LAB_TMP/www/$1")"
    got=$(ip netns exec "$NS_KC" curl -s -m 5 -o /dev/null -w '%{http_code} %{size_download}' "http://$K_ADDR/$1")
    [ "$got" = "$want" ] || die "nginx answered /$1 with '$got', not '$want' (status, bytes): see $LAB_TMP/nginx/error.log"
}
nginx_serves you
portlab_bench_start

# client NS CMD...: the load generator, pinned.
client() {
    local ns=$1
    shift
    ip netns exec "$ns" taskset -c "$CLIENT_CPU" "$@"
}

# wrk_run NS URL [extra wrk args]: "requests/s errors total_requests".
wrk_run() {
    local ns=$1 url=$2
    shift 2
    client "$ns" wrk -t1 -c50 -d"${WRK_SECONDS:-$DURATION}s" "$@" "$url" 2>&1 |
        python3 -c '
import re, sys
t = sys.stdin.read()
rps = re.search(r"Requests/sec:\s+([\d.]+)", t)
total = re.search(r"(\d+) requests in", t)
errs = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", t))
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
print(f"{float(rps.group(1)) if rps else 0:.0f} {errs + (int(non2xx.group(1)) if non2xx else 0)} {total.group(1) if total else 0}")'
}

echo "== HTTP: keep-alive (${ROUNDS} x ${DURATION} s each) and a new connection per request (${ROUNDS} x ${NEWCONN_DURATION} s)"
for workload in keepalive newconn; do
    extra=()
    WRK_SECONDS=$DURATION
    [ "$workload" = newconn ] && extra=(-H "Connection: close") WRK_SECONDS=$NEWCONN_DURATION
    p=() k=() n=() errs=0
    for r in $(seq "$ROUNDS"); do
        read -r rps e _ < <(wrk_run "$NS_P" "http://$P_ADDR/you" "${extra[@]}")
        p+=("$rps")
        errs=$((errs + e))
        read -r rps e _ < <(wrk_run "$NS_KC" "http://$K_ADDR:8080/you" "${extra[@]}")
        k+=("$rps")
        read -r rps e _ < <(wrk_run "$NS_KC" "http://$K_ADDR/you" "${extra[@]}")
        n+=("$rps")
    done
    record "$workload.portlab" "$(printf '%s\n' "${p[@]}" | median)"
    record "$workload.kernel" "$(printf '%s\n' "${k[@]}" | median)"
    record "$workload.nginx" "$(printf '%s\n' "${n[@]}" | median)"
    record "$workload.errors" "$errs"
    echo "   $workload: portlab ${p[*]}; same server on kernel sockets ${k[*]}; nginx ${n[*]} req/s"
done
unset WRK_SECONDS

# wrk_latency NS URL CONNECTIONS: "requests/s p50_ms" of keep-alive GETs.
wrk_latency() {
    client "$1" wrk -t1 -c"$3" -d"${DURATION}s" --latency "$2" 2>&1 | python3 -c '
import re, sys
t = sys.stdin.read()
rps = re.search(r"Requests/sec:\s+([\d.]+)", t)
p50 = re.search(r"^\s+50%\s+([\d.]+)(us|ms|s)\s*$", t, re.M)
ms = float(p50.group(1)) * {"us": 1e-3, "ms": 1, "s": 1e3}[p50.group(2)] if p50 else 0
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
if bad:
    sys.exit(f"error: {bad.group(1)} answers were not 2xx: {sys.argv[1]}")
print(f"{float(rps.group(1)) if rps else 0:.0f} {ms:.3f}")' "$2"
}

# The live page (issue #18): portlab's / against nginx serving the very same
# bytes as a static file, keep-alive with 1 and 50 connections, and loaded in
# headless Chromium. nginx's veth has its offloads on here (the default),
# and off for one more run each round, as portlab sends by default;
# portlab --offload (also used by the bulk runs below) serves the page too.
# page_server NS WHAT FLAGS...: `portlab serve FLAGS` pinned to the server
# CPU in NS, waited for; sets PAGE_PID.
page_server() {
    local ns=$1 what=$2
    shift 2
    ip netns exec "$ns" taskset -c "$SERVER_CPU" "$PORTLAB_BIN" --log-level warn serve \
        --udp-port 0 "$@" >"$LAB_TMP/$ns.log" 2>&1 &
    PAGE_PID=$!
    LAB_PIDS+=("$PAGE_PID")
    wait_http "$ns" "http://$P_ADDR/you" "$LAB_TMP/$ns.log" "$what"
}
page_server "$NS_PO" "portlab --offload" --inetd --offload
OFFLOAD_PID=$PAGE_PID
# And the page served as nginx serves it, by one thread, an event loop, for
# this part only: with segmentation offload against nginx with the veth's
# offloads on; without (1500-byte segments, one TUN write each) against
# nginx with them off, the same serving model and segments on both sides.
NS_PE=portlab-bench-evloop
NS_PS=portlab-bench-evloop-seg
lab_ns "$NS_PE"
lab_ns "$NS_PS"
page_server "$NS_PE" "portlab --model event-loop --offload" --model event-loop --offload
EVLOOP_PID=$PAGE_PID
page_server "$NS_PS" "portlab --model event-loop" --model event-loop
EVLOOP_SEG_PID=$PAGE_PID
echo "== the live page: / keep-alive with 1 and 50 connections, and in Chromium (${ROUNDS} x ${DURATION} s)"
for c in 1 50; do
    # The page as portlab serves it under this load (with 50 connections
    # it lists 50 more rows), for nginx to serve as /page.html.
    client "$NS_P" wrk -t1 -c"$c" -d2s "http://$P_ADDR/" >/dev/null 2>&1 &
    sleep 1
    ip netns exec "$NS_P" curl -s -m 5 -o "$LAB_TMP/www/page.html" "http://$P_ADDR/"
    wait $!
    nginx_serves page.html
    record "page.c$c.bytes" "$(stat -c %s "$LAB_TMP/www/page.html")"
    echo "   the page with $c connection(s): $(stat -c %s "$LAB_TMP/www/page.html") bytes (nginx serves the same bytes as /page.html)"
    p=() n=() pl=() nl=() po=() pe=() ps=() nf=()
    for r in $(seq "$ROUNDS"); do
        read -r rps ms < <(wrk_latency "$NS_P" "http://$P_ADDR/" "$c")
        p+=("$rps") pl+=("$ms")
        read -r rps ms < <(wrk_latency "$NS_PO" "http://$P_ADDR/" "$c")
        po+=("$rps")
        read -r rps ms < <(wrk_latency "$NS_PE" "http://$P_ADDR/" "$c")
        pe+=("$rps")
        read -r rps ms < <(wrk_latency "$NS_PS" "http://$P_ADDR/" "$c")
        ps+=("$rps")
        read -r rps ms < <(wrk_latency "$NS_KC" "http://$K_ADDR/page.html" "$c")
        n+=("$rps") nl+=("$ms")
        # And as portlab sends it by default: segments of 1500 bytes, the
        # veth's offloads off (each segment through the receiving kernel).
        offloads off
        read -r rps ms < <(wrk_latency "$NS_KC" "http://$K_ADDR/page.html" "$c")
        offloads on
        nf+=("$rps")
    done
    record "page.c$c.portlab" "$(printf '%s\n' "${p[@]}" | median)"
    record "page.c$c.nginx" "$(printf '%s\n' "${n[@]}" | median)"
    record "page.c$c.nginx_segments" "$(printf '%s\n' "${nf[@]}" | median)"
    record "page.c$c.portlab_offload" "$(printf '%s\n' "${po[@]}" | median)"
    record "page.c$c.portlab_evloop" "$(printf '%s\n' "${pe[@]}" | median)"
    record "page.c$c.portlab_evloop_segments" "$(printf '%s\n' "${ps[@]}" | median)"
    record "page.c$c.p50.portlab" "$(printf '%s\n' "${pl[@]}" | median)"
    record "page.c$c.p50.nginx" "$(printf '%s\n' "${nl[@]}" | median)"
    echo "   $c connection(s): portlab ${p[*]} req/s (p50 ${pl[*]} ms); portlab --offload ${po[*]} req/s; portlab --model event-loop --offload ${pe[*]} req/s; portlab --model event-loop ${ps[*]} req/s; nginx ${n[*]} req/s (p50 ${nl[*]} ms), with the veth's offloads off ${nf[*]} req/s"
done
if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then
    LOADS=$([ "$QUICK" = 1 ] && echo 5 || echo 20)
    ip netns exec "$NS_P" curl -s -m 5 -o "$LAB_TMP/www/page.html" "http://$P_ADDR/"
    nginx_serves page.html
    pm=$(ip netns exec "$NS_P" timeout 120 python3 "$PORTLAB_ROOT/scripts/lib/cdp.py" load "http://$P_ADDR/" "$LOADS" | json_field median_ms)
    nm=$(ip netns exec "$NS_KC" timeout 120 python3 "$PORTLAB_ROOT/scripts/lib/cdp.py" load "http://$K_ADDR/page.html" "$LOADS" | json_field median_ms)
    record page.load.portlab "${pm:-0}"
    record page.load.nginx "${nm:-0}"
    echo "   Chromium, $LOADS loads each: portlab ${pm} ms, nginx ${nm} ms (median, navigation start to load event end)"
else
    die "chromium is missing: apt-get install chromium"
fi
stop_pid "$EVLOOP_PID"
stop_pid "$EVLOOP_SEG_PID"

echo "== latency: 1-byte ping-pong, $PINGS round trips"
p50=() p99=() k50=() k99=()
for r in $(seq "$ROUNDS"); do
    out=$(client "$NS_P" "$BENCH_BIN" pingpong "$P_ADDR:7" --count "$PINGS")
    p50+=("$(echo "$out" | json_field p50_us)")
    p99+=("$(echo "$out" | json_field p99_us)")
    out=$(client "$NS_KC" "$BENCH_BIN" pingpong "$K_ADDR:7" --count "$PINGS")
    k50+=("$(echo "$out" | json_field p50_us)")
    k99+=("$(echo "$out" | json_field p99_us)")
done
record latency.p50.portlab "$(printf '%s\n' "${p50[@]}" | median)"
record latency.p99.portlab "$(printf '%s\n' "${p99[@]}" | median)"
record latency.p50.kernel "$(printf '%s\n' "${k50[@]}" | median)"
record latency.p99.kernel "$(printf '%s\n' "${k99[@]}" | median)"
echo "   portlab p50 ${p50[*]} p99 ${p99[*]}; kernel p50 ${k50[*]} p99 ${k99[*]} (µs)"

bulk_gbit() { client "$1" "$BENCH_BIN" bulk "$2" "$3" --bytes "$BULK_BYTES" | json_field gbit_s; }
echo "== bulk: $((BULK_BYTES >> 20)) MiB each direction, $BULK_ROUNDS rounds, every server in each round"
# All servers run at once, idle but for the transfer at hand, so that each
# round measures every one of them within seconds of the others.
stock_start "$NS_S" "$PORTLAB_RX_KIB" 1 "$PORTLAB_TX_KIB"
STOCK_SAME_PID=$STOCK_PID
stock_start "$NS_S64" 64 1
STOCK_64_PID=$STOCK_PID
iperf_gbit() {
    client "$NS_KC" iperf3 -c "$K_ADDR" -n "$BULK_BYTES" -J "$@" 2>/dev/null |
        python3 -c 'import json,sys; print(round(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"] / 1e9, 3))'
}
# bulk_one NAME: one transfer in direction $dir to port $port, appended to
# the array NAME (p, ss, s64, koff, ioff, po, kon, ion).
bulk_one() {
    local v
    local -n into=$1
    case $1 in
        p) v=$(bulk_gbit "$NS_P" "$dir" "$P_ADDR:$port") ;;
        ss) v=$(bulk_gbit "$NS_S" "$dir" "$S_ADDR:$port") ;;
        s64) v=$(bulk_gbit "$NS_S64" "$dir" "$S_ADDR:$port") ;;
        po) v=$(bulk_gbit "$NS_PO" "$dir" "$P_ADDR:$port") ;;
        koff) offloads off && v=$(bulk_gbit "$NS_KC" "$dir" "$K_ADDR:$port") ;;
        ioff) offloads off && v=$(iperf_gbit $([ "$dir" = recv ] && echo -R)) ;;
        kon) offloads on && v=$(bulk_gbit "$NS_KC" "$dir" "$K_ADDR:$port") ;;
        ion) offloads on && v=$(iperf_gbit $([ "$dir" = recv ] && echo -R)) ;;
    esac
    into+=("$v")
}
BULK_ORDER=(p ss s64 koff ioff po kon ion)
for dir in recv send; do
    port=$([ "$dir" = recv ] && echo 19 || echo 9)
    # One unmeasured transfer each first: the first transfer after start-up
    # was slow for every server alike.
    for name in "${BULK_ORDER[@]}"; do bulk_one "$name"; done
    p=() po=() ss=() s64=() koff=() kon=() ioff=() ion=()
    for r in $(seq "$BULK_ROUNDS"); do
        # Each round starts one server further on, so that none always
        # follows the same one (the kernel's 20 Gbit/s runs, say).
        for i in "${!BULK_ORDER[@]}"; do
            bulk_one "${BULK_ORDER[$(((i + r - 1) % ${#BULK_ORDER[@]}))]}"
        done
    done
    record "bulk.$dir.portlab" "$(printf '%s\n' "${p[@]}" | median)"
    record "bulk.$dir.portlab_offload" "$(printf '%s\n' "${po[@]}" | median)"
    record "bulk.$dir.stock_same" "$(printf '%s\n' "${ss[@]}" | median)"
    record "bulk.$dir.stock_64" "$(printf '%s\n' "${s64[@]}" | median)"
    record "bulk.$dir.kernel_off" "$(printf '%s\n' "${koff[@]}" | median)"
    record "bulk.$dir.kernel_on" "$(printf '%s\n' "${kon[@]}" | median)"
    record "bulk.$dir.iperf_off" "$(printf '%s\n' "${ioff[@]}" | median)"
    record "bulk.$dir.iperf_on" "$(printf '%s\n' "${ion[@]}" | median)"
    echo "   $dir: portlab ${p[*]}; stock smoltcp, $PORTLAB_RX_KIB KiB receive and $PORTLAB_TX_KIB KiB send buffers ${ss[*]}, 64 KiB ${s64[*]}"
    echo "   $dir: kernel offloads off ${koff[*]}; iperf3 ${ioff[*]} (Gbit/s)"
    echo "   $dir: portlab --offload ${po[*]}; kernel offloads on ${kon[*]}; iperf3 ${ion[*]} (Gbit/s)"
done
# The same kernel -> stack transfer at a fixed rate the kernel paces: at equal
# load, CPU time of the server process per GiB. Flat out, the kernel's own
# sending work lands partly inside the receiver's writes of ACKs, in shares
# that change from run to run; at a fixed rate both receivers keep idle time
# and the figure is each stack's own cost.
cpu_ms_per_gib() {
    local pid=$1 ns=$2 addr=$3 before after
    before=$(cpu_ticks "$pid")
    client "$ns" "$BENCH_BIN" bulk send "$addr:9" --bytes "$FIXED_BYTES" --rate-mbit "$FIXED_MBIT" >/dev/null ||
        die "a paced transfer to $addr failed"
    after=$(cpu_ticks "$pid")
    python3 -c "print(round(($after - $before) / $(getconf CLK_TCK) * 1000 * (1 << 30) / $FIXED_BYTES))"
}
fp=() fs=()
for r in $(seq "$BULK_ROUNDS"); do
    fp+=("$(cpu_ms_per_gib "$PORTLAB_PID" "$NS_P" "$P_ADDR")")
    fs+=("$(cpu_ms_per_gib "$STOCK_SAME_PID" "$NS_S" "$S_ADDR")")
done
record fixed.portlab "$(printf '%s\n' "${fp[@]}" | median)"
record fixed.stock_same "$(printf '%s\n' "${fs[@]}" | median)"
record fixed.mbit "$FIXED_MBIT"
echo "   send at $FIXED_MBIT Mbit/s, CPU ms per GiB: portlab ${fp[*]}; stock smoltcp, same buffers ${fs[*]}"
stop_pid "$STOCK_SAME_PID"
stop_pid "$STOCK_64_PID"
stop_pid "$OFFLOAD_PID"

# flat_cost NAME NS ADDR PID: for each size in HOLDS, hold that many idle
# connections to ADDR:80 and run keep-alive GETs beside them; records the
# CPU time of process PID per request, and its memory.
flat_cost() {
    local name=$1 ns=$2 addr=$3 pid=$4 n fifo holder i us before after rps e total
    proc_field() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$pid/status"; }
    record "memory.$name.rss_kib.0" "$(proc_field VmRSS)"
    record "memory.$name.vsz_kib.0" "$(proc_field VmSize)"
    for n in $HOLDS; do
        fifo="$LAB_TMP/hold-$name-$n.in"
        mkfifo "$fifo"
        client "$ns" "$BENCH_BIN" hold "$addr:80" --count "$n" <"$fifo" >"$LAB_TMP/hold-$n.out" 2>&1 &
        holder=$!
        exec 7>"$fifo"
        for i in $(seq 1200); do
            grep -q held "$LAB_TMP/hold-$n.out" && break
            kill -0 "$holder" 2>/dev/null || break
            sleep 0.1
        done
        grep -q held "$LAB_TMP/hold-$n.out" || { cat "$LAB_TMP/hold-$n.out"; die "$name: could not hold $n connections"; }
        sleep 1
        record "memory.$name.rss_kib.$n" "$(proc_field VmRSS)"
        record "memory.$name.vsz_kib.$n" "$(proc_field VmSize)"
        us=() rates=()
        for r in $(seq "$ROUNDS"); do
            before=$(cpu_ticks "$pid")
            read -r rps e total < <(wrk_run "$ns" "http://$addr/you")
            after=$(cpu_ticks "$pid")
            us+=("$(python3 -c "print(round(($after - $before) / $(getconf CLK_TCK) * 1e6 / max($total, 1), 2))")")
            rates+=("$rps")
        done
        record "flatcost.$name.$n" "$(printf '%s\n' "${us[@]}" | median)"
        record "flatcost_rps.$name.$n" "$(printf '%s\n' "${rates[@]}" | median)"
        if [ "$name" = portlab ] && [ "$n" = "${HOLDS##* }" ]; then
            # /connections.json with one connection beside the idle ones,
            # against nginx serving a file of the same bytes.
            client "$ns" curl -s -m 5 -o "$LAB_TMP/www/connections.json" "http://$addr/connections.json"
            nginx_serves connections.json
            local jp=() jn=() jpl=() jnl=() js jms
            for r in $(seq "$ROUNDS"); do
                read -r js jms < <(wrk_latency "$ns" "http://$addr/connections.json" 1)
                jp+=("$js") jpl+=("$jms")
                read -r js jms < <(wrk_latency "$NS_KC" "http://$K_ADDR/connections.json" 1)
                jn+=("$js") jnl+=("$jms")
            done
            record json.portlab "$(printf '%s\n' "${jp[@]}" | median)"
            record json.nginx "$(printf '%s\n' "${jn[@]}" | median)"
            record json.p50.portlab "$(printf '%s\n' "${jpl[@]}" | median)"
            record json.bytes "$(stat -c %s "$LAB_TMP/www/connections.json")"
            echo "   /connections.json ($(stat -c %s "$LAB_TMP/www/connections.json") bytes) beside $n idle, 1 connection:" \
                 "portlab ${jp[*]} req/s (p50 ${jpl[*]} ms); nginx, the same bytes: ${jn[*]} req/s (p50 ${jnl[*]} ms)"
        fi
        echo "   $name, $n idle connections: ${us[*]} µs of CPU per request; RSS $(proc_field VmRSS) KiB"
        exec 7>&-
        wait "$holder"
        sleep 1
    done
}

echo "== flat cost and memory: keep-alive GETs beside idle connections"
portlab_stop INT
portlab_bench_start --model event-loop --header-timeout 3600
flat_cost portlab "$NS_P" "$P_ADDR" "$PORTLAB_PID"
portlab_stop INT
# Stock smoltcp keeps 64 sockets listening, so that wrk's 50 connections get in.
stock_start "$NS_S" 64 64
flat_cost stock "$NS_S" "$S_ADDR" "$STOCK_PID"
stop_pid "$STOCK_PID"

mkdir -p target/bench
MACHINE="$(nproc) vCPU ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), Linux $(uname -r)"
python3 - "$RESULTS" "$MACHINE" "$DURATION" "$ROUNDS" "$BULK_BYTES" "$PINGS" "$HOLDS" "$BULK_ROUNDS" "$NEWCONN_DURATION" <<'PY'
import json, sys
path, machine, duration, rounds, bulk_bytes, pings, holds, bulk_rounds, newconn_duration = sys.argv[1:10]
r = {}
for line in open(path):
    k, v = line.split()
    r[k] = float(v)
holds = [int(h) for h in holds.split()]
rows = []  # workload, portlab, comparator name, comparator, ratio, target text, meets

def row(name, p, cname, c, target, higher_is_better=True, unit=""):
    ratio = (p / c) if c else 0.0
    meets = ratio >= target if higher_is_better else ratio <= target
    rows.append({"workload": name, "portlab": p, "comparator": cname, "comparator_value": c,
                 "unit": unit, "ratio": round(ratio, 3),
                 "target": (">= " if higher_is_better else "<= ") + str(target), "meets": meets})

def reference(name, p, cname, c, unit):
    rows.append({"workload": name, "portlab": p, "comparator": cname, "comparator_value": c, "unit": unit,
                 "ratio": round(p / c, 3) if c else 0.0, "target": None, "meets": None})

rx, tx = int(r["rx_kib"]), int(r["tx_kib"])
big = max(holds)
for d, label in (("recv", "bulk stack -> kernel"), ("send", "bulk kernel -> stack")):
    p = r[f"bulk.{d}.portlab"]
    row(label, p, f"stock smoltcp, same buffers ({rx} KiB receive, {tx} KiB send)", r[f"bulk.{d}.stock_same"], 1.0, unit="Gbit/s")
    row(label, p, "stock smoltcp, its examples' 64 KiB buffers", r[f"bulk.{d}.stock_64"], 1.3, unit="Gbit/s")
    row(label, p, "same services, kernel over veth, offloads off", r[f"bulk.{d}.kernel_off"], 0.5, unit="Gbit/s")
    row(label + ", portlab --offload", r[f"bulk.{d}.portlab_offload"], "same services, kernel, offloads on",
        r[f"bulk.{d}.kernel_on"], 0.5, unit="Gbit/s")
fixed_gbit = r["fixed.mbit"] / 1000
rows.append({"workload": f"CPU per GiB, kernel -> stack at a fixed {fixed_gbit:g} Gbit/s", "portlab": r["fixed.portlab"],
             "comparator": f"stock smoltcp, same buffers", "comparator_value": r["fixed.stock_same"],
             "unit": "ms", "ratio": round(r["fixed.portlab"] / r["fixed.stock_same"], 3) if r["fixed.stock_same"] else 0.0,
             "target": None, "meets": None})
row("keep-alive GET, 50 connections", r["keepalive.portlab"], "same server, kernel sockets", r["keepalive.kernel"], 0.6, unit="req/s")
row("new connection per request, 50 at a time", r["newconn.portlab"], "same server, kernel sockets", r["newconn.kernel"], 0.5, unit="req/s")
# The live page. As everywhere above, portlab as started (1500-byte segments
# through the TUN) against the kernel with the veth's offloads off, and
# portlab --offload against the offloads on; the first also against nginx
# with its offloads on, for reference: what a user comparing the two
# defaults sees.
for c in (1, 50):
    noun = "connection" if c == 1 else "connections"
    row(f"/ (the live page, {int(r[f'page.c{c}.bytes'])} bytes) keep-alive, {c} {noun}", r[f"page.c{c}.portlab"],
        "nginx, the same bytes as a file, veth offloads off", r[f"page.c{c}.nginx_segments"], 0.5, unit="req/s")
    if c == 1:
        row("/ keep-alive, 1 connection: p50", r["page.c1.p50.portlab"], "target 2 ms", 2.0, 1.0, False, "ms")
    reference(f"/ keep-alive, {c} {noun}", r[f"page.c{c}.portlab"],
              "nginx, the same bytes as a file, veth offloads on", r[f"page.c{c}.nginx"], "req/s")
row("/ keep-alive, 1 connection, portlab --offload", r["page.c1.portlab_offload"], "nginx, the same bytes as a file, veth offloads on", r["page.c1.nginx"], 0.5, unit="req/s")
row("/ keep-alive, 50 connections, portlab --offload", r["page.c50.portlab_offload"], "nginx, the same bytes as a file, veth offloads on", r["page.c50.nginx"], 0.5, unit="req/s")
row("/ keep-alive, 1 connection, portlab --model event-loop", r["page.c1.portlab_evloop_segments"], "nginx, the same bytes as a file, veth offloads off", r["page.c1.nginx_segments"], 0.5, unit="req/s")
row("/ keep-alive, 50 connections, portlab --model event-loop", r["page.c50.portlab_evloop_segments"], "nginx, the same bytes as a file, veth offloads off", r["page.c50.nginx_segments"], 0.5, unit="req/s")
row("/ keep-alive, 1 connection, portlab --model event-loop --offload", r["page.c1.portlab_evloop"], "nginx, the same bytes as a file, veth offloads on", r["page.c1.nginx"], 0.5, unit="req/s")
row("/ keep-alive, 50 connections, portlab --model event-loop --offload", r["page.c50.portlab_evloop"], "nginx, the same bytes as a file, veth offloads on", r["page.c50.nginx"], 0.5, unit="req/s")
row(f"/connections.json, 1 connection beside {big} idle", r["json.portlab"], f"nginx, the same {int(r['json.bytes'])} bytes as a file, veth offloads on", r["json.nginx"], 0.5, unit="req/s")
rows.append({"workload": "/ loaded in headless Chromium (median)", "portlab": r["page.load.portlab"],
             "comparator": "nginx, the same bytes as a file", "comparator_value": r["page.load.nginx"], "unit": "ms",
             "ratio": round(r["page.load.portlab"] / r["page.load.nginx"], 3) if r["page.load.nginx"] else 0.0,
             "target": None, "meets": None})
row("latency p50, 1-byte ping-pong", r["latency.p50.portlab"], "kernel over veth", r["latency.p50.kernel"], 1.5, False, "µs")
row("latency p99, 1-byte ping-pong", r["latency.p99.portlab"], "kernel over veth", r["latency.p99.kernel"], 2.0, False, "µs")
big = max(holds)
row(f"flat cost: CPU per request beside {big} idle connections", r[f"flatcost.portlab.{big}"], "beside 10",
    r["flatcost.portlab.10"], 1.25, False, "µs")
per_conn = (r[f"memory.portlab.rss_kib.{big}"] - r["memory.portlab.rss_kib.10"]) / (big - 10)
per_conn_v = (r[f"memory.portlab.vsz_kib.{big}"] - r["memory.portlab.vsz_kib.10"]) / (big - 10)
rows.append({"workload": f"memory per idle connection (at {big})", "portlab": round(per_conn, 2),
             "comparator": "target", "comparator_value": 16, "unit": "KiB resident", "ratio": None,
             "target": "<= 16 KiB", "meets": per_conn <= 16, "virtual_kib": round(per_conn_v, 1)})
errors = int(r["newconn.errors"] + r["keepalive.errors"])
stock_per_conn = (r[f"memory.stock.rss_kib.{big}"] - r["memory.stock.rss_kib.10"]) / (big - 10)

def fmt(v):
    return f"{v:,.0f}" if v >= 100 else f"{v:.2f}"

lines = [f"Machine: {machine}. {rounds} round(s); wrk runs of {duration} s ({newconn_duration} s with a new connection "
         f"per request); bulk {int(bulk_bytes) >> 20} MiB, "
         f"{bulk_rounds} round(s); "
         f"{pings} ping-pongs; medians. portlab and the servers on CPU 0, the load on CPU 1.", "",
         "| workload | portlab | comparator | ratio | target |", "|---|---|---|---|---|"]
for x in rows:
    verdict = "meets" if x["meets"] else "falls short"
    if x["target"] is None:
        # A figure to explain others by, with no target of its own.
        lines.append(f"| {x['workload']} | {fmt(x['portlab'])} {x['unit']} | {x['comparator']}: {fmt(x['comparator_value'])} {x['unit']} | "
                     f"{x['ratio']:.2f} | (for reference) |")
    elif x["ratio"] is None:
        lines.append(f"| {x['workload']} | {x['portlab']} {x['unit']} (virtual {x['virtual_kib']} KiB) | | | {x['target']} ({verdict}) |")
    else:
        # Two decimals, or three where two would round onto the target
        # and hide the verdict (0.499 is not 0.50).
        ratio = f"{x['ratio']:.2f}"
        if ratio == f"{float(x['target'][3:]):.2f}":
            ratio = f"{x['ratio']:.3f}"
        lines.append(f"| {x['workload']} | {fmt(x['portlab'])} {x['unit']} | {x['comparator']}: {fmt(x['comparator_value'])} | "
                     f"{ratio} | {x['target']} ({verdict}) |")
lines += ["", "References in the same run: "
          f"nginx {fmt(r['keepalive.nginx'])} req/s keep-alive, {fmt(r['newconn.nginx'])} req/s new connections; "
          f"iperf3 over veth {r['bulk.recv.iperf_off']:.2f} / {r['bulk.send.iperf_off']:.2f} Gbit/s offloads off, "
          f"{r['bulk.recv.iperf_on']:.2f} / {r['bulk.send.iperf_on']:.2f} on (server to client / client to server). "
          f"portlab's event-loop model (one thread, like nginx): {fmt(r['flatcost_rps.portlab.10'])} req/s keep-alive "
          f"({r['flatcost_rps.portlab.10'] / r['keepalive.nginx']:.2f}x nginx). "
          f"HTTP errors at portlab: {errors}.", "",
          "| idle connections | " + " | ".join(str(h) for h in holds) + " |",
          "|---|" + "---|" * len(holds),
          "| portlab: CPU per request | " + " | ".join(f"{r[f'flatcost.portlab.{h}']:.2f} µs" for h in holds) + " |",
          "| stock smoltcp: CPU per request | " + " | ".join(f"{r[f'flatcost.stock.{h}']:.2f} µs" for h in holds) + " |",
          "| portlab: resident memory | " + " | ".join(f"{r[f'memory.portlab.rss_kib.{h}'] / 1024:.1f} MiB" for h in holds) + " |",
          "| stock smoltcp: resident memory | " + " | ".join(f"{r[f'memory.stock.rss_kib.{h}'] / 1024:.1f} MiB" for h in holds) + " |",
          "", f"Per idle connection: portlab {per_conn:.1f} KiB resident ({per_conn_v:.0f} KiB virtual: "
          f"its buffers, mapped but untouched); stock smoltcp {stock_per_conn:.1f} KiB resident."]
print("\n".join(lines))
open("target/bench/results.md", "w").write("\n".join(lines) + "\n")
json.dump({"machine": machine, "rounds": int(rounds), "bulk_rounds": int(bulk_rounds),
           "wrk_seconds": int(duration), "newconn_wrk_seconds": int(newconn_duration), "bulk_bytes": int(bulk_bytes),
           "pings": int(pings), "rows": rows, "raw": r}, open("target/bench/results.json", "w"), indent=2)
PY
echo
echo "written: target/bench/results.md, target/bench/results.json"
