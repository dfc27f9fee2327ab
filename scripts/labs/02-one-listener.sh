# Exercise 2: only one listener per port — and the exception. Sourced by scripts/lab.sh.
LAB_TITLE="Only one listener per port"

lab_run() {
    echo "-- two plain listens on port 80"
    in_ns "$PORTLAB_BIN" --log-level warn listen 80 --count 2 --for 1 | tee "$LAB_TMP/plain.txt" | sed 's/^/   /'
    echo "-- three listens on port 80 in a reuse-port group, then 30 connections"
    in_ns "$PORTLAB_BIN" --log-level warn listen 80 --count 3 --reuse --for 6 --events "$EV" \
        >"$LAB_TMP/group.txt" 2>&1 &
    LAB_PIDS+=($!)
    local group=$! i
    for i in $(seq 50); do grep -q '#3' "$LAB_TMP/group.txt" 2>/dev/null && break; sleep 0.1; done
    sed 's/^/   /' "$LAB_TMP/group.txt"
    for i in $(seq 30); do
        in_ns curl -s -m 3 telnet://$ADDR:80 </dev/null >>"$LAB_TMP/accepted.txt"
    done
    head -4 "$LAB_TMP/accepted.txt" | sed 's/^/   /'
    echo "   ..."
    echo "-- how the 30 connections spread over the members"
    sed 's/.*listening socket //' "$LAB_TMP/accepted.txt" | sort | uniq -c | sed 's/^/   /'
    wait $group
}

lab_check() {
    observe "the first plain listen succeeded" grep -q 'listen #1 on port 80: ok' "$LAB_TMP/plain.txt"
    observe "the second plain listen failed with 'address in use'" \
        grep -q 'listen #2 on port 80: failed: address in use' "$LAB_TMP/plain.txt"
    observe "all three reuse-port listens succeeded" test "$(grep -c ': ok' "$LAB_TMP/group.txt")" = 3
    observe "all 30 connections were accepted" test "$(grep -c 'accepted by' "$LAB_TMP/accepted.txt")" = 30
    observe "the connections were spread over more than one member" \
        test "$(sed 's/.*listening socket //' "$LAB_TMP/accepted.txt" | sort -u | wc -l)" -ge 2
    observe "the events name the member for every connection (socket_created.listener_id)" \
        test "$(grep -c '"event":"socket_created".*"listener_id"' "$EV")" = 30
}
