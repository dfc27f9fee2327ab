# Exercise 11: IPv6. Sourced by scripts/lab.sh.
LAB_TITLE="IPv6: the same story with longer addresses"

lab_run() {
    lab_serve
    echo "-- 10 curls over IPv6 and 10 over IPv4, at once"
    local pids=() i
    for i in $(seq 10); do
        in_ns curl -s -g -m 10 -o /dev/null -w '%{http_code} %{local_ip} %{local_port}\n' "http://[$ADDR6]/" >>"$LAB_TMP/curl.txt" &
        pids+=($!)
        in_ns curl -s -m 10 -o /dev/null -w '%{http_code} %{local_ip} %{local_port}\n' "http://$ADDR/" >>"$LAB_TMP/curl.txt" &
        pids+=($!)
    done
    wait "${pids[@]}"
    echo "-- what the page tells an IPv6 visitor"
    in_ns curl -s -g -m 5 "http://[$ADDR6]/" | grep -o 'You are <b>[^<]*</b> talking to <b>[^<]*</b>' \
        | sed 's/<[^>]*>//g; s/^/   /' | tee "$LAB_TMP/page.txt"
    in_ns ping -6 -c 2 -i 0.2 -W 2 "$ADDR6" | tail -2 | sed 's/^/   /' | tee "$LAB_TMP/ping.txt"
    portlab_stop INT
    echo "-- the 4-tuples in the events"
    grep '"event":"socket_created"' "$EV" | python3 -c '
import json, sys
for l in list(sys.stdin)[:6]:
    e = json.loads(l)
    print("   #%-4s %26s <- %s" % (e["id"], e["local"], e["remote"]))'
}

lab_check() {
    observe "all 20 requests were served" test "$(grep -c '^200 ' "$LAB_TMP/curl.txt")" = 20
    observe "10 IPv6 4-tuples, written [address]:port" \
        test "$(grep -c '"event":"socket_created".*"remote":"\[fd70:6c61:6200::1\]:' "$EV")" -ge 10
    observe "one listener served both families" test "$(events "$EV" count listen)" = 1
    observe "the page showed the visitor its IPv6 4-tuple" grep -q '\[fd70:6c61:6200::1\]:[0-9]* talking to \[fd70:6c61:6200::2\]:80' "$LAB_TMP/page.txt"
    observe "ping -6 was answered" grep -q ' 0% packet loss' "$LAB_TMP/ping.txt"
}
