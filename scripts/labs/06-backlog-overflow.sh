# Exercise 6: backlog overflow. Sourced by scripts/lab.sh.
LAB_TITLE="Backlog overflow: silent drops and retransmitted SYNs"

lab_run() {
    lab_serve --model one-at-a-time --backlog 1 --header-timeout 3
    echo "-- the server is stuck on a client that never sends its request (3 s header timeout);"
    echo "   backlog 1 lets 2 completed connections wait; 5 more clients arrive"
    in_ns python3 -c "
import socket, time
s = socket.create_connection(('$ADDR', 80)); time.sleep(4)" &
    local holder=$! pids=() i
    sleep 0.3
    for i in $(seq 5); do
        in_ns curl -s -m 20 -o /dev/null -w '%{http_code} after %{time_total} s\n' "http://$ADDR/" >>"$LAB_TMP/clients.txt" &
        pids+=($!)
        sleep 0.1
    done
    wait "${pids[@]}"
    wait $holder
    portlab_stop INT
    sort -t' ' -k3 -n "$LAB_TMP/clients.txt" | sed 's/^/   client: HTTP /'
    echo "-- SYNs in the capture, per client port (more than one: retransmitted)"
    tshark -r "$PCAP" -Y 'tcp.flags.syn == 1 && tcp.flags.ack == 0' -T fields -e frame.time_relative -e tcp.srcport 2>/dev/null \
        >"$LAB_TMP/syns.txt"
    awk '{ n[$2]++; t[$2] = t[$2] sprintf(" %.1f", $1) } END { for (p in n) printf "   port %s: %d SYN(s) at%s s\n", p, n[p], t[p] }' "$LAB_TMP/syns.txt" | sort
    echo "-- the stack's side: $(events "$EV" count syn_dropped) SYNs dropped (accept queue full), $(events "$EV" count rst_sent) resets"
    echo "-- the same with --overflow rst: 6 clients at once behind a stuck server"
    EV_RST="$LAB_TMP/rst.jsonl"
    portlab_start "$NS" "$EV_RST" "$LAB_TMP/rst.log" --model one-at-a-time --backlog 1 --header-timeout 2 --overflow rst
    local burst
    for burst in 1 2 3 4 5 6; do
        # A reset needs a handshake that completes on a full queue: SYNs that
        # arrive together. A burst of real clients gives that most times.
        stuck_server_burst "$NS" "$ADDR" 2.5 "$LAB_TMP/rst-clients.txt"
        grep -q '"reason":"accept queue overflow"' "$EV_RST" && break
    done
    portlab_stop INT
    cut -d' ' -f1,2 "$LAB_TMP/rst-clients.txt" | sort | uniq -c | sed 's/^/   client: /'
    echo "   ($(grep -c '"reason":"accept queue overflow"' "$EV_RST") handshake(s) reset: accept queue overflow; curl exit 7 = couldn't connect, 56 = reset)"
}

lab_check() {
    observe "every client was served in the end" test "$(grep -c '^200 ' "$LAB_TMP/clients.txt")" = 5
    observe "the stack dropped SYNs silently while the accept queue was full" \
        test "$(events "$EV" count syn_dropped)" -ge 1
    observe "no client was reset (drop, not RST)" test "$(events "$EV" count rst_sent)" = 0
    observe "the capture shows retransmitted SYNs (a client port with more than one SYN)" \
        sh -c "awk '{ n[\$2]++ } END { for (p in n) if (n[p] > 1) ok = 1; exit !ok }' '$LAB_TMP/syns.txt'"
    observe "with --overflow rst, a completing handshake on a full queue was answered with RST" \
        grep -q '"reason":"accept queue overflow"' "$EV_RST"
    observe "with --overflow rst, a client's connection failed at once instead of waiting (curl exit 7 or 56)" \
        grep -Eq 'exit=(7|56)' "$LAB_TMP/rst-clients.txt"
    claim_in_packetdrill conformance/queues/backlog-counts-like-linux.pkt \
        's/listen(3, 1) = 0/listen(3, 2) = 0/' \
        "listen(3, 1) becomes listen(3, 2) (a third place in the queue: the held ACK is taken)"
}
