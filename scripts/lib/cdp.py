#!/usr/bin/env python3
"""Drives headless Chromium over the DevTools protocol, standard library only.

Chromium started with --remote-debugging-pipe reads protocol messages from
descriptor 3 and writes its answers to descriptor 4, each a JSON object
ended by a NUL byte: no websocket and no package needed.

    cdp.py live URL ADDR [N]

opens the live page URL, waits until its event stream is open, then makes
N (default 5) connections to ADDR:80 one after another, each a GET /you,
and waits for each to appear as a row of the page's table. For each it
prints the time from the connection's SYN (the stack's event time, kept
by the page as data-syn) to the moment the row appeared in the DOM
(data-shown, the page's clock: the same machine's). Then it prints the
event kinds the page's feed received. Output is JSON: {"rows": [...],
"latency_ms": [...], "feed": [...]}.

    cdp.py load URL [N]

loads URL N times (default 10) in one tab (a navigation, then reloads), and
prints the median and each load time in ms: from the navigation's start
to the end of its load event (the Navigation Timing entry), as JSON
{"median_ms": m, "loads_ms": [...]}.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time


class Chromium:
    def __init__(self):
        binary = shutil.which("chromium") or shutil.which("chromium-browser")
        if not binary:
            sys.exit("chromium is missing: apt-get install chromium")
        self.profile = tempfile.mkdtemp(prefix="portlab-cdp.")
        to_chrome_r, self.to_chrome = os.pipe()
        self.from_chrome, from_chrome_w = os.pipe()
        # Chromium wants its ends as descriptors 3 (in) and 4 (out); the
        # pipes may themselves be 3 and 4, so move them out of the way first.
        def child_fds():
            r, w = os.dup(to_chrome_r), os.dup(from_chrome_w)
            os.dup2(r, 3)
            os.dup2(w, 4)
            os.set_inheritable(3, True)
            os.set_inheritable(4, True)

        self.proc = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-quic", f"--user-data-dir={self.profile}", "--remote-debugging-pipe",
             "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=child_fds, close_fds=False)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self.buf = b""
        self.next_id = 0
        self.session = None

    def call(self, method, params=None, timeout=20):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if self.session:
            msg["sessionId"] = self.session
        os.write(self.to_chrome, json.dumps(msg).encode() + b"\0")
        deadline = time.time() + timeout
        while time.time() < deadline:
            while b"\0" in self.buf:
                raw, self.buf = self.buf.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self.next_id:
                    if "error" in reply:
                        raise RuntimeError(f"{method}: {reply['error']}")
                    return reply.get("result", {})
            chunk = os.read(self.from_chrome, 65536)
            if not chunk:
                raise RuntimeError("chromium closed the protocol pipe")
            self.buf += chunk
        raise RuntimeError(f"{method}: no answer within {timeout} s")

    def open(self, url):
        target = self.call("Target.createTarget", {"url": url})["targetId"]
        self.session = self.call("Target.attachToTarget",
                                 {"targetId": target, "flatten": True})["sessionId"]

    def eval(self, expression):
        r = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def close(self):
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)


def wait_for(chrome, expression, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            value = chrome.eval(expression)
            if value:
                return value
        except RuntimeError:
            pass
        time.sleep(0.05)
    return None


ROWS = """[...document.querySelectorAll('#sockets tr[data-shown]')].map(tr =>
  ({id: tr.id, remote: tr.cells[2].textContent, syn: +tr.dataset.syn, shown: +tr.dataset.shown}))"""


def live(url, addr, n):
    chrome = Chromium()
    try:
        chrome.open(url)
        if not wait_for(chrome, "typeof streaming !== 'undefined' && streaming", 20):
            sys.exit("the page's event stream did not open within 20 s")
        ports = []
        for _ in range(n):
            s = socket.create_connection((addr, 80), timeout=5)
            ports.append(s.getsockname()[1])
            s.sendall(b"GET /you HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n")
            while s.recv(65536):
                pass
            s.close()
            time.sleep(0.3)
        want = {f":{p}" for p in ports}
        rows = wait_for(chrome, f"(r => r.length >= {n} ? r : null)({ROWS}.filter(r => "
                        f"{json.dumps(sorted(want))}.some(p => r.remote.endsWith(p))))", 10) or []
        feed = chrome.eval("[...document.querySelectorAll('#feed li')].map(li => li.textContent)")
        print(json.dumps({
            "rows": rows,
            "latency_ms": [round((r["shown"] - r["syn"]) * 1000, 1) for r in rows],
            "feed": feed,
        }))
    finally:
        chrome.close()


NAV = """(e => e && e.loadEventEnd > 0 ? e.loadEventEnd - e.startTime : null)(
  performance.getEntriesByType('navigation')[0])"""


def load(url, n):
    chrome = Chromium()
    try:
        chrome.open("about:blank")
        times = []
        origin = chrome.eval("performance.timeOrigin")
        for i in range(n):
            # Each load a fresh navigation of the same URL (the first a
            # navigation, then reloads): a new time origin, a new entry.
            if i == 0:
                chrome.call("Page.navigate", {"url": url})
            else:
                chrome.call("Page.reload", {"ignoreCache": True})
            ms = wait_for(chrome, f"performance.timeOrigin !== {origin} && {NAV}", 20)
            if ms is None:
                sys.exit(f"load {i} of {url} did not finish within 20 s")
            origin = chrome.eval("performance.timeOrigin")
            times.append(round(ms, 2))
        ordered = sorted(times)
        print(json.dumps({"median_ms": ordered[len(ordered) // 2], "loads_ms": times}))
    finally:
        chrome.close()


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "live":
        live(sys.argv[2], sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else 5)
    elif len(sys.argv) >= 3 and sys.argv[1] == "load":
        load(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 10)
    else:
        sys.exit(__doc__)
