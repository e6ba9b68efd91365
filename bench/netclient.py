#!/usr/bin/env python3
"""netclient.py - what a client sees of a live migration (the bench's
net-client scenario; see bench/README.md).

    netclient.py stream IP PORT UDP_RATE PING_RATE OUT
        Run in the client's network namespace (root: raw ICMP socket).
        Sends numbered UDP datagrams to IP:PORT (the probe guest's echo),
        UDP_RATE a second, and ICMP echo requests to IP, PING_RATE a second
        (0: none), on a fixed schedule, and takes the answers as they come.
        Prints "ready" once the first UDP echo came back (at most 30 s;
        else exits 1).  On SIGUSR1 (or SIGTERM) it stops sending, waits
        GRACE_S for late answers, writes OUT (JSON: the send time of each
        datagram and ping, by number, and the first arrival of each answer,
        all CLOCK_MONOTONIC, the harness's clock) and exits 0.  Bounded:
        it ends by itself after MAX_S.
    netclient.py selftest
        Checks analyse() and fdb_moves() on made-up samples (no root, no
        network): the bench's logic without KVM.

ferrybench.py imports analyse() and fdb_moves(): the numbers come from
the samples, in the harness, not from this process.
"""
import json
import os
import select
import signal
import socket
import struct
import sys
import time

GRACE_S = 1.0          # after the stop: late answers still count
MAX_S = 600.0          # the stream's own bound, whatever the harness does
READY_S = 30.0         # the first echo must come back within this
SIZE = 64              # UDP payload bytes (sequence number + pad)
PAD = b"ferry-net-client" * 4


def _csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s & 0xFFFF) + (s >> 16)
    s += s >> 16
    return ~s & 0xFFFF


class Stream:
    """Both streams' state.  One thread: the main loop; the signal handler
    only sets `stopping`."""

    def __init__(self, ip, port, udp_rate, ping_rate):
        self.ip, self.port = ip, port
        self.udp_period = 1.0 / udp_rate
        self.ping_period = 1.0 / ping_rate if ping_rate > 0 else None
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.setblocking(False)
        self.icmp = None
        if self.ping_period:
            self.icmp = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
            self.icmp.setblocking(False)
        self.ident = os.getpid() & 0xFFFF
        self.udp_sent, self.ping_sent = [], []     # send time, by number
        self.udp_recv, self.ping_recv = {}, {}     # number -> first arrival
        self.stopping = False

    def send_udp(self, now):
        seq = len(self.udp_sent)
        try:
            self.udp.sendto(struct.pack("!Q", seq) + PAD[:SIZE - 8], (self.ip, self.port))
        except (BlockingIOError, OSError):
            pass                # counted as sent: a client's send that went nowhere
        self.udp_sent.append(now)

    def send_ping(self, now):
        seq = len(self.ping_sent)
        body = struct.pack("!Q", seq) + PAD[:48]
        h = struct.pack("!BBHHH", 8, 0, 0, self.ident, seq & 0xFFFF)
        h = struct.pack("!BBHHH", 8, 0, _csum(h + body), self.ident, seq & 0xFFFF)
        try:
            self.icmp.sendto(h + body, (self.ip, 0))
        except (BlockingIOError, OSError):
            pass
        self.ping_sent.append(now)

    def receive(self, sock, now):
        """Drain one socket; record each answer's first arrival."""
        while True:
            try:
                d, a = sock.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                return
            if a[0] != self.ip:
                continue
            if sock is self.udp:
                if a[1] == self.port and len(d) == SIZE and d[8:] == PAD[:SIZE - 8]:
                    self.udp_recv.setdefault(struct.unpack("!Q", d[:8])[0], now)
                continue
            ic = d[(d[0] & 15) * 4:]           # raw ICMP: the IP header first
            if len(ic) >= 16 and ic[0] == 0 and struct.unpack("!H", ic[4:6])[0] == self.ident:
                seq = struct.unpack("!Q", ic[8:16])[0]
                if seq < len(self.ping_sent):
                    self.ping_recv.setdefault(seq, now)

    def run(self, out):
        t0 = time.monotonic()
        next_udp = next_ping = t0
        ready = False
        stop_at = None
        socks = [s for s in (self.udp, self.icmp) if s]
        while True:
            now = time.monotonic()
            if now - t0 > MAX_S:
                break
            if self.stopping and stop_at is None:
                stop_at = now
            if stop_at is not None and now - stop_at >= GRACE_S:
                break
            if not ready and self.udp_recv:
                ready = True
                print("ready", flush=True)
            if not ready and now - t0 > READY_S:
                print("no echo from %s:%d in %g s" % (self.ip, self.port, READY_S), flush=True)
                return 1
            if stop_at is None:
                # A fixed schedule; after a stall of the client itself
                # (over 100 ms) it starts again from now, rather than
                # sending the missed ones in a burst.
                if now >= next_udp:
                    self.send_udp(now)
                    next_udp = max(next_udp + self.udp_period, now - 0.1)
                if self.ping_period and now >= next_ping:
                    self.send_ping(now)
                    next_ping = max(next_ping + self.ping_period, now - 0.1)
                wake = min(next_udp, next_ping if self.ping_period else next_udp)
            else:
                wake = stop_at + GRACE_S
            try:
                r, _, _ = select.select(socks, [], [], max(0.0, wake - time.monotonic()))
            except InterruptedError:
                r = []
            now = time.monotonic()
            for s in r:
                self.receive(s, now)
        res = {"udp_rate": 1.0 / self.udp_period,
               "ping_rate": 1.0 / self.ping_period if self.ping_period else 0,
               "udp_sent": self.udp_sent, "udp_recv": sorted(self.udp_recv.items()),
               "ping_sent": self.ping_sent, "ping_recv": sorted(self.ping_recv.items())}
        tmp = out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(res, f)
        os.rename(tmp, out)
        return 0


# ---- analysis (the harness's side) -----------------------------------------


def analyse(sent, recv, w0, w1):
    """One stream over the window [w0, w1] (CLOCK_MONOTONIC seconds):
    sent, the send time of each number; recv, (number, first arrival)
    pairs.  Returns {"sent": datagrams sent in the window, "lost": those
    never answered, "gap_ms": the longest time in the window with no
    answer arriving (the window's ends count as arrivals, so a stream
    that stopped answering shows the whole rest of it)}."""
    in_win = [i for i, t in enumerate(sent) if w0 <= t <= w1]
    got = dict(recv)
    lost = sum(1 for i in in_win if i not in got)
    arrivals = sorted(t for _, t in recv if w0 <= t <= w1)
    edges = [w0] + arrivals + [w1]
    gap = max(b - a for a, b in zip(edges, edges[1:]))
    return {"sent": len(in_win), "lost": lost, "gap_ms": 1000 * gap}


def fdb_moves(lines, mac, ports):
    """The switch's port for `mac` over time, from `bridge monitor fdb`
    lines (arrival time, text): [(t, port name or None)] with None where
    the entry was deleted.  ports: {"a": ifname, ...}; lines naming
    another port (the switch's own, a port not ours) are left out."""
    names = {v: k for k, v in ports.items()}
    out = []
    mac = mac.lower()
    for t, text in lines:
        f = text.split()
        deleted = bool(f) and f[0] == "Deleted"
        if deleted:
            f = f[1:]
        if len(f) < 3 or f[0].lower() != mac or f[1] != "dev" or f[2] not in names:
            continue
        out.append((t, None if deleted else names[f[2]]))
    return out


def first_at(moves, port, after):
    """When the entry first pointed at `port` after time `after` (None: never)."""
    return next((t for t, p in moves if t > after and p == port), None)


def selftest():
    # 1000/s for 2 s from t=10; nothing answered between 10.8 and 11.1.
    sent = [10 + i / 1000 for i in range(2000)]
    recv = [(i, t + 0.0005) for i, t in enumerate(sent) if not 10.8 <= t < 11.1]
    r = analyse(sent, recv, 10.5, 12.0)
    assert r["sent"] == 1500, r
    assert r["lost"] == 300, r
    assert 300 <= r["gap_ms"] <= 302, r
    # Answers late but all there: no loss; the gap is the delay (from
    # the last answer before 10.8 to the first late one).
    late = [(i, t + (0.25 if 10.8 <= t < 11.1 else 0.0005)) for i, t in enumerate(sent)]
    r = analyse(sent, late, 10.5, 12.0)
    assert r["lost"] == 0 and 250 <= r["gap_ms"] < 252, r
    # Nothing at all after 11.5: the window's end counts.
    r = analyse(sent, [(i, t) for i, t in recv if t < 11.5], 10.5, 12.0)
    assert 499 <= r["gap_ms"] <= 501 and r["lost"] == 300 + 500, r
    # Outside the window: neither counted nor lost.
    r = analyse(sent, recv, 0, 5)
    assert r == {"sent": 0, "lost": 0, "gap_ms": 5000}, r
    mac = "52:54:00:FE:78:02"
    ports = {"a": "fb1pa", "b": "fb1pb", "c": "fb1pc"}
    lines = [(1.0, "52:54:00:fe:78:02 dev fb1pa master fb1sw "),
             (1.5, "33:33:00:00:00:01 dev fb1pb self permanent"),
             (1.6, "52:54:00:fe:78:02 dev fb1sw master fb1sw permanent"),
             (2.0, "Deleted 52:54:00:fe:78:02 dev fb1pa master fb1sw "),
             (2.5, "52:54:00:fe:78:02 dev fb1pb master fb1sw "),
             (3.0, "52:54:00:fe:78:03 dev fb1pa master fb1sw ")]
    m = fdb_moves(lines, mac, ports)
    assert m == [(1.0, "a"), (2.0, None), (2.5, "b")], m
    assert first_at(m, "b", 1.2) == 2.5 and first_at(m, "a", 1.2) is None
    assert first_at(m, "a", 0) == 1.0
    print("netclient selftest: ok")
    return 0


def main(argv):
    if len(argv) == 2 and argv[1] == "selftest":
        return selftest()
    if len(argv) != 7 or argv[1] != "stream":
        print(__doc__, file=sys.stderr)
        return 2
    s = Stream(argv[2], int(argv[3]), float(argv[4]), float(argv[5]))

    def stop(_sig, _frame):
        s.stopping = True
    signal.signal(signal.SIGUSR1, stop)
    signal.signal(signal.SIGTERM, stop)
    return s.run(argv[6])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
