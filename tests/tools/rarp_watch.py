#!/usr/bin/env python3
"""Wait for a gratuitous RARP (QEMU's announce-self frame) from MAC on IFNAME.

Usage: rarp_watch.py IFNAME MAC SECONDS
Prints "ready" once listening, "rarp" and exits 0 when a well-formed one
arrives, exits 1 if none comes in time.
"""
import socket
import sys
import time

ETH_P_ALL = 3  # not ETH_P_RARP: on a bridge port only "all" taps see ingress


def main():
    ifname, mac, secs = sys.argv[1], bytes.fromhex(sys.argv[2].replace(":", "")), float(sys.argv[3])
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((ifname, ETH_P_ALL))
    print("ready", flush=True)
    end = time.monotonic() + secs
    while time.monotonic() < end:
        s.settimeout(max(0.01, end - time.monotonic()))
        try:
            f = s.recv(2048)
        except socket.timeout:
            break
        want = (b"\xff" * 6 + mac + b"\x80\x35" + b"\x00\x01\x08\x00\x06\x04\x00\x03" +
                mac + b"\0" * 4 + mac + b"\0" * 4)
        if f[:42] == want:
            print("rarp", flush=True)
            return 0
        if f[12:14] == b"\x80\x35":
            print("other RARP: " + f[:42].hex(), flush=True)
    print("no RARP from %s on %s in %gs" % (sys.argv[2], ifname, secs), flush=True)
    return 1


sys.exit(main())
