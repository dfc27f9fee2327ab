# Exercise 10: UDP. Sourced by scripts/lab.sh.
LAB_TITLE="UDP: no connections, several readers"

lab_run() {
    lab_serve --udp-readers 3
    echo "-- 12 senders, 3 datagrams each, to the echo service on UDP port 7 (3 readers)"
    in_ns python3 - "$ADDR" >"$LAB_TMP/echo.txt" <<'PY'
import socket, sys
for i in range(12):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    for j in range(3):
        s.sendto(b"datagram %d.%d" % (i, j), (sys.argv[1], 7))
        s.recvfrom(100)
    print("echoed", s.getsockname()[1])
PY
    echo "   $(grep -c echoed "$LAB_TMP/echo.txt") of 12 senders got all their datagrams back"
    echo "-- the stack's sockets: three bound to port 7, none per sender"
    in_ns "$PORTLAB_BIN" ss -u -a | sed 's/^/   /' | tee "$LAB_TMP/ss.txt"
    echo "-- to a port nobody bound"
    in_ns python3 -c "
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2); s.connect(('$ADDR', 9)); s.send(b'x')
try:
    s.recv(10)
except ConnectionRefusedError as e:
    print('   ', e)" | tee "$LAB_TMP/closed.txt"
    portlab_stop INT
    echo "-- which reader got which sender"
    python3 - "$EV" <<'PY' | tee "$LAB_TMP/spread.txt"
import json, sys, collections
events = [json.loads(l) for l in open(sys.argv[1])]
readers = {e["id"]: e["detail"].split()[0] for e in events if e["event"] == "udp_reader"}
per = collections.defaultdict(list)
for e in events:
    if e["event"] == "udp_flow":
        per[readers[e["id"]]].append(e["remote"].rsplit(":", 1)[1])
for r in sorted(per):
    print(f"   {r}: senders from ports {', '.join(per[r])}")
PY
}

lab_check() {
    observe "all 12 senders got their datagrams echoed" test "$(grep -c echoed "$LAB_TMP/echo.txt")" = 12
    observe "the stack has three UDP sockets on port 7 and none per sender" \
        test "$(grep -c 'UNCONN' "$LAB_TMP/ss.txt")" = 3
    observe "every reader got a share of the senders" test "$(wc -l <"$LAB_TMP/spread.txt")" = 3
    observe "each sender landed on one reader only (12 first-datagram events for 12 senders)" \
        test "$(events "$EV" count udp_flow)" = 12
    observe "a datagram to a port with no socket got ICMP port unreachable ('Connection refused')" \
        grep -q 'Connection refused' "$LAB_TMP/closed.txt"
}
