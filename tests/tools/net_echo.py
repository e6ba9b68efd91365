#!/usr/bin/env python3
"""net_echo.py - check that the probe guest's net workload answers.

    net_echo.py IP UDP_PORT

Run where the guest's link is (its network namespace).  Sends ICMP echo
requests (a raw socket: needs root) and UDP datagrams of several sizes to
IP, and checks every answer byte for byte (the kernel has already checked
the IP, ICMP and UDP checksums of what it delivers, and resolved IP by
ARP).  A datagram to another port must get no echo.  Each probe is retried
a few times with a 1 s timeout, so a busy host does not fail it.  Prints
one line per probe; exits 0 when all were answered, 1 otherwise.
"""
import os
import socket
import struct
import sys
import time

TRIES = 3


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s & 0xFFFF) + (s >> 16)
    s += s >> 16
    return ~s & 0xFFFF


def ping(ip, seq, ident):
    r = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    r.settimeout(1)
    payload = os.urandom(56)
    h = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    h = struct.pack("!BBHHH", 8, 0, csum(h + payload), ident, seq)
    for _ in range(TRIES):
        t = time.monotonic()
        r.sendto(h + payload, (ip, 0))
        try:
            while True:
                d, a = r.recvfrom(4096)
                ic = d[(d[0] & 15) * 4:]
                if a[0] != ip or ic[0] != 0:
                    continue
                if struct.unpack("!HH", ic[4:8]) == (ident, seq) and ic[8:] == payload:
                    print("icmp seq %d: reply in %.2f ms" % (seq, (time.monotonic() - t) * 1e3))
                    return True
        except socket.timeout:
            print("icmp seq %d: timeout" % seq)
    return False


def udp(ip, port, size, want_echo):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.settimeout(1 if want_echo else 0.5)
    m = os.urandom(size)
    for _ in range(TRIES if want_echo else 1):
        u.sendto(m, (ip, port))
        try:
            d, a = u.recvfrom(65536)
        except socket.timeout:
            print("udp port %d size %d: no answer" % (port, size))
            continue
        ok = want_echo and d == m and a == (ip, port)
        print("udp port %d size %d: answer %s" % (port, size, "matches" if ok else "WRONG"))
        return ok
    return not want_echo


def main():
    ip, port = sys.argv[1], int(sys.argv[2])
    ident = os.getpid() & 0xFFFF
    ok = True
    for seq in range(5):
        ok &= ping(ip, seq, ident)
    for size in (1, 18, 512, 1472):
        ok &= udp(ip, port, size, True)
    ok &= udp(ip, port + 1, 32, False)
    print("net_echo: %s" % ("all answered" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
