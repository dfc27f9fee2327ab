# Exercise 8: dissecting the handshake from the capture. Sourced by scripts/lab.sh.
LAB_TITLE="Dissecting the handshake"

lab_run() {
    lab_serve
    echo "-- one curl, captured by the stack (--pcap)"
    in_ns curl -s -m 10 -o /dev/null "http://$ADDR/"
    portlab_stop INT
    tshark -r "$PCAP" -Y tcp -T fields -E separator=/t \
        -e frame.number -e ip.src -e tcp.srcport -e ip.dst -e tcp.dstport -e tcp.flags.str \
        -e tcp.seq -e tcp.seq_raw -e tcp.ack -e tcp.ack_raw -e tcp.options.mss_val \
        -e tcp.options.wscale.shift -e tcp.stream 2>/dev/null >"$LAB_TMP/segments.txt"
    echo "-- the first three TCP segments (frame, 4-tuple, flags, seq relative (absolute), ack, MSS, window scale)"
    head -3 "$LAB_TMP/segments.txt" | awk -F'\t' '{ printf "   #%s %s:%s -> %s:%s %s seq=%s (%s) ack=%s (%s) mss=%s wscale=%s\n", $1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12 }'
    echo "-- the syn event for the same connection"
    grep '"event":"syn"' "$EV" | head -1 | sed 's/^/   /'
}

lab_check() {
    local s=$LAB_TMP/segments.txt
    local syn_seq mss synack_seq synack_ack ack_ack
    syn_seq=$(sed -n 1p "$s" | cut -f8)
    mss=$(sed -n 1p "$s" | cut -f11)
    synack_seq=$(sed -n 2p "$s" | cut -f8)
    synack_ack=$(sed -n 2p "$s" | cut -f10)
    ack_ack=$(sed -n 3p "$s" | cut -f10)
    observe "the first TCP segment is the client's SYN, then the stack's SYN-ACK, then the ACK" \
        sh -c "sed -n 1p '$s' | grep -q '··········S·' && sed -n 2p '$s' | grep -q '·······A··S·' && sed -n 3p '$s' | grep -q '·······A····'"
    observe "the SYN-ACK acknowledges the client's ISN + 1" test "$synack_ack" = "$((syn_seq + 1))"
    observe "the ACK acknowledges the stack's ISN + 1" test "$ack_ack" = "$(( (synack_seq + 1) % 4294967296 ))"
    observe "the client offered an MSS (1460 on this 1500-byte link)" test "$mss" = 1460
    observe "the syn event's isn is the ISN in the capture" \
        grep -q "\"isn\":$syn_seq" "$EV"
    observe "every TCP segment of the exchange carries the same 4-tuple (one tcp.stream)" \
        test "$(cut -f13 "$s" | sort -u | wc -l)" = 1
}
