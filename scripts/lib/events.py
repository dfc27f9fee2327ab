#!/usr/bin/env python3
"""Reads portlab's JSON event lines (schema v1) for scripts and tests.

Usage:
  events.py FILE count EVENT             number of EVENT lines
  events.py FILE ports EVENT             distinct remote ports of EVENT lines, one per line
  events.py FILE complete                exit 1 unless every line is a complete v1 object
  events.py FILE last                    the last event's name
  events.py FILE story [MAX]             the story of a run, in plain words
"""
import json
import sys


def load(path, strict=False):
    events = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.endswith("\n"):
                raise SystemExit(f"{path}:{n}: last line is incomplete (no newline)")
            try:
                e = json.loads(line)
            except json.JSONDecodeError as err:
                raise SystemExit(f"{path}:{n}: not JSON: {err}")
            if strict and (e.get("v") != 1 or "ts" not in e or "event" not in e):
                raise SystemExit(f"{path}:{n}: not a v1 event: {line.strip()}")
            events.append(e)
    return events


def port(addr):
    return int(addr.rsplit(":", 1)[1])


def story(events, limit):
    listens = [e for e in events if e["event"] == "listen"]
    syns = [e for e in events if e["event"] == "syn"]
    created = [e for e in events if e["event"] == "socket_created"]
    accepted = [e for e in events if e["event"] == "accepted"]
    closed = [e for e in events if e["event"] == "closed"]
    print(f"  listening sockets opened: {len(listens)}"
          + "".join(f"  ({e['local']}, backlog {e['backlog']})" for e in listens))
    print(f"  SYNs received:            {len(syns)}")
    print(f"  sockets created:          {len(created)}  (one per 4-tuple)")
    print(f"  connections accepted:     {len(accepted)}")
    print()
    print("  socket  4-tuple (local <- remote)              client port   ISN")
    isn = {(e["local"], e["remote"]): e.get("isn") for e in syns}
    for e in created[:limit]:
        print(f"  #{e['id']:<6} {e['local']} <- {e['remote']:<22} {port(e['remote']):>6}"
              f"      {isn.get((e['local'], e['remote']), '')}")
    if len(created) > limit:
        print(f"  ... and {len(created) - limit} more")
    ports = {port(e["remote"]) for e in created}
    print()
    print(f"  distinct client ports: {len(ports)} for {len(created)} connections"
          + (f" (range {min(ports)}..{max(ports)})" if ports else ""))
    by = {}
    for e in closed:
        by[e["by"]] = by.get(e["by"], 0) + 1
    if by:
        print("  closed: " + ", ".join(f"{v} by {k}" for k, v in sorted(by.items())))


def main():
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    path, cmd, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    events = load(path, strict=(cmd == "complete"))
    if cmd == "count":
        print(sum(1 for e in events if e["event"] == args[0]))
    elif cmd == "ports":
        for p in sorted({port(e["remote"]) for e in events if e["event"] == args[0]}):
            print(p)
    elif cmd == "complete":
        print(f"{len(events)} complete v1 events")
    elif cmd == "last":
        print(events[-1]["event"] if events else "")
    elif cmd == "story":
        story(events, int(args[0]) if args else 20)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
