# Exercise 12: two stacks, one port number. Sourced by scripts/lab.sh.
LAB_TITLE="Two stacks, one port number"

lab_run() {
    lab_serve
    mkdir -p "$LAB_TMP/www"
    echo "served by the Linux kernel's stack" >"$LAB_TMP/www/index.html"
    (cd "$LAB_TMP/www" && exec ip netns exec "$NS" python3 -m http.server 80 --bind 0.0.0.0) >/dev/null 2>&1 &
    LAB_PIDS+=($!)
    local i
    for i in $(seq 50); do in_ns curl -s -m 1 -o /dev/null "http://$HOST/" && break; sleep 0.1; done
    echo "-- the kernel listens on port 80 (python3 -m http.server), and so does portlab:"
    in_ns ss -ltn 'sport = :80' | sed 's/^/   kernel ss: /' | tee "$LAB_TMP/kernel-ss.txt"
    in_ns "$PORTLAB_BIN" ss -l | sed 's/^/   portlab ss: /' | tee "$LAB_TMP/portlab-ss.txt"
    echo "-- one curl to each"
    in_ns curl -s -m 5 -D - -o /dev/null "http://$HOST/" | grep -i '^server' | sed 's/^/   http:\/\/'"$HOST"'\/  -> /' | tee "$LAB_TMP/kernel-curl.txt"
    in_ns curl -s -m 5 -D - -o /dev/null "http://$ADDR/" | grep -i '^server' | sed 's/^/   http:\/\/'"$ADDR"'\/  -> /' | tee "$LAB_TMP/portlab-curl.txt"
}

lab_check() {
    observe "the kernel has a listening socket on port 80" grep -q 'LISTEN.*:80' "$LAB_TMP/kernel-ss.txt"
    observe "portlab has a listening socket on port 80 at the same time" grep -q 'LISTEN.*:80' "$LAB_TMP/portlab-ss.txt"
    observe "a request to the kernel's address reached the kernel's server" grep -qi 'SimpleHTTP' "$LAB_TMP/kernel-curl.txt"
    observe "a request to portlab's address reached portlab" grep -qi 'portlab' "$LAB_TMP/portlab-curl.txt"
}
