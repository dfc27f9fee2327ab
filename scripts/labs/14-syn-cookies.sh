# Exercise 14: SYN flood and SYN cookies. Sourced by scripts/lab.sh.
LAB_TITLE="SYN flood and SYN cookies"

# The flood's spoofed sources: a lab-only range with a blackhole route in
# the namespace, so that the stack's SYN-ACKs to them go nowhere.
COOKIE_RANGE=10.99.0.0/16

# cookie_flood N: N SYNs to port 80 from four spoofed addresses of the
# range, four hping3 at once (bounded in count and time), while the student
# looks: `portlab ss -s` twice during the flood, and one curl. Waits for all.
cookie_flood() {
    local n=$1 tag=$2 i pids=()
    for i in 1 2 3 4; do
        in_ns timeout 60 hping3 -q -S -p 80 -a "10.99.0.$i" -c "$((n / 4))" -i u100 "$ADDR" >/dev/null 2>&1 &
        pids+=($!)
    done
    sleep 0.5
    in_ns "$PORTLAB_BIN" ss -s >"$LAB_TMP/$tag.ss1.txt" 2>&1
    in_ns curl -s -m 5 -o /dev/null -w '%{http_code} %{time_total} %{local_port}\n' "http://$ADDR/you" >"$LAB_TMP/$tag.curl.txt"
    in_ns "$PORTLAB_BIN" ss -s >"$LAB_TMP/$tag.ss2.txt" 2>&1
    wait "${pids[@]}"
}

lab_run() {
    local n=20000
    in_ns ip route add blackhole "$COOKIE_RANGE"
    echo "-- A: $n SYNs from 10.99.0.1-4 (spoofed, blackholed) against a SYN queue of 64 (--syn-queue 64)"
    lab_serve --syn-queue 64
    cookie_flood "$n" cookies
    # The flood is over once the listener has sent no cookie for 2 s.
    sleep 2.5
    echo "   portlab ss -s during the flood:"
    sed 's/^/     /' "$LAB_TMP/cookies.ss1.txt"
    grep '"event":"syn_flood"' "$EV" | cut -c1-220 | sed 's/^/   /'
    echo "-- B: the cookies in the capture: each SYN-ACK's ISN, its low bits and the MSS it announced"
    echo "   (the first 64 SYNs found room in the queue: their SYN-ACKs carry the engine's ISNs and are left out)"
    tshark -r "$PCAP" -Y 'tcp.flags.syn == 1 && tcp.flags.ack == 1 && ip.dst == 10.99.0.0/16' -T fields -E separator=/t \
        -e ip.dst -e tcp.dstport -e tcp.seq_raw -e tcp.options.mss_val 2>/dev/null >"$LAB_TMP/cookies.txt"
    python3 - "$LAB_TMP/cookies.txt" "$EV" >"$LAB_TMP/decoded.txt" <<'PY'
import json, sys
table = [536, 1300, 1440, 1460]  # the cookie's MSS values (IPv4)
# The first SYNs found room in the queue: their sockets' SYN-ACKs carry the
# engine's own ISNs, not cookies. The events name their 4-tuples.
sockets = {e["remote"] for e in map(json.loads, open(sys.argv[2])) if e["event"] == "socket_created"}
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
rows = [r for r in rows if f"{r[0]}:{r[1]}" not in sockets]
ok = counters = 0
seen = set()
for i, (dst, port, isn, mss) in enumerate(rows):
    isn, mss = int(isn), int(mss or 0)
    index, counter = isn & 3, (isn >> 2) & 3
    seen.add(counter)
    ok += table[index] == mss
    if i < 5:
        print(f"show {dst}:{port}  ISN {isn:#010x} = hash {isn >> 4:#09x} | counter {counter} | MSS index {index} -> {table[index]}; announced MSS {mss}")
print(f"result {len(rows)} {ok} {len(seen)}")
PY
    grep '^show' "$LAB_TMP/decoded.txt" | cut -d' ' -f2- | sed 's/^/   /'
    read -r _ total matching counters < <(grep '^result' "$LAB_TMP/decoded.txt")
    echo "   $total cookie SYN-ACKs; $matching announce the MSS their low two bits name; $counters counter value(s) among them"
    echo "-- C: a legitimate client during the flood: curl $(cut -d' ' -f1,2 "$LAB_TMP/cookies.curl.txt") s, from port $(cut -d' ' -f3 "$LAB_TMP/cookies.curl.txt")"
    grep '"event":"socket_created"' "$EV" | grep '"cookie":true' | grep "$HOST:$(cut -d' ' -f3 "$LAB_TMP/cookies.curl.txt")\"" | cut -c1-220 | sed 's/^/   /'
    portlab_stop INT
    echo "-- D: the same flood with --syn-cookies never"
    EV_N="$LAB_TMP/never.jsonl"
    portlab_start "$NS" "$EV_N" "$LAB_TMP/never.log" --syn-queue 64 --syn-cookies never
    EV_SAVED=$EV EV=$EV_N
    cookie_flood "$n" never
    EV=$EV_SAVED
    echo "   portlab ss -s during the flood:"
    sed 's/^/     /' "$LAB_TMP/never.ss1.txt"
    echo "   curl: $(cut -d' ' -f1,2 "$LAB_TMP/never.curl.txt") s; $(grep -c '"by":"evicted"' "$EV_N") evictions in the event file (events are rate-limited: ss counts them all)"
    portlab_stop INT
}

lab_check() {
    local total matching counters
    read -r _ total matching counters < <(grep '^result' "$LAB_TMP/decoded.txt")
    observe "A: portlab ss -s shows the SYN queue full and cookies being sent during the flood" \
        sh -c "grep -q 'SYN queue 64, .*answering with SYN cookies' '$LAB_TMP/cookies.ss1.txt' &&
               grep -Eq '^SYN cookies: [1-9][0-9]* sent' '$LAB_TMP/cookies.ss2.txt'"
    observe "A: the flood is two events (syn_flood start and end), not one per cookie" \
        sh -c "grep -q '\"event\":\"syn_flood\".*\"phase\":\"start\"' '$EV' &&
               grep -q '\"event\":\"syn_flood\".*\"phase\":\"end\"' '$EV' &&
               test \$(grep -c '\"event\":\"syn_flood\"' '$EV') -le 4"
    observe "B: thousands of cookie SYN-ACKs in the capture ($total), each announcing the MSS its low two bits name ($matching), within one or two time counters ($counters)" \
        sh -c "test '$total' -ge 1000 && test '$matching' = '$total' && test '$counters' -le 2"
    observe "C: the legitimate curl during the flood got 200, over a connection made from a cookie" \
        sh -c "grep -q '^200 ' '$LAB_TMP/cookies.curl.txt' &&
               grep '\"event\":\"socket_created\"' '$EV' | grep '\"cookie\":true' | grep -q '$HOST:$(cut -d' ' -f3 "$LAB_TMP/cookies.curl.txt")\"'"
    observe "D: with --syn-cookies never no cookie is sent and every flood SYN that got in cost a socket (evictions make room)" \
        sh -c "grep -q '^SYN cookies: 0 sent' '$LAB_TMP/never.ss2.txt' &&
               test \$(sed -n 's/^Sockets: \([0-9]*\) created.*/\1/p' '$LAB_TMP/never.ss2.txt') -ge 1000 &&
               grep -q '\"by\":\"evicted\"' '$LAB_TMP/never.jsonl'"
}
