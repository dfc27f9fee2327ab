# Exercise 5: the server decides how to use its port. Sourced by scripts/lab.sh.
LAB_TITLE="Serving models: one at a time, single, threads, workers"

# burst MODEL [flags]: portlab serve --model MODEL, 10 clients at once, each
# keeping its connection 0.3 s after its answer.
burst() {
    local model=$1
    shift
    EV="$LAB_TMP/$model.jsonl"
    portlab_start "$NS" "$EV" "$LAB_TMP/$model.log" --model "$model" "$@"
    in_ns python3 - "$ADDR" >"$LAB_TMP/$model.txt" <<'PY'
import socket, sys, threading, time
# Each client asks for a page at once, then keeps its connection open for
# 0.3 s before closing: a server that serves one connection to the end before
# accepting the next makes the others wait.
results = []
def client(i):
    t0 = time.time()
    try:
        s = socket.create_connection((sys.argv[1], 80), timeout=15)
        s.sendall(b"GET /connections.json HTTP/1.1\r\nHost: lab\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        results.append(("served" if b" 200 " in data[:20] else "no-answer", time.time() - t0))
        time.sleep(0.3)
        s.close()
    except ConnectionRefusedError:
        results.append(("refused", time.time() - t0))
    except (ConnectionResetError, socket.timeout):
        results.append(("reset", time.time() - t0))
threads = [threading.Thread(target=client, args=(i,)) for i in range(10)]
for t in threads:
    t.start()
    time.sleep(0.02)
for t in threads:
    t.join()
for r in ("served", "refused", "reset", "no-answer"):
    n = [d for k, d in results if k == r]
    if n:
        print(f"{r} {len(n)} {max(n):.2f}")
PY
    portlab_stop INT
    printf '   %-23s' "$model:"
    awk '{ printf "%s %s (slowest after %s s)   ", $2, $1, $3 }' "$LAB_TMP/$model.txt"
    echo
}

lab_run() {
    echo "-- 10 clients at once; each gets a page, then keeps its connection 0.3 s; time to the answer:"
    burst thread-per-connection
    burst one-at-a-time
    burst single
    burst workers --workers 3
}

lab_check() {
    count() { awk -v k="$2" '$1 == k { print $2 }' "$LAB_TMP/$1.txt"; }
    observe "thread-per-connection answered all 10 at once (all within 1 s)" \
        awk '$1 == "served" && $2 == 10 && $3 < 1.0 { ok = 1 } END { exit !ok }' "$LAB_TMP/thread-per-connection.txt"
    observe "one-at-a-time answered all 10, one after another (the last after about 9 x 0.3 s)" \
        awk '$1 == "served" && $2 == 10 && $3 > 2.0 { ok = 1 } END { exit !ok }' "$LAB_TMP/one-at-a-time.txt"
    observe "single refused the clients that came while it served one" \
        test -n "$(count single refused)"
    observe "single served at least one client" test -n "$(count single served)"
    observe "the stack answered the refused SYNs with RST, no listener on port" \
        grep -q '"reason":"no listener on port"' "$LAB_TMP/single.jsonl"
    observe "workers: 3 threads shared one listener and each accepted some" \
        test "$(grep '"event":"accepted"' "$LAB_TMP/workers.jsonl" | grep -o '"by":"worker-[0-9]"' | sort -u | wc -l)" = 3
}
