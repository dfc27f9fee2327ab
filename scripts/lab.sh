#!/usr/bin/env bash
# The lab book's exercises, each run in a network namespace of its own, each
# checking that what it is meant to show really happened.
#
#   sudo scripts/lab.sh list            the exercises
#   sudo scripts/lab.sh run N           run exercise N and show the evidence
#   sudo scripts/lab.sh check N         run it and check every observation
#   sudo scripts/lab.sh all [--quick]   check every exercise (--quick: small counts, as in CI)
#
# The guides are in labs/ (answers in labs/answers/).
set -u
cd "$(dirname "$0")/.."
. scripts/lib/netns.sh

LABS=(scripts/labs/[0-9][0-9]-*.sh)
QUICK=0
FAILURES=0

usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }

lab_file() {
    local f
    for f in "${LABS[@]}"; do
        case "$(basename "$f")" in "$(printf '%02d' "$1")"-*) echo "$f"; return 0 ;; esac
    done
    die "there is no exercise $1 (see: scripts/lab.sh list)"
}

# observe "what should hold" COMMAND...: one checked observation, in plain words.
observe() {
    local what=$1
    shift
    if "$@" >/dev/null 2>&1; then
        echo "  ✓ $what"
    else
        echo "  ✗ $what"
        FAILURES=$((FAILURES + 1))
    fi
}

# claim_in_packetdrill SCRIPT SED "what the edit breaks": the exercise's claim
# as a packetdrill script. It must pass as written and fail once edited with
# SED (the student's edit). Without a packetdrill binary (PACKETDRILL=path or
# on PATH) the two observations are reported as skipped, not as held.
claim_in_packetdrill() {
    local script=$1 edit=$2 what=$3 edited="$LAB_TMP/edited-$(basename "$1")"
    if [ -z "${PACKETDRILL:-}" ] && ! command -v packetdrill >/dev/null; then
        echo "  - skipped: $script passes, and fails once $what (no packetdrill here: see scripts/conformance.sh)"
        return 0
    fi
    sed "$edit" "$script" >"$edited"
    observe "packetdrill: $script passes as written" ./scripts/conformance.sh "$script"
    observe "packetdrill: it fails once $what" sh -c "! ./scripts/conformance.sh '$edited'"
}

# One exercise: a fresh namespace with portlab serving in it (lab_serve), the
# lab's own steps (lab_run), then its checks (lab_check).
one_lab() {
    local file=$1 mode=$2
    (
        # Each lab in a subshell: its namespace and processes go when it ends.
        LAB_NAMESPACES=() LAB_PIDS=()
        lab_init
        NS="portlab-lab-$$"
        ADDR=10.203.80.2
        ADDR6=fd70:6c61:6200::2
        HOST=10.203.80.1
        EV="$LAB_TMP/events.jsonl"
        PCAP="$LAB_TMP/capture.pcap"
        in_ns() { ip netns exec "$NS" "$@"; }
        lab_serve() { portlab_start "$NS" "$EV" "$LAB_TMP/portlab.log" --pcap "$PCAP" "$@"; }
        lab_ns "$NS"
        . "$file"
        echo "== $LAB_TITLE ($(basename "$file" .sh))"
        lab_run
        [ -n "${PORTLAB_PID:-}" ] && kill -0 "$PORTLAB_PID" 2>/dev/null && portlab_stop INT
        if [ "$mode" = check ]; then
            echo "-- checks"
            lab_check
            [ "$FAILURES" = 0 ] || { echo "-- $FAILURES observation(s) did not hold"; exit 1; }
            echo "-- every observation held"
        fi
    )
}

[ $# -ge 1 ] || usage
cmd=$1
shift
for a in "$@"; do [ "$a" = --quick ] && QUICK=1; done
export QUICK
case "$cmd" in
    list)
        for f in "${LABS[@]}"; do
            printf '%s  %s\n' "$(basename "$f" .sh | cut -d- -f1)" "$(sed -n 's/^LAB_TITLE="\(.*\)"/\1/p' "$f")"
        done
        ;;
    run | check)
        [ $# -ge 1 ] || usage
        require_root "scripts/lab.sh"
        [ -x "$PORTLAB_BIN" ] || cargo build --release --quiet || die "the build failed"
        one_lab "$(lab_file "$1")" "$cmd"
        ;;
    all)
        require_root "scripts/lab.sh"
        [ -x "$PORTLAB_BIN" ] || cargo build --release --quiet || die "the build failed"
        failed=()
        for f in "${LABS[@]}"; do
            one_lab "$f" check || failed+=("$(basename "$f" .sh)")
            echo
        done
        if [ ${#failed[@]} -gt 0 ]; then
            echo "labs: ${#failed[@]} of ${#LABS[@]} failed: ${failed[*]}"
            exit 1
        fi
        echo "labs: all ${#LABS[@]} exercises checked"
        ;;
    *) usage ;;
esac
