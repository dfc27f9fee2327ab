#!/usr/bin/env bash
# The main demo: one listening port, many connections, shown with real packets.
#
#   sudo ./scripts/demo.sh
#
# Builds portlab, makes a network namespace, starts `portlab serve` on a TUN
# device inside it, points concurrent clients (curl, held-open connections,
# and headless Chromium when it is installed) at port 80, prints the story the
# stack's events tell, and removes everything it made.
set -u
cd "$(dirname "$0")/.."
. scripts/lib/netns.sh

require_root "scripts/demo.sh"
command -v curl >/dev/null || die "curl is missing: apt-get install curl"
command -v python3 >/dev/null || die "python3 is missing: apt-get install python3"
command -v cargo >/dev/null || die "cargo is missing: install Rust (https://rustup.rs)"

echo "== building portlab (release)"
cargo build --release --quiet || die "the build failed"

lab_init
NS=portlab-demo
ADDR=10.203.80.2
EV="$LAB_TMP/events.jsonl"
lab_ns "$NS"
portlab_start "$NS" "$EV" "$LAB_TMP/portlab.log"
in_ns() { ip netns exec "$NS" "$@"; }

cat <<EOT

== portlab is serving HTTP on $ADDR:80 (TUN device portlab0 in namespace $NS)
   The kernel side of the device is 10.203.80.1: every client below is an
   ordinary kernel socket, and its kernel picks a source port for it.

== 8 curl clients at once
EOT
for i in $(seq 8); do
    in_ns curl -s -m 10 "http://$ADDR/connections.json" -o "$LAB_TMP/curl-$i.json" \
        -w "%{local_port}\n" >"$LAB_TMP/curl-$i.port" &
done
wait $(jobs -p | grep -v "^$PORTLAB_PID$") 2>/dev/null
for i in $(seq 8); do
    python3 - "$LAB_TMP/curl-$i.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
y = d["you"]
print(f"   curl: you are {y['remote']} talking to {y['local']}  (socket #{y['id']})")
PY
done

echo
echo "== 5 connections held open at the same time, then a sixth asks how many there are"
in_ns python3 - "$ADDR" <<'PY'
import json, socket, sys
addr = sys.argv[1]
held = []
for _ in range(5):
    s = socket.create_connection((addr, 80), timeout=5)
    held.append(s)
def get(s):
    s.sendall(b"GET /connections.json HTTP/1.1\r\nHost: lab\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(65536)
    head, body = data.split(b"\r\n\r\n", 1)
    length = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0].split(b":")[1])
    while len(body) < length:
        body += s.recv(65536)
    return json.loads(body)
for s in held:
    y = get(s)["you"]
    print(f"   held open: {y['remote']} -> {y['local']}  socket #{y['id']}")
s = socket.create_connection((addr, 80), timeout=5)
d = get(s)
print(f"   the sixth client, {d['you']['remote']}, is one of {d['open_on_port']} connections on port 80;")
print(f"   listeners: {len(d['listeners'])} ({d['listeners'][0]['local']})")
for s in held + [s]:
    s.close()
PY

echo
echo "== the same over IPv6: curl -g 'http://[fd70:6c61:6200::2]/'"
in_ns curl -s -m 10 -g "http://[fd70:6c61:6200::2]/connections.json" | python3 -c '
import json, sys
y = json.load(sys.stdin)["you"]
print("   curl -6: you are %s talking to %s  (socket #%s)" % (y["remote"], y["local"], y["id"]))'

echo
echo "== UDP has no connections: 6 senders to the echo service on port 7, read by 2 readers"
in_ns python3 - "$ADDR" <<'PY'
import socket, sys
for i in range(6):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    s.sendto(b"hello", (sys.argv[1], 7))
    s.recvfrom(100)
PY
python3 - "$EV" <<'PY'
import json, sys
events = [json.loads(l) for l in open(sys.argv[1])]
readers = {e["id"]: e["detail"].split()[0] for e in events if e["event"] == "udp_reader"}
for e in events:
    if e["event"] == "udp_flow":
        print(f"   sender {e['remote']:<20} -> {readers.get(e['id'], e['id'])} (a hash of the sender picks the reader)")
PY

CHROMIUM=$(command -v chromium || command -v chromium-browser || true)
if [ -n "$CHROMIUM" ]; then
    echo
    echo "== headless Chromium loads the page"
    in_ns timeout 60 "$CHROMIUM" --headless --no-sandbox --disable-gpu --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync --disable-quic \
        --user-data-dir="$LAB_TMP/chromium" --dump-dom "http://$ADDR/" 2>/dev/null \
        | python3 -c 'import re,sys; m=re.search(r"You are <b>([^<]*)</b> talking to <b>([^<]*)</b>", sys.stdin.read()); print("   chromium: you are %s talking to %s" % m.groups() if m else "   chromium: page not loaded")'
else
    echo
    echo "== (headless Chromium is not installed: 'apt-get install chromium' adds a browser to this demo)"
fi

sleep 0.3
portlab_stop INT

cat <<EOT

== What the stack's events show ($(events "$EV" count syn) SYNs, from $EV)
EOT
events "$EV" story 12
cat <<'EOT'

== What this shows
   * One listening socket on port 80 ("listening sockets opened: 1"), yet every
     client got its own socket: a SYN for a new 4-tuple made the stack create
     one, and accept() handed it to the server.
   * The 4-tuples differ only in the client port, which each client's kernel
     chose from its ephemeral range (see /proc/sys/net/ipv4/ip_local_port_range;
     current Linux steps through it and prefers even ports for connect): a
     second tab is a second port.
   * The stack found each segment's connection by looking up its 4-tuple, so
     many connections share port 80 without ever being confused. IPv6 is the
     same story with longer addresses.
   * UDP has no connections and no accept: several readers on one port is a
     load-balancing choice, made here by a hash of each sender.
   Run it yourself: sudo target/release/portlab serve, then open
   http://10.203.80.2/ in a browser on this machine.
EOT
