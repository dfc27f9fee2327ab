# Exercise 9: closing and TIME-WAIT. Sourced by scripts/lab.sh.
LAB_TITLE="Closing and TIME-WAIT"

lab_run() {
    lab_serve
    echo "-- A: the client closes first (curl, keep-alive), from port 42001"
    in_ns curl -s -m 5 -o /dev/null --local-port 42001 "http://$ADDR/"
    sleep 0.3
    echo "   the kernel (client side) now holds:"
    in_ns ss -tan state time-wait | tee "$LAB_TMP/kernel-tw.txt" | sed 's/^/     /'
    echo "-- B: the server closes first (Connection: close), from port 42002"
    in_ns curl -s -m 5 -o /dev/null -H 'Connection: close' --local-port 42002 "http://$ADDR/"
    sleep 0.3
    echo "   portlab (server side) now holds:"
    in_ns "$PORTLAB_BIN" ss -a | grep -E 'State|TIME-WAIT' | tee "$LAB_TMP/stack-tw.txt" | sed 's/^/     /'
    echo "-- B again at once from port 42002: the stack lets the newer SYN reuse its TIME-WAIT 4-tuple"
    in_ns curl -s -m 5 -o /dev/null -w '   %{http_code} in %{time_total} s\n' -H 'Connection: close' \
        --local-port 42002 "http://$ADDR/" | tee "$LAB_TMP/reuse.txt"
    portlab_stop INT
    grep -E '"event":"(closed|time_wait_reused)"' "$EV" | sed 's/^/   /' | cut -c1-160
}

lab_check() {
    observe "A: the peer closed first (closed by remote), so the kernel holds TIME-WAIT for port 42001" \
        sh -c "grep -q ':42001' '$LAB_TMP/kernel-tw.txt' && grep -q '42001\",\"by\":\"remote\"' '$EV'"
    observe "B: the stack closed first (closed by local) and holds the 4-tuple in TIME-WAIT" \
        sh -c "grep -q '42002' '$LAB_TMP/stack-tw.txt' && grep -q '42002\",\"by\":\"local\"' '$EV'"
    observe "B again: the reconnect from the same port got its page at once" \
        awk '$1 == 200 && $3 < 0.5 { ok = 1 } END { exit !ok }' "$LAB_TMP/reuse.txt"
    observe "the stack logged the reuse of its TIME-WAIT 4-tuple" \
        grep -q '"event":"time_wait_reused"' "$EV"
    claim_in_packetdrill conformance/close/time-wait-lower-seq-syn.pkt \
        's/^+.1   < S 0:0(0)/+.1   < S 1000:1000(0)/' \
        "the SYN's sequence number is raised above the old connection's (TIME-WAIT is reused: a SYN-ACK, not the ACK)"
}
