#!/usr/bin/env bash
# Benchmarks: portlab against the Linux kernel, measured in the same run.
#
#   sudo scripts/bench.sh            rounds of 10 s per workload
#   sudo scripts/bench.sh --quick    one short round (a smoke test, as in CI)
#
# Workloads so far (see issue #7 for the full suite still to come):
#   keepalive   small GET, 50 keep-alive connections (wrk)
#   newconn     a new connection per request, 50 at a time (wrk, Connection: close)
# Comparator: nginx on the kernel's stack, between two namespaces over veth.
# The load generator and the server are pinned to different CPUs (taskset)
# where the machine has two. Prints a table with ratios and writes it as
# Markdown and JSON to target/bench/. Everything runs inside namespaces this
# script creates and deletes.
set -u
cd "$(dirname "$0")/.."
. scripts/lib/netns.sh

QUICK=0
[ "${1:-}" = --quick ] && QUICK=1
DURATION=$([ "$QUICK" = 1 ] && echo 2 || echo 10)
ROUNDS=$([ "$QUICK" = 1 ] && echo 1 || echo 3)

require_root "scripts/bench.sh"
for tool in wrk nginx taskset; do
    command -v "$tool" >/dev/null || die "$tool is missing: apt-get install wrk nginx-light util-linux"
done
cargo build --release --quiet || die "the build failed"
lab_init

CPUS=$(nproc)
SERVER_CPU=0
CLIENT_CPU=$([ "$CPUS" -ge 2 ] && echo 1 || echo 0)
pin_client() { taskset -c "$CLIENT_CPU" "$@"; }

# portlab: the stack on a TUN in its own namespace; wrk from the kernel side.
NS_P=portlab-bench-stack
lab_ns "$NS_P"
portlab_bench_start() {
    ip netns exec "$NS_P" taskset -c "$SERVER_CPU" "$PORTLAB_BIN" --log-level warn serve \
        --events "$LAB_TMP/bench.jsonl" --udp-port 0 --max-connections 10000 >"$LAB_TMP/portlab.log" 2>&1 &
    PORTLAB_PID=$!
    LAB_PIDS+=("$PORTLAB_PID")
    local i
    for i in $(seq 100); do
        ip netns exec "$NS_P" curl -s -m 1 -o /dev/null http://10.203.80.2/you && return 0
        sleep 0.05
    done
    die "portlab did not start"
}

# The kernel: nginx in one namespace, wrk in another, a veth pair between.
NS_KS=portlab-bench-ksrv
NS_KC=portlab-bench-kcli
lab_ns "$NS_KS"
lab_ns "$NS_KC"
ip link add pbench0 netns "$NS_KS" type veth peer name pbench1 netns "$NS_KC"
ip netns exec "$NS_KS" ip addr add 10.204.80.2/24 dev pbench0
ip netns exec "$NS_KC" ip addr add 10.204.80.1/24 dev pbench1
ip netns exec "$NS_KS" ip link set pbench0 up
ip netns exec "$NS_KC" ip link set pbench1 up
mkdir -p "$LAB_TMP/www" "$LAB_TMP/nginx"
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
        listen 10.204.80.2:80 reuseport backlog=4096;
        root $LAB_TMP/www;
    }
}
EOF
ip netns exec "$NS_KS" taskset -c "$SERVER_CPU" nginx -c "$LAB_TMP/nginx/nginx.conf" &
LAB_PIDS+=($!)
for i in $(seq 100); do
    ip netns exec "$NS_KC" curl -s -m 1 -o /dev/null http://10.204.80.2/you && break
    sleep 0.05
done

# wrk_rps NS URL [extra wrk args]: requests per second, and errors.
wrk_rps() {
    local ns=$1 url=$2
    shift 2
    ip netns exec "$ns" taskset -c "$CLIENT_CPU" wrk -t1 -c50 -d"${DURATION}s" "$@" "$url" 2>&1 |
        python3 -c '
import re, sys
t = sys.stdin.read()
rps = re.search(r"Requests/sec:\s+([\d.]+)", t)
errs = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", t))
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
print(f"{float(rps.group(1)) if rps else 0:.0f} {errs + (int(non2xx.group(1)) if non2xx else 0)}")'
}

median() { sort -n | awk '{ a[NR] = $1 } END { print (NR ? a[int((NR + 1) / 2)] : 0) }'; }

portlab_bench_start
declare -A RESULT ERRORS
for workload in keepalive newconn; do
    extra=()
    [ "$workload" = newconn ] && extra=(-H "Connection: close")
    p_runs=() k_runs=() errs=0
    for r in $(seq "$ROUNDS"); do
        # Interleaved: the same conditions for both.
        read -r rps e < <(wrk_rps "$NS_P" http://10.203.80.2/you "${extra[@]}")
        p_runs+=("$rps")
        errs=$((errs + e))
        read -r rps e < <(wrk_rps "$NS_KC" http://10.204.80.2/you "${extra[@]}")
        k_runs+=("$rps")
    done
    RESULT[$workload,portlab]=$(printf '%s\n' "${p_runs[@]}" | median)
    RESULT[$workload,kernel]=$(printf '%s\n' "${k_runs[@]}" | median)
    ERRORS[$workload]=$errs
done

mkdir -p target/bench
MACHINE="$(nproc) vCPU, $(uname -r)"
python3 - "$MACHINE" "$DURATION" "$ROUNDS" \
    "${RESULT[keepalive,portlab]}" "${RESULT[keepalive,kernel]}" "${ERRORS[keepalive]}" \
    "${RESULT[newconn,portlab]}" "${RESULT[newconn,kernel]}" "${ERRORS[newconn]}" <<'PY'
import json, sys
machine, duration, rounds = sys.argv[1], sys.argv[2], sys.argv[3]
rows = [
    ("keep-alive GET, 50 connections", 0.6, *map(float, sys.argv[4:7])),
    ("new connection per request, 50 at a time", 0.5, *map(float, sys.argv[7:10])),
]
lines = [f"Machine: {machine}; {rounds} round(s) of {duration} s, medians; nginx on the kernel over veth.", "",
         "| workload | portlab req/s | kernel req/s | ratio | target | errors (portlab) |",
         "|---|---|---|---|---|---|"]
out = []
for name, target, p, k, errs in rows:
    ratio = p / k if k else 0
    verdict = "meets" if ratio >= target else "falls short"
    lines.append(f"| {name} | {p:.0f} | {k:.0f} | {ratio:.2f} | >= {target} ({verdict}) | {int(errs)} |")
    out.append({"workload": name, "portlab_rps": p, "kernel_rps": k, "ratio": ratio, "target": target,
                "meets": ratio >= target, "portlab_errors": int(errs)})
print("\n".join(lines))
open("target/bench/results.md", "w").write("\n".join(lines) + "\n")
json.dump({"machine": machine, "duration_s": int(duration), "rounds": int(rounds), "results": out},
          open("target/bench/results.json", "w"), indent=2)
PY
echo
echo "written: target/bench/results.md, target/bench/results.json"
