#!/usr/bin/python3
"""Malformed and adversarial packets, written straight into portlab's TUN
device from inside the lab namespace, each with the reply it must (or must
not) get.

    ip netns exec NS /usr/bin/python3 malformed.py [--tun portlab0]

Packets are built with scapy (Debian's python3-scapy) and sent through a
packet socket bound to the TUN device, so that the kernel does not repair
them (a raw IP socket would fix the IP checksum and total length). Replies
are read from the same packet socket. The client address 10.203.80.77 is
on the TUN's own subnet and owned by nobody: the kernel, which does not
forward, drops the stack's replies to it, so only this script answers.

Prints one line per case and exits non-zero if any case got the wrong reply.
"""

import socket
import struct
import sys
import time

from scapy.all import IP, TCP, Raw, raw  # noqa: E402 (Debian's scapy)

STACK = "10.203.80.2"
ME = "10.203.80.77"
ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
PACKET_OUTGOING = 4

tun = sys.argv[sys.argv.index("--tun") + 1] if "--tun" in sys.argv else "portlab0"
sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
sock.bind((tun, ETH_P_ALL))
sock.settimeout(0.05)
failures = []
cases = [0]
next_port = [20000]


def port():
    next_port[0] += 1
    return next_port[0]


def ip_checksum(header):
    if len(header) % 2:
        header += b"\0"
    s = sum(struct.unpack("!%dH" % (len(header) // 2), header))
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def fix_ip_checksum(b):
    """Recomputes the IPv4 header checksum of bytes whose header we edited."""
    b = bytearray(b)
    ihl = (b[0] & 0x0F) * 4
    b[10:12] = b"\0\0"
    b[10:12] = struct.pack("!H", ip_checksum(bytes(b[: max(ihl, 20)])))
    return bytes(b)


def drain():
    while True:
        try:
            sock.recvfrom(65536)
        except socket.timeout:
            return


def exchange(packet, wait=0.3, sport=None):
    """Sends raw bytes (or a scapy packet) and returns the stack's TCP replies
    to `sport` (or every packet from the stack) within `wait` seconds."""
    data = packet if isinstance(packet, (bytes, bytearray)) else raw(packet)
    drain()
    sock.sendto(bytes(data), (tun, ETH_P_IP))
    replies = []
    end = time.time() + wait
    while time.time() < end:
        try:
            frame, addr = sock.recvfrom(65536)
        except socket.timeout:
            continue
        if addr[2] == PACKET_OUTGOING or not frame or frame[0] >> 4 != 4:
            continue
        p = IP(frame)
        if p.src != STACK:
            continue
        if sport is None or (TCP in p and p[TCP].dport == sport):
            replies.append(p)
    return replies


def syn(sport, seq=1000, options=None, **ip):
    return IP(src=ip.get("src", ME), dst=ip.get("dst", STACK)) / TCP(
        sport=sport, dport=80, flags="S", seq=seq, window=64240,
        options=options if options is not None else [("MSS", 1460)])


class Conn:
    """One established connection, driven by hand."""

    def __init__(self, options=None):
        self.sport = port()
        self.seq = 7000
        replies = exchange(syn(self.sport, self.seq, options), sport=self.sport)
        sa = [r for r in replies if r[TCP].flags == "SA"]
        if not sa:
            raise RuntimeError("no SYN-ACK for %s" % options)
        self.synack = sa[0]
        self.seq += 1
        self.ack = sa[0][TCP].seq + 1
        exchange(self.segment("A"), wait=0.05)

    def segment(self, flags, seq=None, payload=b"", options=None, ack=None):
        t = TCP(sport=self.sport, dport=80, flags=flags,
                seq=self.seq if seq is None else seq,
                ack=self.ack if ack is None else ack, window=64240,
                options=options or [])
        p = IP(src=ME, dst=STACK) / t
        return p / Raw(payload) if payload else p

    def send(self, packet, wait=0.3):
        return exchange(packet, wait=wait, sport=self.sport)

    def get(self, wait=0.5):
        """Sends a request and returns the data segments of the response."""
        request = b"GET /you HTTP/1.1\r\nHost: lab\r\n\r\n"
        replies = self.send(self.segment("PA", payload=request), wait=wait)
        self.seq += len(request)
        data = [r for r in replies if Raw in r]
        if data:
            last = max(data, key=lambda r: r[TCP].seq)
            self.ack = last[TCP].seq + len(last[Raw].load)
        return data

    def close(self):
        """The exact reset: ends it without a reply."""
        self.send(self.segment("R", ack=0), wait=0.05)


def case(name, expectation, got):
    cases[0] += 1
    line = "%-34s %s" % (name, got)
    if expectation:
        print("ok   " + line)
    else:
        print("FAIL " + line)
        failures.append(name)


def source_port(packet):
    data = packet if isinstance(packet, (bytes, bytearray)) else raw(packet)
    ihl = (data[0] & 0x0F) * 4
    return struct.unpack("!H", data[ihl:ihl + 2])[0] if len(data) >= ihl + 2 else None


def silent(name, packet, why):
    """The packet must get no reply at all (to its source port)."""
    replies = exchange(packet, sport=source_port(packet))
    case(name, not replies, "no reply (%s)" % why if not replies
         else "replied: %s" % replies[0].summary())


# --- broken IP headers: dropped before any socket ------------------------
good = raw(syn(port()))
b = bytearray(good)
b[0] = 0x44  # IHL 4: shorter than the minimum header
silent("ip header length 16", fix_ip_checksum(b), "malformed")
b = bytearray(good)
b[0] = 0x4F  # IHL 15: 60 bytes, beyond the options present
silent("ip header length 60", fix_ip_checksum(b), "malformed")
b = bytearray(good)
b[2:4] = struct.pack("!H", len(good) + 40)
silent("total length beyond the packet", fix_ip_checksum(b), "malformed")
b = bytearray(good)
b[2:4] = struct.pack("!H", 24)
silent("total length inside the header", fix_ip_checksum(b), "malformed")
b = bytearray(good)
b[10] ^= 0xFF
silent("bad ip checksum", b, "bad checksum")

# --- broken TCP headers --------------------------------------------------
b = bytearray(raw(syn(port())))
b[36] ^= 0xFF
silent("bad tcp checksum", b, "bad checksum")
silent("data offset 4 (< 5)", IP(src=ME, dst=STACK) / TCP(sport=port(), dport=80, flags="S", dataofs=4),
       "malformed")
silent("data offset 15 beyond segment", IP(src=ME, dst=STACK) / TCP(sport=port(), dport=80, flags="S", dataofs=15),
       "malformed")
p = IP(src=ME, dst=STACK) / TCP(sport=port(), dport=80, flags="S", options=[("MSS", 1460)])
b = bytearray(raw(p))
b[20 + 21] = 0  # the MSS option's length byte: 0
b = IP(bytes(b))
del b[TCP].chksum
silent("option length 0", raw(b), "the engine refuses the segment; Linux would ignore the option")
sport = port()
p = IP(src=ME, dst=STACK) / TCP(sport=sport, dport=80, flags="S", seq=5, options=[("MSS", 1460)])
b = bytearray(raw(p))
b[20 + 21] = 40  # runs past the header
b = IP(bytes(b))
del b[TCP].chksum
replies = exchange(raw(b), sport=sport)
sa = [r for r in replies if r[TCP].flags == "SA"]
case("option length past the header", len(sa) == 1,
     "SYN-ACK, the option ignored (as Linux)" if sa else "no SYN-ACK")
exchange(IP(src=ME, dst=STACK) / TCP(sport=sport, dport=80, flags="R", seq=6), wait=0.05)

# --- impossible addresses --------------------------------------------------
silent("SYN from 0.0.0.0", syn(port(), src="0.0.0.0"), "martian source")
silent("SYN to 255.255.255.255", syn(port(), dst="255.255.255.255"), "broadcast")
silent("SYN to the subnet broadcast", syn(port(), dst="10.203.80.255"), "not the stack's address")
silent("SYN to 224.0.0.1", syn(port(), dst="224.0.0.1"), "multicast")
silent("SYN from the stack's own address", syn(port(), src=STACK), "land attack")
silent("SYN from 255.255.255.255", syn(port(), src="255.255.255.255"), "martian source")

# --- absurd options on a SYN that is answered ---------------------------------
c = Conn(options=[("MSS", 0)])
data = c.get()
sizes = sorted({len(r[Raw].load) for r in data})
case("MSS 0", data and max(sizes) <= 536,
     "ignored: the response came in segments of at most %s bytes (536 default)" % (max(sizes) if sizes else "?"))
c.close()
c = Conn(options=[("MSS", 1)])
data = c.get()
sizes = sorted({len(r[Raw].load) for r in data})
case("MSS 1", data and min(sizes) >= 1 and max(sizes) == 48,
     "clamped to 48: %d data segments of at most %s bytes" % (len(data), max(sizes) if sizes else "?"))
c.close()
c = Conn(options=[("MSS", 1460), ("WScale", 255)])
data = c.get()
case("window scale 255", bool(data),
     "answered; the scale is capped at 14 (RFC 7323)" if data else "no response")
c.close()

# --- adversarial segments on an established connection -------------------------
c = Conn(options=[("MSS", 1460), ("SAckOK", b"")])
data = c.get()
replies = c.send(c.segment("A", options=[("SAck", (0xFFFFFFF0, 0x10))]))
again = c.get()
case("SACK edges near 2^32", bool(again) and not any(r[TCP].flags.R for r in replies),
     "ignored; the connection still serves" if again else "the connection stopped serving")
c.close()

c = Conn()
replies = c.send(c.segment("R", seq=c.seq + 100, ack=0))
acks = [r for r in replies if r[TCP].flags == "A"]
case("reset in window, not exact", len(acks) == 1 and acks[0][TCP].ack == c.seq,
     "challenge ACK for %s (RFC 5961 3.2)" % (acks[0][TCP].ack if acks else None))
data = c.get()
case("... the connection survives", bool(data), "it still serves" if data else "it stopped serving")
c.close()
replies = c.send(c.segment("PA", payload=b"GET / HTTP/1.1\r\n\r\n"))
case("... the exact reset closes it", any(r[TCP].flags.R for r in replies),
     "a later segment gets RST (no connection)")

c = Conn()
replies = c.send(c.segment("S", seq=c.seq + 5000, ack=0))
acks = [r for r in replies if r[TCP].flags == "A"]
case("SYN on an established connection", len(acks) == 1 and acks[0][TCP].ack == c.seq,
     "challenge ACK for %s (RFC 5961 4.2)" % (acks[0][TCP].ack if acks else None))
data = c.get()
case("... the connection survives", bool(data), "it still serves" if data else "it stopped serving")
c.close()

replies = exchange(IP(src=ME, dst=STACK) / TCP(sport=port(), dport=80, flags="SF"))
case("SYN+FIN", not replies, "no reply (malformed)" if not replies else "replied")

print("%d cases, %d failed" % (cases[0], len(failures)))
sys.exit(1 if failures else 0)
