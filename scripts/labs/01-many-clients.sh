# Exercise 1: many clients, one port. Sourced by scripts/lab.sh.
LAB_TITLE="Many clients, one port"

lab_run() {
    lab_serve
    N=$([ "$QUICK" = 1 ] && echo 20 || echo 100)
    echo "-- $N curl clients at once, each asking the page who it is"
    local pids=() i
    for i in $(seq "$N"); do
        in_ns curl -s -m 20 -o /dev/null -w '%{http_code} %{local_port}\n' "http://$ADDR/" >>"$LAB_TMP/curl.txt" &
        pids+=($!)
    done
    wait "${pids[@]}"
    echo "   $(grep -c '^200 ' "$LAB_TMP/curl.txt") answered 200, from $(cut -d' ' -f2 "$LAB_TMP/curl.txt" | sort -u | wc -l) different client ports"
    echo "-- five connections held open, and the table while they are"
    in_ns python3 -c "
import socket, time
s = [socket.create_connection(('$ADDR', 80)) for _ in range(5)]
time.sleep(1.5)" &
    local holder=$!
    sleep 0.7
    in_ns "$PORTLAB_BIN" ss -a | tee "$LAB_TMP/ss.txt" | sed 's/^/   /'
    wait $holder
    BROWSER=$(command -v chromium || command -v chromium-browser || true)
    if [ -n "$BROWSER" ]; then
        echo "-- a browser page that loads six frames at once (/parallel)"
        in_ns timeout 90 "$BROWSER" --headless --no-sandbox --disable-gpu --no-first-run \
            --disable-background-networking --disable-component-update --disable-sync --disable-quic \
            --user-data-dir="$LAB_TMP/chromium" --virtual-time-budget=4000 --dump-dom "http://$ADDR/parallel" \
            >/dev/null 2>&1
        grep -c '"event":"syn"' "$EV" >/dev/null
    fi
    portlab_stop INT
    echo "-- the events' story"
    events "$EV" story 8
}

lab_check() {
    observe "exactly one listening socket was opened on port 80" \
        test "$(events "$EV" count listen)" = 1
    observe "every curl got its page ($N x 200)" \
        test "$(grep -c '^200 ' "$LAB_TMP/curl.txt")" = "$N"
    observe "every curl connection had its own client port" \
        test "$(cut -d' ' -f2 "$LAB_TMP/curl.txt" | sort -u | wc -l)" = "$N"
    observe "every SYN made a socket of its own (socket_created = SYN)" \
        test "$(events "$EV" count socket_created)" = "$(events "$EV" count syn)"
    observe "no two sockets shared a 4-tuple" \
        test "$(events "$EV" ports socket_created | wc -l)" = "$(events "$EV" count socket_created)"
    observe "while 5 connections were open, ss showed one LISTEN row and 5 ESTAB rows" \
        sh -c "[ \$(grep -c '^LISTEN' '$LAB_TMP/ss.txt') = 1 ] && [ \$(grep -c '^ESTAB' '$LAB_TMP/ss.txt') -ge 5 ]"
    if [ -n "$BROWSER" ]; then
        observe "the browser opened several connections to port 80 (several client ports)" \
            test "$(events "$EV" count socket_created)" -ge "$((N + 5 + 3))"
    fi
}
