#!/usr/bin/env python3
"""Wait for a gratuitous RARP (QEMU's announce-self frame) from MAC on IFNAME,
or, with a fourth argument IP, for the guest's own gratuitous ARP request
for IP from MAC (what a driver sends on VIRTIO_NET_S_ANNOUNCE).

Usage: rarp_watch.py IFNAME MAC SECONDS [IP]
Prints "ready" once listening, "rarp" (or "garp") and exits 0 when a
well-formed one arrives from the interface's far side (not one the host
sends out through it), exits 1 if none comes in time.
"""
import socket
import sys
import time

ETH_P_ALL = 3  # not ETH_P_RARP: on a bridge port only "all" taps see ingress
PACKET_OUTGOING = 4


def main():
    ifname, mac, secs = sys.argv[1], bytes.fromhex(sys.argv[2].replace(":", "")), float(sys.argv[3])
    ip = socket.inet_aton(sys.argv[4]) if len(sys.argv) > 4 else None
    if ip:
        what = "garp"
        want = (b"\xff" * 6 + mac + b"\x08\x06" + b"\x00\x01\x08\x00\x06\x04\x00\x01" +
                mac + ip + b"\0" * 6 + ip)
    else:
        what = "rarp"
        want = (b"\xff" * 6 + mac + b"\x80\x35" + b"\x00\x01\x08\x00\x06\x04\x00\x03" +
                mac + b"\0" * 4 + mac + b"\0" * 4)
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((ifname, ETH_P_ALL))
    print("ready", flush=True)
    end = time.monotonic() + secs
    while time.monotonic() < end:
        s.settimeout(max(0.01, end - time.monotonic()))
        try:
            f, addr = s.recvfrom(2048)
        except socket.timeout:
            break
        if addr[2] == PACKET_OUTGOING:
            continue  # flooded to this port by the bridge, not from behind it
        if f[:42] == want:
            print(what, flush=True)
            return 0
        if f[12:14] == want[12:14]:
            print("other %s: %s" % (what, f[:42].hex()), flush=True)
    print("no %s from %s on %s in %gs" % (what, sys.argv[2], ifname, secs), flush=True)
    return 1


sys.exit(main())
