# Exercise 4: the stack as a client. Sourced by scripts/lab.sh.
LAB_TITLE="The stack as a client: choosing its own ports"

kernel_server() {
    mkdir -p "$LAB_TMP/www"
    echo hello >"$LAB_TMP/www/index.html"
    (cd "$LAB_TMP/www" && exec ip netns exec "$NS" python3 -m http.server "$1" --bind 0.0.0.0) >/dev/null 2>&1 &
    LAB_PIDS+=($!)
    local i
    for i in $(seq 50); do in_ns curl -s -m 1 -o /dev/null "http://127.0.0.1:$1/" && return 0; sleep 0.1; done
}

lab_run() {
    kernel_server 8000
    kernel_server 8001
    local alg
    for alg in sequential random hash double-hash; do
        echo "-- 5 connections to the kernel's server, ports chosen by '$alg' (Linux range)"
        in_ns "$PORTLAB_BIN" --log-level warn connect --algorithm "$alg" --range linux --seed 7 \
            --connections 5 "http://$HOST:8000/" >"$LAB_TMP/$alg.txt" 2>&1
        awk '$2 ~ /10.203.80.2:/ { split($2, a, ":"); printf "%s ", a[2] } END { print "" }' "$LAB_TMP/$alg.txt" \
            | sed 's/^/   local ports: /'
    done
    echo "-- one local port, two servers, at the same time"
    in_ns "$PORTLAB_BIN" --log-level warn connect --local-port 50000 "http://$HOST:8000/" "http://$HOST:8001/" \
        | tee "$LAB_TMP/shared.txt" | sed 's/^/   /'
}

ports_of() { awk '$2 ~ /10.203.80.2:/ { split($2, a, ":"); print a[2] }' "$LAB_TMP/$1.txt" | sort -n; }

five_good() {
    [ "$(grep -c '200 OK' "$LAB_TMP/$1.txt")" = 5 ] &&
        [ "$(ports_of "$1" | sort -u | wc -l)" = 5 ] &&
        ports_of "$1" | awk '$1 < 32768 || $1 > 60999 { exit 1 }'
}
consecutive() {
    local p
    p=($(ports_of sequential))
    [ "$((p[4] - p[0]))" = 4 ]
}
all_even() { ports_of double-hash | awk '$1 % 2 { exit 1 }'; }

lab_check() {
    local alg
    for alg in sequential random hash double-hash; do
        observe "$alg: 5 connections, 5 x 200, from 5 distinct ports in 32768-60999" five_good "$alg"
    done
    observe "sequential: the ports are consecutive" consecutive
    observe "double-hash (what Linux does): every port is even" all_even
    observe "one local port (50000) carried two connections to two servers at once" \
        test "$(grep -c '10.203.80.2:50000 .*200 OK' "$LAB_TMP/shared.txt")" = 2
}
