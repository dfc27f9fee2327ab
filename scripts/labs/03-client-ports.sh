# Exercise 3: where client ports come from. Sourced by scripts/lab.sh.
LAB_TITLE="Where client ports come from"

lab_run() {
    lab_serve
    N=$([ "$QUICK" = 1 ] && echo 100 || echo 1000)
    read -r LO HI < <(in_ns cat /proc/sys/net/ipv4/ip_local_port_range)
    echo "-- the kernel's ephemeral range in this namespace: $LO-$HI (ip_local_port_range)"
    echo "-- $N curl connections, 20 at a time; the stack records each client port"
    local i j pids
    for ((i = 0; i < N; i += 20)); do
        pids=()
        for ((j = 0; j < 20 && i + j < N; j++)); do
            in_ns curl -s -m 20 -o /dev/null "http://$ADDR/" &
            pids+=($!)
        done
        wait "${pids[@]}"
    done
    portlab_stop INT
    events "$EV" ports syn >"$LAB_TMP/ports.txt"
    python3 - "$LAB_TMP/ports.txt" "$LO" "$HI" <<'PY'
import sys
ports = [int(l) for l in open(sys.argv[1])]
lo, hi = int(sys.argv[2]), int(sys.argv[3])
print(f"   {len(ports)} client ports, from {min(ports)} to {max(ports)}; "
      f"{sum(p % 2 == 0 for p in ports)} of them even")
buckets = 10
width = -(-(hi - lo + 1) // buckets)
counts = [0] * buckets
for p in ports:
    counts[(p - lo) // width] += 1
top = max(counts) or 1
for i, c in enumerate(counts):
    start = lo + i * width
    print(f"   {start:>5}-{min(hi, start + width - 1):<5} {'#' * round(40 * c / top)} {c}")
PY
}

lab_check() {
    local ports=$LAB_TMP/ports.txt
    observe "the stack saw $N different client ports (one per connection)" \
        test "$(wc -l <"$ports")" = "$N"
    observe "every client port lies in the kernel's ip_local_port_range ($LO-$HI)" \
        awk -v lo="$LO" -v hi="$HI" '$1 < lo || $1 > hi { exit 1 }' "$ports"
    observe "the kernel chose even ports for connect() (at least 90% even)" \
        awk '{ n++; if ($1 % 2 == 0) e++ } END { exit !(e >= 0.9 * n) }' "$ports"
}
