# Exercise 7: closed ports and scans. Sourced by scripts/lab.sh.
LAB_TITLE="Closed ports and scans"

lab_run() {
    lab_serve
    echo "-- a connection to a closed port"
    in_ns curl -s -m 5 -o /dev/null "http://$ADDR:81/"
    echo "   curl exit code $? (7: connection refused)" | tee "$LAB_TMP/curl.txt"
    echo "-- nmap -sS (SYN scan) of ports 1-1024 on the stack"
    in_ns timeout 120 nmap -n -Pn -sS -p 1-1024 --max-retries 1 "$ADDR" 2>&1 | tee "$LAB_TMP/tcp.txt" \
        | grep -E '^(PORT|[0-9]+/)|Not shown' | sed 's/^/   /'
    echo "-- nmap -sU (UDP scan) of ports 7 and 9"
    in_ns timeout 120 nmap -n -Pn -sU -p 7,9 --max-retries 1 "$ADDR" 2>&1 | tee "$LAB_TMP/udp.txt" \
        | grep -E '^(PORT|[0-9]+/)' | sed 's/^/   /'
    portlab_stop INT
    echo "-- the stack's side: $(events "$EV" count rst_sent) resets sent, $(events "$EV" count port_unreachable) ICMP port unreachable, $(events "$EV" count socket_created) sockets created"
}

lab_check() {
    observe "curl to a closed port: connection refused" grep -q 'exit code 7' "$LAB_TMP/curl.txt"
    observe "the SYN scan found exactly one open TCP port: 80" \
        sh -c "[ \$(grep -c '/tcp *open ' '$LAB_TMP/tcp.txt') = 1 ] && grep -q '^80/tcp *open' '$LAB_TMP/tcp.txt'"
    observe "the other 1023 ports were closed (answered with RST), not filtered" \
        grep -q 'Not shown: 1023 closed' "$LAB_TMP/tcp.txt"
    observe "the UDP scan found the echo service on 7 and port 9 closed" \
        sh -c "grep -q '^7/udp *open' '$LAB_TMP/udp.txt' && grep -q '^9/udp *closed' '$LAB_TMP/udp.txt'"
    observe "the stack logged the resets for closed ports" test "$(events "$EV" count rst_sent)" -ge 1000
}
