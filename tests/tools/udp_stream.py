#!/usr/bin/env python3
"""udp_stream.py - a steady stream of numbered UDP datagrams to an echo.

    udp_stream.py IP PORT RATE MARK STOP

Run where the guest's link is.  Prints "ready", then sends one datagram
every 1/RATE s to IP:PORT (the probe guest's UDP echo), each carrying its
sequence number, and takes the echoes as they come.  Once the file MARK
exists, the datagrams sent from then on are the ones that count; once
STOP exists it stops sending, waits 2 s for late echoes, prints what it
saw and exits 0 when every counted datagram was echoed back (byte for
byte), 1 otherwise.  Bounded: it gives up after 300 s whatever happens.
"""
import os
import select
import socket
import struct
import sys
import time


def main():
    ip, port, rate = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    mark, stop = sys.argv[4], sys.argv[5]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.setblocking(False)
    period = 1.0 / rate
    pad = b"ferry-after-go" * 4
    seq, first_counted, last_sent = 0, None, -1
    echoed = set()
    t0 = time.monotonic()
    next_send = t0
    stop_at = None
    print("ready", flush=True)
    while time.monotonic() - t0 < 300:
        now = time.monotonic()
        if stop_at is None and os.path.exists(stop):
            stop_at = now
        if stop_at is not None and now - stop_at > 2.0:
            break
        if stop_at is None and now >= next_send:
            if first_counted is None and os.path.exists(mark):
                first_counted = seq
            u.sendto(struct.pack("!Q", seq) + pad, (ip, port))
            last_sent = seq
            seq += 1
            next_send += period
        r, _, _ = select.select([u], [], [], max(0.0, min(period, next_send - time.monotonic())))
        if not r:
            continue
        try:
            d, a = u.recvfrom(65536)
        except BlockingIOError:
            continue
        if a == (ip, port) and len(d) == 8 + len(pad) and d[8:] == pad:
            echoed.add(struct.unpack("!Q", d[:8])[0])
    if first_counted is None:
        print("the mark never came")
        return 1
    counted = range(first_counted, last_sent + 1)
    missing = [s for s in counted if s not in echoed]
    print("sent %d, echoed %d; after the mark: %d sent, %d missing%s" %
          (last_sent + 1, len(echoed), len(counted), len(missing),
           (": " + " ".join(map(str, missing[:40]))) if missing else ""))
    return 0 if counted and not missing else 1


if __name__ == "__main__":
    sys.exit(main())
