# Exercise 13: Nagle meets delayed ACK. Sourced by scripts/lab.sh.
LAB_TITLE="Nagle meets delayed ACK"

# nagle_requests MODE: one curl fetches a 4.4 KB response N times over one
# keep-alive connection (/bytes?n=4400: three full segments and a partial
# one, as the live page was when it stalled); each request's time goes to $LAB_TMP/MODE.txt.
# Forty, quick or not: a Linux client acknowledges at once for its first
# dozen or so segments ("quick ACK" mode), so the first requests never stall.
nagle_requests() {
    local mode=$1 n args=() i
    n=40
    for i in $(seq "$n"); do args+=(-o /dev/null "http://$ADDR/bytes?n=4400"); done
    in_ns curl -s -m 30 -w '%{time_total}\n' "${args[@]}" >"$LAB_TMP/$mode.txt"
}

# nagle_median_ms FILE: the median of a file of seconds, in ms.
nagle_median_ms() { sort -g "$1" | awk '{ a[NR] = $1 } END { printf "%.2f", (NR ? a[int((NR + 1) / 2)] : 0) * 1000 }'; }

lab_run() {
    echo "-- A: the classic rule (--nagle classic) and a server without TCP_NODELAY (--nodelay off)"
    lab_serve --nagle classic --nodelay off
    nagle_requests classic
    portlab_stop INT
    echo "   $(wc -l <"$LAB_TMP/classic.txt") requests for /bytes?n=4400 on one connection: median $(nagle_median_ms "$LAB_TMP/classic.txt") ms each, $(awk '$1 >= 0.030' "$LAB_TMP/classic.txt" | wc -l) of them 30 ms or more"
    echo "-- B: a hold that met the delayed ACK, in the event log and in the capture"
    # Absolute sequence numbers, as the events give them.
    tshark -r "$PCAP" -o tcp.relative_sequence_numbers:FALSE -Y tcp -T fields -E separator=/t \
        -e frame.number -e frame.time_relative -e tcp.srcport -e tcp.dstport -e tcp.seq -e tcp.ack -e tcp.len \
        2>/dev/null >"$LAB_TMP/segments.txt"
    python3 - "$EV" "$LAB_TMP/segments.txt" >"$LAB_TMP/hold.txt" <<'PY'
import json, sys
events = [json.loads(l) for l in open(sys.argv[1])]
segs = {}
for line in open(sys.argv[2]):
    f = line.rstrip("\n").split("\t")
    segs[int(f[0])] = (float(f[1]), int(f[2]), int(f[3]), int(f[4]), int(f[5]), int(f[6]))
held = {}
for e in events:
    if e["event"] == "nagle_held":
        held[e["id"]] = e
    elif e["event"] == "nagle_released" and e["held_us"] >= 30000 and e["id"] in held:
        h = held[e["id"]]
        print("event", json.dumps(h))
        print("event", json.dumps(e))
        fh, fr, until = h.get("frame", 0), e.get("frame", 0), h["until_ack"]
        acks = [n for n in range(fh + 1, fr) if n in segs and segs[n][2] == 80 and segs[n][4] == until and segs[n][5] == 0]
        for n in range(fh - 2, fr + 1):
            if n in segs:
                t, sp, dp, seq, ack, ln = segs[n]
                mark = {fh: "  <- the last data before the hold", fr: "  <- the held bytes, released"}.get(n, "")
                if n in acks:
                    mark = f"  <- the client's delayed ACK of {until}"
                print(f"seg #{n} {t:.4f} s {sp} -> {dp} seq={seq} ack={ack} len={ln}{mark}")
        gap = segs[fr][0] - segs[fh][0] if fh in segs and fr in segs else 0
        print(f"result {len(acks)} {gap:.4f} {segs.get(fr, (0,0,0,0,0,0))[3] == until}")
        break
PY
    grep '^event' "$LAB_TMP/hold.txt" | cut -d' ' -f2- | cut -c1-200 | sed 's/^/   /'
    echo "   in the capture (frame, time, from -> to, seq, ack, data bytes):"
    grep '^seg' "$LAB_TMP/hold.txt" | cut -d' ' -f2- | sed 's/^/     /'
    echo "-- C: Minshall's rule (the default), server still without TCP_NODELAY"
    EV_M="$LAB_TMP/minshall.jsonl"
    portlab_start "$NS" "$EV_M" "$LAB_TMP/minshall.log" --nodelay off
    nagle_requests minshall
    portlab_stop INT
    echo "   median $(nagle_median_ms "$LAB_TMP/minshall.txt") ms per request; $(grep -c '"event":"nagle_held"' "$EV_M") holds"
    echo "-- D: the default: Minshall's rule and a server that sets TCP_NODELAY, as nginx does"
    EV_N="$LAB_TMP/nodelay.jsonl"
    portlab_start "$NS" "$EV_N" "$LAB_TMP/nodelay.log"
    nagle_requests nodelay
    if command -v wrk >/dev/null; then
        echo "   wrk, one keep-alive connection, 2 s:"
        in_ns wrk -t1 -c1 -d2 --latency "http://$ADDR/bytes?n=4400" 2>&1 | grep -E 'Requests/sec|50%' | sed 's/^ */     /'
    fi
    portlab_stop INT
    echo "   median $(nagle_median_ms "$LAB_TMP/nodelay.txt") ms per request; $(grep -c '"event":"nagle_held"' "$EV_N") holds"
    echo "-- the difference: classic $(nagle_median_ms "$LAB_TMP/classic.txt") ms against $(nagle_median_ms "$LAB_TMP/nodelay.txt") ms per request"
}

lab_check() {
    local classic minshall nodelay stalled
    classic=$(nagle_median_ms "$LAB_TMP/classic.txt")
    stalled=$(awk '$1 >= 0.030' "$LAB_TMP/classic.txt" | wc -l)
    minshall=$(nagle_median_ms "$LAB_TMP/minshall.txt")
    nodelay=$(nagle_median_ms "$LAB_TMP/nodelay.txt")
    # How often the client delays its ACK depends on its own mode (Linux
    # leaves delayed ACKs for quick ones after its timer fires, for a
    # while): some runs stall on nearly every request, some on a few.
    observe "A: under the classic rule responses wait for the client's delayed ACK, 30 ms or more ($stalled of 40, median $classic ms)" \
        test "$stalled" -ge 1
    observe "B: the event log holds a partial segment (rule classic) and releases it 30 ms or more later" \
        sh -c "grep -q '\"event\":\"nagle_held\".*\"rule\":\"classic\"' '$EV' &&
               grep '\"event\":\"nagle_released\"' '$EV' | sed -n 's/.*\"held_us\":\([0-9]*\).*/\1/p' | awk '\$1 >= 30000 { ok = 1 } END { exit !ok }'"
    observe "B: in the capture, the held bytes leave 30 ms or more after the data before them, right after the client's ACK of until_ack, at sequence number until_ack" \
        awk '$1 == "result" && $2 >= 1 && $3 >= 0.030 && $4 == "True" { ok = 1 } END { exit !ok }' "$LAB_TMP/hold.txt"
    observe "C: Minshall's rule sends the response whole: under 10 ms a request ($minshall ms), nothing held" \
        sh -c "awk -v m='$minshall' 'BEGIN { exit !(m < 10) }' && ! grep -q '\"event\":\"nagle_held\"' '$LAB_TMP/minshall.jsonl'"
    observe "D: with TCP_NODELAY too: under 10 ms a request ($nodelay ms), nothing held" \
        sh -c "awk -v m='$nodelay' 'BEGIN { exit !(m < 10) }' && ! grep -q '\"event\":\"nagle_held\"' '$LAB_TMP/nodelay.jsonl'"
}
