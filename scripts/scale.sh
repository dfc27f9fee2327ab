#!/usr/bin/env bash
# The live page at scale: N idle connections from many client addresses
# held open against `portlab serve` in a namespace, then the page and
# /connections.json fetched as a browser would, with filters and paging.
# Checks that every answer stays under 256 KiB and is served in under
# 100 ms, and that counts, filters and pages are right.
#
#   sudo scripts/scale.sh                   100,000 connections (by hand; about a minute)
#   sudo scripts/scale.sh --connections N   N connections (the namespace suite runs 10,000)
set -u
. "$(dirname "$0")/lib/netns.sh"

N=100000
while [ $# -gt 0 ]; do
    case "$1" in
        --connections) N=$2; shift 2 ;;
        *) die "usage: scripts/scale.sh [--connections N]" ;;
    esac
done
require_root "scripts/scale.sh"
BENCH_BIN="$PORTLAB_ROOT/target/release/portlab-bench"
[ -x "$PORTLAB_BIN" ] && [ -x "$BENCH_BIN" ] || die "build first: cargo build --release"
command -v curl >/dev/null || die "curl is missing: apt-get install curl"
lab_init

NS=pl-scale-$$
ADDR=10.203.80.2
EV="$LAB_TMP/events.jsonl"
LOG="$LAB_TMP/portlab.log"
lab_ns "$NS"
in_ns() { ip netns exec "$NS" "$@"; }
mem_avail_kib() { awk '$1 == "MemAvailable:" { print $2 }' /proc/meminfo; }

# One client address per 12,500 connections (each has about 28,000 ports
# towards port 80), at least two: the counts by remote host have something to count.
HOSTS=$(( (N + 12499) / 12500 ))
[ "$HOSTS" -lt 2 ] && HOSTS=2
portlab_start "$NS" "$EV" "$LOG" --model event-loop --header-timeout 3600 \
    --max-connections $((N + 1000)) --max-sockets $((N + 1000)) --udp-port 0
for i in $(seq "$HOSTS"); do
    in_ns ip addr add "10.203.80.$((100 + i))/24" dev portlab0
done
mem_before=$(mem_avail_kib)
rss() { awk '$1 == "VmRSS:" { print $2 }' "/proc/$PORTLAB_PID/status"; }
rss_before=$(rss)

echo "== holding $N idle connections from $HOSTS client addresses, one holder process each"
# One process per address: a process may have only so many descriptors
# (here the hard limit can be 20,000, and root may lack the capability to
# raise it). The stack itself needs none per connection.
FIFO="$LAB_TMP/hold.in"
mkfifo "$FIFO"
HOLDERS=()
for i in $(seq "$HOSTS"); do
    share=$(( N / HOSTS + (i <= N % HOSTS ? 1 : 0) ))
    in_ns "$BENCH_BIN" hold "$ADDR:80" --count "$share" --from "10.203.80.$((100 + i))" \
        <"$FIFO" >"$LAB_TMP/hold-$i.out" 2>&1 &
    HOLDERS+=($!)
    LAB_PIDS+=($!)
done
exec 7>"$FIFO"
t0=$(date +%s.%N)
for t in $(seq 3000); do
    [ "$(cat "$LAB_TMP"/hold-*.out | grep -c held)" = "$HOSTS" ] && break
    for pid in "${HOLDERS[@]}"; do
        kill -0 "$pid" 2>/dev/null || { cat "$LAB_TMP"/hold-*.out; die "a holder gave up"; }
    done
    sleep 0.1
done
[ "$(cat "$LAB_TMP"/hold-*.out | grep -c held)" = "$HOSTS" ] || { cat "$LAB_TMP"/hold-*.out; die "could not hold $N connections"; }
echo "   $N connections open after $(python3 -c "import time; print(f'{time.time() - $t0:.1f}')") s"
sleep 1
mem_after=$(mem_avail_kib)
rss_after=$(rss)
echo "   memory: the machine's available memory fell by $(( (mem_before - mem_after) / 1024 )) MiB" \
     "(kernel sockets, the holder and the stack); portlab's resident size $(( rss_before / 1024 )) -> $(( rss_after / 1024 )) MiB"

FAILS=0
fail() { echo "   FAIL: $*"; FAILS=$((FAILS + 1)); }

# fetch NAME PATH: five fetches on new connections; the last body in
# $LAB_TMP/NAME, "bytes median_ms" in $LAB_TMP/NAME.t, each checked.
fetch() {
    local name=$1 path=$2 i
    : >"$LAB_TMP/$name.times"
    for i in 1 2 3 4 5; do
        in_ns curl -s -m 10 -g -o "$LAB_TMP/$name" -w '%{http_code} %{size_download} %{time_total}\n' \
            "http://$ADDR$path" >>"$LAB_TMP/$name.times"
    done
    local code bytes ms
    code=$(awk '{ print $1 }' "$LAB_TMP/$name.times" | sort -u | tr '\n' ' ')
    bytes=$(tail -1 "$LAB_TMP/$name.times" | awk '{ print $2 }')
    ms=$(awk '{ print $3 * 1000 }' "$LAB_TMP/$name.times" | sort -g | sed -n 3p)
    printf '   %-52s %s %8.1f KiB %7.1f ms (median of 5)\n' "$path" "$code" "$(echo "$bytes / 1024" | bc -l)" "$ms"
    [ "$code" = "200 " ] || fail "$path answered $code"
    [ "$bytes" -lt $((256 * 1024)) ] || fail "$path is $bytes bytes, over 256 KiB"
    awk -v m="$ms" 'BEGIN { exit !(m < 100) }' || fail "$path took $ms ms, 100 or more"
}

echo "== the page and its JSON beside $N connections"
fetch page "/"
fetch json "/connections.json"
fetch json_max "/connections.json?limit=500"
fetch host "/connections.json?remote=10.203.80.101&limit=100&offset=200"
fetch estab_page "/?state=estab&port=80&limit=500"
fetch deep "/connections.json?offset=$((N - 10))&limit=20"
fetch page2 "/?offset=50"

python3 - "$LAB_TMP" "$N" "$HOSTS" <<'PY' || FAILS=$((FAILS + 1))
import json, sys
d, n, hosts = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
bad = []
j = json.load(open(f"{d}/json"))
c = j["counts"]
if c["total"] < n: bad.append(f"counts.total {c['total']} < {n}")
if c["by_state"].get("ESTABLISHED", 0) < n: bad.append(f"ESTABLISHED {c['by_state']}")
if c["by_port"].get("80", 0) < n: bad.append(f"by_port {c['by_port']}")
if c["remote_hosts"] < hosts: bad.append(f"remote_hosts {c['remote_hosts']} < {hosts}")
if j["page"]["returned"] != 50 or len(j["sockets"]) != 50: bad.append("default page is not 50 rows")
ids = [s["id"] for s in j["sockets"]]
if ids != sorted(ids, reverse=True): bad.append("rows are not newest first")
if "state" not in j["you"] or j["you"]["remote"].split(":")[0] != "10.203.80.1": bad.append(f"you: {j['you']}")
if j["open_on_port"] < n: bad.append(f"open_on_port {j['open_on_port']}")
h = json.load(open(f"{d}/host"))
if any(not s["remote"].startswith("10.203.80.101:") for s in h["sockets"]) or len(h["sockets"]) != 100:
    bad.append("remote filter: other hosts, or not 100 rows")
if h["counts"]["matched"] < n // hosts - 1: bad.append(f"host matched {h['counts']['matched']}")
m = json.load(open(f"{d}/json_max"))
if len(m["sockets"]) != 500: bad.append("limit=500 did not give 500 rows")
held = lambda rows: [s["id"] for s in rows if s["remote"].startswith("10.203.80.1") and not s["remote"].startswith("10.203.80.1:")]
if held(j["sockets"]) != held(m["sockets"])[:len(held(j["sockets"]))]:
    bad.append("the held connections of the first page are not the start of the longer one")
deep = json.load(open(f"{d}/deep"))
if not (1 <= len(deep["sockets"]) <= 20): bad.append(f"deep page has {len(deep['sockets'])} rows")
page = open(f"{d}/page").read()
if page.count("<tr") > 50 + 2 + 5 + 10: bad.append("the page lists more rows than a page")
if 'id="older"' not in page: bad.append("no link to older rows")
if page.find('<table id="mine">') > page.find('<table id="sockets">'): bad.append("own row not first")
for b in bad: print("   FAIL:", b)
print(f"   counts: {c['total']} rows, by state {c['by_state']}, {c['remote_hosts']} remote hosts, busiest {c['by_remote'][:3]}")
sys.exit(1 if bad else 0)
PY

echo "== a malformed query gets 400 and says what was wrong"
out=$(in_ns curl -s -m 5 -w ' %{http_code}' "http://$ADDR/connections.json?limit=0")
echo "   /connections.json?limit=0 -> $out"
case "$out" in *"from 1 to 500"*" 400") ;; *) fail "want 400 naming the limit's range" ;; esac
out=$(in_ns curl -s -m 5 -w ' %{http_code}' "http://$ADDR/?sort=id")
echo "   /?sort=id -> $out"
case "$out" in *"unknown parameter 'sort'"*" 400") ;; *) fail "want 400 naming the unknown parameter" ;; esac

kill -0 "$PORTLAB_PID" 2>/dev/null || fail "portlab died"
exec 7>&-
wait "${HOLDERS[@]}" 2>/dev/null
if [ "$FAILS" = 0 ]; then
    echo "== scale: every page under 256 KiB and 100 ms beside $N connections"
else
    echo "== scale: $FAILS check(s) failed"
    exit 1
fi
