#!/usr/bin/env python3
"""ferry vs QEMU live-migration benchmark (see bench/README.md).

Runs each scenario with QEMU and ferry side by side, on the same probe guest,
over the same link, in the same run; measures what it can itself (wall time,
guest-visible outage from the heartbeats, bytes on the wire, CPU seconds,
the link's raw TCP capacity) and records what each VMM reports (total time,
downtime, bytes).  Each scenario runs in one or more modes: pre-copy (bounded
in time; a run that does not converge is cancelled and reported as such),
post-copy, hybrid (post-copy after 2 s of pre-copy).  Writes build/bench/results.csv (one row per migration),
build/bench/summary.csv and summary.txt (medians, ferry / QEMU), a PNG per
scenario (gnuplot, when installed) and the serial logs under
build/bench/logs/.

Needs root (network namespaces, tc), /dev/kvm, qemu-system-x86_64.
Standard library only.
"""

import argparse
import csv
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True      # no __pycache__ in the source tree
import netclient  # noqa: E402  bench/netclient.py: the client of net-client, its analysis
import savebench  # noqa: E402  bench/savebench.py: the save preset (save, snapshot, replication)
import codecbench  # noqa: E402  bench/codecbench.py: QEMU configurations, codec and scale rows

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.abspath(os.environ.get("BUILD", os.path.join(ROOT, "build")))
FERRY = os.path.join(BUILD, "ferry")
PROBE = os.path.join(BUILD, "probe.elf")
NETBENCH = os.path.join(BUILD, "bench", "netbench")
NETCLIENT = os.path.join(ROOT, "bench", "netclient.py")
# Results and logs; FERRYBENCH_OUT puts them elsewhere (e.g. a trial run
# that must not overwrite the last full run's).
OUT = os.path.abspath(os.environ.get("FERRYBENCH_OUT") or os.path.join(BUILD, "bench"))
QEMU = shutil.which("qemu-system-x86_64") or "qemu-system-x86_64"

MiB = 1 << 20
CLK_TCK = os.sysconf("SC_CLK_TCK")
UNLIMITED_QEMU_BW = 100 << 30     # bytes/s: "no limit" for QEMU (its default is 128 MiB/s)
VMM_PORT = 4444                   # where the destination VMM listens
SINK_PORT = 5555                  # where the raw-copy sink listens
RELAY_PORT = 4445                 # WAN relay in front of the VMM
RELAY_SINK_PORT = 5556            # WAN relay in front of the sink

# Bounds on every wait (seconds).
BOOT_TIMEOUT = 180                # boot + fill of the source guest
LISTEN_TIMEOUT = 30
# Destination RAM allocated before the migration, on both VMMs (see README).
PREALLOC = True
MIGRATE_TIMEOUT = 600             # any migration, whatever its mode (a hard failure)
FIRST_HB_TIMEOUT = 20
EXIT_TIMEOUT = 15
CANCEL_TIMEOUT = 30               # a cancelled pre-copy to settle
ALIVE_TIMEOUT = 5                 # the source guest to beat again after a cancel

# Migration modes.  precopy: iterate live, then stop and copy the rest.
# postcopy: switch over at once and pull the rest on demand (QEMU
# migrate-start-postcopy right after migrate).  hybrid: pre-copy for a while
# (Scenario.postcopy_after_s, 2 s), then switch to post-copy (libvirt's
# --timeout-postcopy, virsh --postcopy-after-precopy style).
MODES = ("precopy", "postcopy", "hybrid")
# Every pre-copy run is bounded: a guest that dirties faster than the link
# (or the bandwidth cap) drains never converges.  After this long (per
# scenario; --precopy-timeout) QEMU gets migrate_cancel and ferry's own
# --timeout cancels; the run counts as "not converged", a result, not a
# crash: the guest must still run at the source.
PRECOPY_TIMEOUT = 120
# ferry and post-copy: None = ask `ferry migrate --help` whether it knows
# --mode and migrate-postcopy; True/False forces it.  What the harness then
# runs (see Ferry.migrate_argv):
#   postcopy: ferry migrate CONTROL URI --mode postcopy ...
#   hybrid:   ferry migrate CONTROL URI --mode hybrid ... (ferry picks the
#             moment); with --ferry-hybrid-timed, plain pre-copy and after 2 s
#             ferry migrate-postcopy CONTROL, exactly as QEMU is driven
FERRY_POSTCOPY = None
FERRY_HYBRID_AFTER_S = False
NOT_IMPLEMENTED = "n/a (not implemented)"
# TLS scenarios: credentials made once per run by scripts/tls-certs.sh
# (QEMU's file names, so both VMMs read the same directories: server/ on
# the destination, client/ on the source; the certificate names
# localhost, which both sources are told to expect whatever the address).
TLS_CREDS = None
TLS_HOSTNAME = "localhost"


def tls_creds(h):
    """The credentials' directory, made on first use under the run's tmp."""
    global TLS_CREDS
    if TLS_CREDS is None:
        d = os.path.join(h.tmp, "tls")
        sh(os.path.join(ROOT, "scripts", "tls-certs.sh"), d)
        TLS_CREDS = d
    return TLS_CREDS


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class BenchError(Exception):
    pass


# ---- processes ------------------------------------------------------------


class Proc:
    """A child process that we started.  We reap it ourselves with wait4()
    so that its CPU time survives its exit."""

    def __init__(self, harness, name, argv, netns=None, lines=False, logpath=None):
        if netns:
            argv = ["ip", "netns", "exec", netns] + argv
        self.name = name
        self.argv = argv
        self.rusage = None
        self.status = None
        self.logf = open(logpath or os.devnull, "wb")
        self.popen = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if lines else self.logf,
            stderr=self.logf, start_new_session=True)
        self.pid = self.popen.pid
        harness.procs.append(self)

    def poll(self):
        """Reap if it has exited; True if it has."""
        if self.status is not None:
            return True
        try:
            pid, status, ru = os.wait4(self.pid, os.WNOHANG)
        except ChildProcessError:
            self.status = -1
            return True
        if pid == 0:
            return False
        self.status = os.waitstatus_to_exitcode(status)
        self.rusage = ru
        self.popen.returncode = self.status     # keep Popen from waiting on it
        return True

    def alive(self):
        return not self.poll()

    def wait(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.poll():
                return True
            time.sleep(0.02)
        return self.poll()

    def cpu_seconds(self):
        """utime + stime of the whole process (all threads)."""
        if self.poll():
            return self.rusage.ru_utime + self.rusage.ru_stime if self.rusage else float("nan")
        try:
            with open(f"/proc/{self.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / CLK_TCK
        except (OSError, IndexError, ValueError):
            return float("nan")

    def threads_seconds(self, tids):
        """utime + stime of the threads tids of this process (None once gone)."""
        total = 0
        for tid in tids:
            try:
                with open(f"/proc/{self.pid}/task/{tid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
            except (OSError, IndexError, ValueError):
                return None
        return total / CLK_TCK

    def kill(self, grace=3.0):
        """SIGTERM, then SIGKILL; only this process group (we made it)."""
        if self.poll():
            return
        for sig, wait_s in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.pid, sig)
            except ProcessLookupError:
                pass
            if self.wait(wait_s):
                break
        self.logf.close()


class Serial:
    """Reads a VMM's serial output (its stdout) and stamps each line with
    the time it arrived."""

    HB = re.compile(rb"^hb (\d+)\s*$")

    def __init__(self, stream, logpath):
        self.lines = []             # (monotonic time, bytes)
        self.cv = threading.Condition()
        self.log = open(logpath, "w")
        self.thread = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self.thread.start()

    def _run(self, stream):
        for raw in iter(stream.readline, b""):
            t = time.monotonic()
            line = raw.rstrip(b"\r\n")
            # A last line without its newline is what the guest had written
            # when it paused here (the rest follows at the destination):
            # "hb 40" of "hb 401" is no heartbeat, and its time is the
            # VMM's exit, not the guest's.
            partial = not raw.endswith(b"\n")
            if not (partial and self.HB.match(line)):
                with self.cv:
                    self.lines.append((t, line))
                    self.cv.notify_all()
            self.log.write(f"{t:.6f} {raw.decode(errors='replace').rstrip()}"
                           f"{' (no newline)' if partial else ''}\n")
        self.log.close()

    def wait_for(self, regex, timeout, alive=None):
        """First line matching regex (bytes) -> (t, line), or None."""
        pat = re.compile(regex)
        deadline = time.monotonic() + timeout
        i = 0
        with self.cv:
            while True:
                for t, line in self.lines[i:]:
                    if pat.search(line):
                        return t, line
                i = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0 or (alive is not None and not alive()):
                    return None
                self.cv.wait(min(left, 0.2))

    def heartbeats(self):
        with self.cv:
            out = []
            for t, line in self.lines:
                m = self.HB.match(line)
                if m:
                    out.append((t, int(m.group(1))))
            return out

    def beats_after(self, t, timeout):
        """True once a heartbeat arrives later than t (within timeout)."""
        deadline = time.monotonic() + timeout
        with self.cv:
            while True:
                if any(tl > t and self.HB.match(line) for tl, line in self.lines[-50:]):
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cv.wait(min(left, 0.2))

    def grep(self, regex):
        pat = re.compile(regex)
        with self.cv:
            return [line.decode(errors="replace") for _, line in self.lines if pat.search(line)]


def wait_listen(pid, port, timeout):
    """Wait until a TCP socket listens on `port` in pid's network namespace."""
    want = f":{port:04X}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/net/tcp") as f:
                for row in f.readlines()[1:]:
                    cols = row.split()
                    if cols[1].endswith(want) and cols[3] == "0A":
                        return True
        except OSError:
            return False
        time.sleep(0.05)
    return False


TCP_EXT = ("PruneCalled", "TCPRcvCollapsed", "TCPRcvQDrop", "TCPBacklogDrop")


def tcp_ext(pid):
    """TcpExt counters of pid's network namespace (receiver-side trouble:
    prunes and collapses mean the receiver fell behind and the kernel
    copied its queued data again)."""
    try:
        with open(f"/proc/{pid}/net/netstat") as f:
            rows = f.read().splitlines()
    except OSError:
        return {}
    for names, values in zip(rows[::2], rows[1::2]):
        if names.startswith("TcpExt:"):
            d = dict(zip(names.split()[1:], map(int, values.split()[1:])))
            return {k: d.get(k, 0) for k in TCP_EXT}
    return {}


def sh(*argv, check=True):
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    if check and r.returncode != 0:
        raise BenchError(f"{' '.join(argv)}: {r.stderr.strip()}")
    return r.stdout


# ---- links ----------------------------------------------------------------


class Link:
    """Where the migration goes: a private loopback, or two namespaces joined
    by a veth pair (optionally shaped with tbf), optionally through the
    delaying relay.  Bytes on the wire come from the interfaces' counters."""

    def __init__(self, name, kind, rate_bit=None, delay_ms=0):
        self.name, self.kind, self.rate_bit, self.delay_ms = name, kind, rate_bit, delay_ms
        self.relays = []

    def describe(self):
        if self.kind == "loopback":
            return "loopback 127.0.0.1 (private netns)"
        s = f"veth, tbf {self.rate_bit / 1e9:g} Gbit/s" if self.rate_bit else "veth, unshaped"
        if self.delay_ms:
            s += f", +{self.delay_ms} ms each way via relay (RTT {2 * self.delay_ms} ms)"
        return s

    def setup(self, h):
        tag = h.tag
        if self.kind == "loopback":
            self.ns_src = self.ns_dst = f"fb{tag}-lo"
            h.add_netns(self.ns_src)
            sh("ip", "-n", self.ns_src, "link", "set", "lo", "up")
            self.src_ip = self.dst_ip = "127.0.0.1"
            self.ifaces = [(self.ns_src, "lo")]
            self.fwd_iface = None
        else:
            self.ns_src, self.ns_dst = f"fb{tag}-s", f"fb{tag}-d"
            a, b = f"fb{tag}a", f"fb{tag}b"
            h.add_netns(self.ns_src)
            h.add_netns(self.ns_dst)
            sh("ip", "link", "add", a, "netns", self.ns_src, "type", "veth",
               "peer", "name", b, "netns", self.ns_dst)
            self.src_ip, self.dst_ip = "10.77.0.1", "10.77.0.2"
            for ns, dev, ip in ((self.ns_src, a, self.src_ip), (self.ns_dst, b, self.dst_ip)):
                sh("ip", "-n", ns, "link", "set", "lo", "up")
                sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
                sh("ip", "-n", ns, "link", "set", dev, "up")
                if self.rate_bit:
                    # burst: 1 ms at line rate, at least 64 KiB (one GSO packet)
                    burst = max(self.rate_bit // 8 // 1000, 64 * 1024)
                    sh("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", dev, "root",
                       "tbf", "rate", str(self.rate_bit), "burst", str(burst), "latency", "50ms")
            self.ifaces = [(self.ns_src, a), (self.ns_dst, b)]
            self.fwd_iface = (self.ns_src, a)
        # The destination VMM listens here; the source connects to migrate_addr.
        if self.delay_ms:
            self.vmm_listen = ("127.0.0.1", VMM_PORT)
            self.sink_listen = ("127.0.0.1", SINK_PORT)
            self.migrate_addr = (self.dst_ip, RELAY_PORT)
            self.sink_addr = (self.dst_ip, RELAY_SINK_PORT)
            for lport, tport in ((RELAY_PORT, VMM_PORT), (RELAY_SINK_PORT, SINK_PORT)):
                r = Proc(h, "relay", [NETBENCH, "relay", self.dst_ip, str(lport), "127.0.0.1",
                                      str(tport), str(self.delay_ms)], netns=self.ns_dst,
                         lines=True, logpath=os.path.join(h.logdir, f"relay-{lport}.err"))
                if r.popen.stdout.readline().strip() != b"ready":
                    raise BenchError("relay did not start")
                self.relays.append(r)
        else:
            self.vmm_listen = self.migrate_addr = (self.dst_ip, VMM_PORT)
            self.sink_listen = self.sink_addr = (self.dst_ip, SINK_PORT)

    def teardown(self, h):
        for r in self.relays:
            r.kill()
        self.relays = []
        for ns in sorted({self.ns_src, self.ns_dst}):
            h.del_netns(ns)

    def counters(self):
        """{'total': tx bytes of every interface, 'fwd': tx bytes src->dst or None}"""
        tx = {}
        for ns, dev in self.ifaces:
            info = json.loads(sh("ip", "-n", ns, "-s", "-j", "link", "show", "dev", dev))[0]
            tx[(ns, dev)] = info["stats64"]["tx"]["bytes"]
        return {"total": sum(tx.values()), "fwd": tx[self.fwd_iface] if self.fwd_iface else None}

    def raw_copy(self, h, nbytes, into_mem=0):
        """Plain TCP copy of nbytes over the same path; wire bytes counted
        alike.  into_mem: the receiver lands the bytes in a fresh mapping of
        that many bytes (first-touch page faults, as in a VMM's new guest
        RAM) instead of reusing one buffer."""
        argv = [NETBENCH, "sinkmem" if into_mem else "sink", self.sink_listen[0],
                str(self.sink_listen[1])] + ([str(into_mem)] if into_mem else [])
        sink = Proc(h, "sink", argv, netns=self.ns_dst, lines=True,
                    logpath=os.path.join(h.logdir, "sink.err"))
        try:
            if sink.popen.stdout.readline().strip() != b"ready":
                raise BenchError("sink did not start")
            c0 = self.counters()
            r = subprocess.run(["ip", "netns", "exec", self.ns_src, NETBENCH, "send",
                                self.sink_addr[0], str(self.sink_addr[1]), str(nbytes)],
                               stdin=subprocess.DEVNULL, capture_output=True, text=True,
                               timeout=MIGRATE_TIMEOUT)
            c1 = self.counters()
            if r.returncode != 0:
                raise BenchError(f"raw copy failed: {r.stderr.strip()}")
            res = json.loads(r.stdout.strip().splitlines()[-1])
            sink.wait(10)
        finally:
            sink.kill()
        wire = c1["total"] - c0["total"]
        return {"bytes": nbytes, "seconds": res["seconds"], "wire": wire,
                "rate": wire / res["seconds"]}


# ---- QMP --------------------------------------------------------------------


class QMP:
    def __init__(self, path, timeout=20, poll=0.05):
        """Connect (retrying every `poll` seconds until `timeout`)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise BenchError(f"no QMP at {path}")
                time.sleep(poll)
        self.timeout = timeout
        self.sock.settimeout(timeout)
        self.buf = b""
        self.events = []
        self._read()                     # greeting
        self.cmd("qmp_capabilities")

    def _read(self):
        """One JSON message; socket.timeout if none came in time (the
        partial line, if any, stays buffered)."""
        while b"\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise BenchError("QMP closed")
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def cmd(self, name, args=None):
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            m = self._read()
            if "event" in m:
                self.events.append(m)
            elif "error" in m:
                raise BenchError(f"QMP {name}: {m['error'].get('desc')}")
            elif "return" in m:
                return m["return"]

    def wait_event(self, pred, timeout):
        """Return (monotonic time, event) of the first event with pred(event)."""
        try:
            return self._wait_event(pred, timeout)
        finally:
            self.sock.settimeout(self.timeout)     # commands get their usual time again

    def _wait_event(self, pred, timeout):
        deadline = time.monotonic() + timeout
        while True:
            for e in self.events:
                if pred(e):
                    self.events.remove(e)
                    return time.monotonic(), e
            left = deadline - time.monotonic()
            if left <= 0:
                return None, None
            self.sock.settimeout(min(left, 1.0))
            try:
                m = self._read()
            except socket.timeout:
                continue
            if "event" in m:
                if pred(m):
                    return time.monotonic(), m
                self.events.append(m)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# ---- the two VMMs -------------------------------------------------------------


class Qemu:
    """config: a named configuration (codecbench.QEMU_CONFIGS: capabilities
    and parameters set on both ends); its name is this VMM's in the run."""

    def __init__(self, config="qemu"):
        self.name = config
        self.caps, self.params = codecbench.QEMU_CONFIGS[config]

    @staticmethod
    def available():
        return shutil.which(QEMU) is not None

    def _argv(self, sc, qmp, nic=None, disk=()):
        """nic: (tap, MAC) for a guest with a NIC, disk: the options of a
        guest with a disk (_disk): then the microvm machine with
        virtio-net-device / virtio-blk-device, as in the device scenarios."""
        machine = (["-M", "microvm,acpi=off", "-global", "virtio-mmio.force-legacy=false"]
                   if nic or disk else [])
        net = ["-netdev", f"tap,id=n0,ifname={nic[0]},script=no,downscript=no",
               "-device", f"virtio-net-device,netdev=n0,mac={nic[1]}"] if nic else []
        return [QEMU] + machine + ["-enable-kvm", "-cpu", "host,-arch-capabilities",
                "-m", str(sc.mem_mib), "-smp", str(sc.vcpus), "-nodefaults",
                "-display", "none", "-serial", "stdio",
                "-device", "isa-debug-exit,iobase=0xf4,iosize=4"] + net + list(disk) + [
                "-kernel", PROBE, "-append", sc.cmdline,
                "-qmp", f"unix:{qmp},server=on,wait=off"]

    @staticmethod
    def _disk(run, dst):
        """The guest's disk as libvirt gives it (-blockdev, node NBD_NODE):
        the shared NBD export, or this end's own raw image.  QEMU's
        defaults otherwise (cache=writeback, aio=threads)."""
        sc = run.sc
        if not sc.storage:
            return []
        if sc.storage == "nbd":
            node = ["-blockdev", f"driver=nbd,node-name={NBD_NODE},server.type=unix,"
                                 f"server.path={run.storage.sock}"]
        else:
            img = run.storage.dst if dst else run.storage.src
            node = ["-blockdev", f"driver=file,node-name=f0,filename={img}",
                    "-blockdev", f"driver=raw,node-name={NBD_NODE},file=f0"]
        return node + ["-device", f"virtio-blk-device,drive={NBD_NODE}"]

    @staticmethod
    def _copies(sc):
        return sc.storage in ("copy", "incremental")

    @staticmethod
    def _tls(h, sc, endpoint):
        """QEMU's TLS credentials object (as libvirt passes it) for a TLS scenario."""
        if not sc.tls:
            return []
        d = os.path.join(tls_creds(h), endpoint)
        return ["-object", f"tls-creds-x509,id=tls0,dir={d},endpoint={endpoint}"]

    def start_dst(self, h, run, link):
        ip, port = link.vmm_listen
        # RAM allocated up front, as ferry's destination.  Not for QEMU's
        # post-copy: it discards all destination RAM when post-copy starts.
        pre = ["-mem-prealloc"] if PREALLOC and codecbench.prealloc(run.sc) and run.mode == "precopy" else []
        # A disk to copy, or a configuration's capabilities: the NBD export,
        # capabilities and then the listening socket come from QMP
        # (prepare_dst), as libvirt does it.
        incoming = "defer" if self._copies(run.sc) or self.caps else f"tcp:{ip}:{port}"
        return (self._argv(run.sc, run.dst_ctl, run.nic, self._disk(run, True)) + pre +
                self._tls(h, run.sc, "server") + ["-incoming", incoming])

    def prepare_dst(self, h, run, link):
        """A disk to copy (libvirt's way for --copy-storage-all): the
        destination, started with -incoming defer, exports its empty (or
        older) image over NBD, writable, on the migration network, then
        listens for the migration."""
        if not self._copies(run.sc) and not self.caps:
            return
        ip, port = link.vmm_listen
        q = QMP(run.dst_ctl)
        try:
            if self.caps:
                self._set_config(q)
            if not self._copies(run.sc):
                q.cmd("migrate-incoming", {"uri": f"tcp:{ip}:{port}"})
                return
            q.cmd("nbd-server-start", {"addr": {"type": "inet", "data": {
                "host": link.dst_ip, "port": str(NBD_PORT)}}})
            try:        # libvirt with QEMU >= 5.2; nbd-server-add before
                q.cmd("block-export-add", {"type": "nbd", "id": f"export-{NBD_NODE}",
                                           "node-name": NBD_NODE, "name": NBD_NODE,
                                           "writable": True})
            except BenchError as e:
                if "block-export-add" not in str(e) and "not found" not in str(e).lower():
                    raise
                q.cmd("nbd-server-add", {"device": NBD_NODE, "writable": True})
            q.cmd("migrate-incoming", {"uri": f"tcp:{ip}:{port}"})
        finally:
            q.close()

    def _set_config(self, q):
        """This configuration's capabilities and parameters (both ends)."""
        q.cmd("migrate-set-capabilities", {"capabilities": [
            {"capability": c, "state": True} for c in self.caps]})
        if self.params:
            q.cmd("migrate-set-parameters", dict(self.params))

    def start_src(self, h, run, link):
        return (self._argv(run.sc, run.src_ctl, run.nic, self._disk(run, False)) +
                self._tls(h, run.sc, "client"))

    def modes(self):
        return set(MODES)

    TERMINAL = ("completed", "failed", "cancelled")

    def migrate(self, h, run, link):
        sc, mode = run.sc, run.mode
        if self._copies(sc):
            if mode != "precopy":
                raise BenchError("the storage copy scenarios run in pre-copy only")
            return self._migrate_copy(h, run, link)
        post = mode != "precopy"
        if post or sc.tls:
            # Post-copy must be enabled on both ends before `migrate`; the
            # destination also counts how long its vCPUs wait for pages.
            # TLS: the destination checks its parameters when the source
            # connects, so setting them now is in time.
            qd = QMP(run.dst_ctl)
            try:
                if post:
                    qd.cmd("migrate-set-capabilities", {"capabilities": [
                        {"capability": "postcopy-ram", "state": True},
                        {"capability": "postcopy-blocktime", "state": True}]})
                if sc.tls:
                    qd.cmd("migrate-set-parameters", {"tls-creds": "tls0"})
            finally:
                qd.close()
        q = QMP(run.src_ctl)
        marks = {}

        def terminal(e):
            if e["event"] != "MIGRATION":
                return False
            st = e["data"]["status"]
            if st == "postcopy-active" and "postcopy" not in marks:
                marks["postcopy"] = time.monotonic()
            return st in self.TERMINAL

        try:
            caps = [{"capability": "events", "state": True}]
            caps += [{"capability": c, "state": True} for c in self.caps]
            if post:
                caps.append({"capability": "postcopy-ram", "state": True})
            q.cmd("migrate-set-capabilities", {"capabilities": caps})
            bw = sc.bandwidth or UNLIMITED_QEMU_BW
            params = {"max-bandwidth": bw, "downtime-limit": sc.downtime_ms, **self.params}
            if sc.tls:
                params.update({"tls-creds": "tls0", "tls-hostname": TLS_HOSTNAME})
            q.cmd("migrate-set-parameters", params)
            ip, port = link.migrate_addr
            t0 = time.monotonic()
            q.cmd("migrate", {"uri": f"tcp:{ip}:{port}"})
            t1 = ev = before = None
            if mode == "hybrid":
                # Pre-copy for postcopy_after_s unless it finishes first.
                t1, ev = q.wait_event(terminal, sc.postcopy_after_s)
            if post and ev is None:
                marks["start_postcopy"] = time.monotonic()
                self._start_postcopy(q)
            if ev is None:
                limit = sc.precopy_timeout_s if mode == "precopy" else MIGRATE_TIMEOUT
                t1, ev = q.wait_event(terminal, max(0.0, t0 + limit - time.monotonic()))
            if ev is None and mode == "precopy":
                # Bounded pre-copy: give up, the guest runs on at the source.
                t1 = time.monotonic()
                log(f"  QEMU pre-copy not converged after {sc.precopy_timeout_s:g} s: migrate_cancel")
                before = q.cmd("query-migrate")     # a cancelled one reports no "ram"
                q.cmd("migrate_cancel")
                _, ev = q.wait_event(terminal, CANCEL_TIMEOUT)
                if ev is None:
                    raise BenchError("QEMU did not cancel")
                if ev["data"]["status"] == "completed":     # it finished meanwhile
                    t1 = time.monotonic()
                elif ev["data"]["status"] == "cancelled":
                    ev["data"]["status"] = "not-converged"
            elif ev is None:
                raise BenchError(f"QEMU {mode} migration timed out after {MIGRATE_TIMEOUT} s")
            info = qemu_settled_info(q)
        finally:
            q.close()
        ram = info.get("ram") or (before.get("ram", {}) if before else {})
        status = ev["data"]["status"]
        if status == "completed" and info.get("status") == "completed" and not info.get("total-time"):
            # Still 0 after 2 s of polling: keep the harness's own numbers only.
            log("  QEMU reported total-time 0: its times are left out of this run")
            info["total-time"] = info["downtime"] = None
        res = {"status": status, "t0": t0, "t1": t1,
               "total_ms": info.get("total-time"), "downtime_ms": info.get("downtime"),
               "setup_ms": info.get("setup-time"), "vmm_bytes": ram.get("transferred"),
               "iterations": ram.get("dirty-sync-count"), "raw": info}
        if post:
            res["postcopy_requests"] = ram.get("postcopy-requests")
            res["postcopy_bytes"] = ram.get("postcopy-bytes")
            if "postcopy" in marks:
                res["t_postcopy"] = marks["postcopy"]
        return res

    def _migrate_copy(self, h, run, link):
        """Live disk migration as libvirt drives it (virsh migrate
        --copy-storage-all, QEMU >= 2.11): the NBD target on the
        destination's export (blockdev-add), blockdev-mirror sync=full to
        it, BLOCK_JOB_READY, then the migration with pause-before-switchover;
        in pre-switchover (the guest stopped) block-job-cancel, which on a
        ready mirror copies what is still dirty and ends it without a pivot
        (BLOCK_JOB_COMPLETED), then migrate-continue.  The total time runs
        from blockdev-add to the MIGRATION event "completed"."""
        sc = run.sc
        q = QMP(run.src_ctl)
        res = {}

        def job_end(e):
            return (e["event"] in ("BLOCK_JOB_COMPLETED", "BLOCK_JOB_CANCELLED")
                    and e.get("data", {}).get("device") == MIRROR_JOB)

        def ready(e):
            return job_end(e) or (e["event"] == "BLOCK_JOB_READY"
                                  and e.get("data", {}).get("device") == MIRROR_JOB)

        def mig(*states):
            return lambda e: e["event"] == "MIGRATION" and e["data"]["status"] in states

        try:
            q.cmd("migrate-set-capabilities", {"capabilities": [
                {"capability": "events", "state": True},
                {"capability": "pause-before-switchover", "state": True}]})
            q.cmd("migrate-set-parameters", {"max-bandwidth": sc.bandwidth or UNLIMITED_QEMU_BW,
                                             "downtime-limit": sc.downtime_ms})
            t0 = time.monotonic()
            q.cmd("blockdev-add", {"driver": "nbd", "node-name": MIRROR_TARGET,
                                   "server": {"type": "inet", "host": link.dst_ip,
                                              "port": str(NBD_PORT)},
                                   "export": NBD_NODE})
            q.cmd("blockdev-mirror", {"job-id": MIRROR_JOB, "device": NBD_NODE,
                                      "target": MIRROR_TARGET, "sync": "full"})
            t_ready, ev = q.wait_event(ready, MIGRATE_TIMEOUT)
            if ev is None or ev["event"] != "BLOCK_JOB_READY":
                raise BenchError(f"QEMU's mirror did not get ready: {ev or 'timed out'}")
            res["mirror_ready_ms"] = 1000 * (t_ready - t0)
            ip, port = link.migrate_addr
            t_mig = time.monotonic()
            q.cmd("migrate", {"uri": f"tcp:{ip}:{port}"})
            _, ev = q.wait_event(mig("pre-switchover", *self.TERMINAL),
                                 max(0.0, t_mig + sc.precopy_timeout_s - time.monotonic()))
            if ev is None:
                q.cmd("migrate_cancel")
                raise BenchError(f"QEMU's RAM migration did not converge in {sc.precopy_timeout_s:g} s")
            if ev["data"]["status"] != "pre-switchover":
                raise BenchError(f"QEMU's migration {ev['data']['status']} before the switchover")
            t_pause = time.monotonic()
            q.cmd("block-job-cancel", {"device": MIRROR_JOB})
            _, jev = q.wait_event(job_end, MIGRATE_TIMEOUT)
            if jev is None or jev["data"].get("error"):
                raise BenchError(f"QEMU's mirror did not complete: {jev or 'timed out'}")
            res["disk_bytes"] = jev["data"].get("offset")
            res["nbd_tcp_bytes"] = nbd_tcp_bytes(link.ns_src)
            q.cmd("migrate-continue", {"state": "pre-switchover"})
            res["switchover_pause_ms"] = 1000 * (time.monotonic() - t_pause)
            t1, ev = q.wait_event(mig(*self.TERMINAL), MIGRATE_TIMEOUT)
            if ev is None:
                raise BenchError("QEMU's migration did not end after migrate-continue")
            info = qemu_settled_info(q)
            try:
                q.cmd("blockdev-del", {"node-name": MIRROR_TARGET})
            except BenchError:
                pass
        finally:
            q.close()
        ram = info.get("ram") or {}
        # QEMU's own total-time is the RAM migration's only, without the
        # mirror before it: kept apart (ram_total_ms), the harness's total
        # (wall_ms) is the one to compare.
        res.update({"status": ev["data"]["status"], "t0": t0, "t1": t1,
                    "total_ms": None, "ram_total_ms": info.get("total-time"),
                    "downtime_ms": info.get("downtime"),
                    "setup_ms": info.get("setup-time"),
                    # RAM and the mirror's bytes, as ferry's data-processed counts both
                    "vmm_bytes": (ram.get("transferred") or 0) + (res.get("disk_bytes") or 0),
                    "iterations": ram.get("dirty-sync-count"), "raw": info})
        return res

    @staticmethod
    def _start_postcopy(q):
        """migrate-start-postcopy; QEMU refuses it for a moment right after
        `migrate` on some versions: retry briefly."""
        for i in range(50):
            try:
                q.cmd("migrate-start-postcopy")
                return
            except BenchError as e:
                if i == 49 or "after migration has been started" not in str(e):
                    raise
                time.sleep(0.02)

    def dst_report(self, h, run):
        """The destination's own post-copy numbers (vCPU time blocked on
        page faults that had to go to the source)."""
        if run.mode == "precopy":
            return {}
        try:
            q = QMP(run.dst_ctl, timeout=5)
            try:
                info = q.cmd("query-migrate")
            finally:
                q.close()
        except (BenchError, OSError) as e:
            log(f"  {run.id}: destination query-migrate: {e}")
            return {}
        return {"blocktime_ms": info.get("postcopy-blocktime"),
                "vcpu_blocktime_ms": info.get("postcopy-vcpu-blocktime"),
                "dst_report": info}

    @staticmethod
    def vcpu_tids(run, src):
        """The source's vCPU threads, from QMP (QEMU names its threads only
        with -name debug-threads=on)."""
        try:
            q = QMP(run.src_ctl, timeout=3)
            try:
                return [c["thread-id"] for c in q.cmd("query-cpus-fast")]
            finally:
                q.close()
        except (BenchError, OSError, KeyError, TypeError):
            return []

    @staticmethod
    def quit(proc, ctl):
        if proc.alive():
            try:
                q = QMP(ctl, timeout=3)
                q.cmd("quit")
                q.close()
            except (BenchError, OSError):
                pass
            proc.wait(EXIT_TIMEOUT)

    def stop(self, h, run, src, dst):
        for proc, ctl in ((src, run.src_ctl), (dst, run.dst_ctl)):
            self.quit(proc, ctl)


class Ferry:
    name = "ferry"

    help_text = None

    @classmethod
    def available(cls):
        if not os.access(FERRY, os.X_OK):
            return False
        r = subprocess.run([FERRY, "migrate", "--help"], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=10)
        cls.help_text = r.stdout + r.stderr
        return r.returncode == 0

    def modes(self):
        """Pre-copy always; post-copy and hybrid once `ferry migrate --help`
        shows --mode and migrate-postcopy (FERRY_POSTCOPY forces either way)."""
        post = FERRY_POSTCOPY
        if post is None:
            post = bool(self.help_text and re.search(r"--mode\b", self.help_text)
                        and "migrate-postcopy" in self.help_text)
        return set(MODES) if post else {"precopy"}

    @staticmethod
    def migrate_argv(sc, mode):
        """Options of `ferry migrate` for this scenario and mode.
          precopy:  bounded by --timeout (then ferry cancels by itself; the VM
                    runs on at the source)
          postcopy: --mode postcopy
          hybrid:   --mode hybrid: ferry switches by itself once the dirty
                    rate shows pre-copy cannot converge (QEMU has no such
                    trigger: the harness switches it after postcopy_after_s,
                    as libvirt's --postcopy-after-precopy users do by hand)
        --bandwidth caps the live (pre-copy) phase, as QEMU's max-bandwidth;
        post-copy is uncapped on both (ferry --postcopy-bandwidth, QEMU
        max-postcopy-bandwidth: their defaults)."""
        argv = ["--bandwidth", str(sc.bandwidth or 0), "--downtime", f"{sc.downtime_ms}ms", "--json"]
        if mode == "precopy":
            argv += ["--timeout", f"{sc.precopy_timeout_s:g}s", "--on-timeout", "cancel"]
        elif mode == "postcopy" or (mode == "hybrid" and not FERRY_HYBRID_AFTER_S):
            argv += ["--mode", mode]
        if sc.tls:
            argv += ["--tls-creds", os.path.join(TLS_CREDS, "client"),
                     "--tls-hostname", TLS_HOSTNAME]
        return argv + list(sc.ferry_args)

    def start_dst(self, h, run, link):
        ip, port = link.vmm_listen
        # Post-copy too: ferry fills preallocated pages in place (minor faults).
        pre = (["--memory", f"{run.sc.mem_mib}M", "--prealloc"]
               if PREALLOC and codecbench.prealloc(run.sc) else [])
        tls = ["--tls-creds", os.path.join(tls_creds(h), "server")] if run.sc.tls else []
        return [FERRY, "run", "--incoming", f"tcp:{ip}:{port}", "--serial", "stdio",
                "--control", run.dst_ctl] + pre + tls + self._nic(run) + self._disk(run, True)

    def prepare_dst(self, h, run, link):
        pass

    @staticmethod
    def _disk(run, dst):
        """The shared NBD export on both ends; or this end's own image, the
        destination told to take the source's disk into it (--copy-storage)."""
        sc = run.sc
        if not sc.storage:
            return []
        if sc.storage == "nbd":
            return ["--disk", f"nbd={run.storage.nbd_uri()}"]
        if dst:
            return ["--copy-storage", "--disk", f"path={run.storage.dst}"]
        return ["--disk", f"path={run.storage.src}"]

    @staticmethod
    def _nic(run):
        """The NIC on this host's tap (the destination's MAC comes from the
        source; given anyway, as the system tests do)."""
        return ["--net", f"tap={run.nic[0]},mac={run.nic[1]}"] if run.nic else []

    def start_src(self, h, run, link):
        sc = run.sc
        return [FERRY, "run", "--kernel", PROBE, "--memory", f"{sc.mem_mib}M",
                "--vcpus", str(sc.vcpus), "--cmdline", sc.cmdline, "--serial", "stdio",
                "--control", run.src_ctl] + self._nic(run) + self._disk(run, False)

    def migrate(self, h, run, link):
        sc = run.sc
        ip, port = link.migrate_addr
        argv = ["ip", "netns", "exec", link.ns_src, FERRY, "migrate", run.src_ctl,
                f"tcp:{ip}:{port}"] + self.migrate_argv(sc, run.mode)
        limit = MIGRATE_TIMEOUT
        if run.mode == "precopy":
            limit = min(MIGRATE_TIMEOUT, sc.precopy_timeout_s + CANCEL_TIMEOUT)
        t_switch = None
        switch_out = ""
        t0 = time.monotonic()
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        try:
            if run.mode == "hybrid" and FERRY_HYBRID_AFTER_S:
                try:
                    p.wait(timeout=sc.postcopy_after_s)    # done within it: stays pre-copy
                except subprocess.TimeoutExpired:
                    t_switch = time.monotonic()
                    sw = subprocess.run([FERRY, "migrate-postcopy", run.src_ctl],
                                        stdin=subprocess.DEVNULL, capture_output=True,
                                        text=True, timeout=10)
                    switch_out = f"rc={sw.returncode} {sw.stdout.strip()} {sw.stderr.strip()}"
                    if sw.returncode != 0:
                        log(f"  ferry migrate-postcopy: {switch_out}")
            out, err = p.communicate(timeout=max(1.0, t0 + limit - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise BenchError(f"ferry migrate did not end within {limit:g} s") from None
        finally:
            if p.poll() is None:        # ours: `ferry migrate`, killed on any way out
                p.kill()
                p.communicate()
        t1 = time.monotonic()
        rc = p.returncode
        with open(os.path.join(h.logdir, f"{run.id}-migrate.out"), "w") as f:
            f.write(f"$ {' '.join(argv)}\nrc={rc}\n")
            if t_switch:
                f.write(f"migrate-postcopy at +{t_switch - t0:.3f} s: {switch_out}\n")
            f.write(f"--- stdout\n{out}\n--- stderr\n{err}\n")
        info = {}
        start = out.find("{")
        if start >= 0:
            try:
                info, _ = json.JSONDecoder().raw_decode(out[start:])
            except ValueError:
                info = {}
        status = info.get("status") or ("completed" if rc == 0 else "failed")
        if rc != 0 and status == "completed":
            status = "failed"
        if (run.mode == "precopy" and status in ("failed", "cancelled")
                and "timed out" in str(info.get("error", ""))):
            status = "not-converged"       # its --timeout ran out: cancelled, VM runs on
        res = {"status": status, "t0": t0, "t1": t1,
               "total_ms": info.get("total-time-ms"), "downtime_ms": info.get("downtime-ms"),
               "setup_ms": info.get("setup-time-ms"),
               # data-processed: bytes sent; data-total is the job's size
               "vmm_bytes": info.get("data-processed", info.get("data-total")),
               "iterations": info.get("iterations", info.get("iteration")),
               "phases": info.get("downtime-phases-ms", info.get("downtime-phases")),
               "raw": info}
        block = (info.get("sources") or {}).get("block")
        if isinstance(block, dict):
            res["disk_bytes"] = block.get("sent-bytes")
        pc = info.get("postcopy")
        if isinstance(pc, dict):
            # ferry's own post-copy report (the harness does not see its
            # switch: `ferry migrate` runs to the end).
            res["postcopy_requests"] = pc.get("requests")
            res["blocktime_ms"] = pc.get("vcpu-blocked-ms")
            if pc.get("postcopy-time-ms") is not None and status == "completed":
                res["postcopy_ms"] = pc["postcopy-time-ms"]
                res["precopy_phase_ms"] = (1000 * (t_switch - t0) if t_switch else
                                           max(0.0, 1000 * (t1 - t0) - pc["postcopy-time-ms"]))
        return res

    def dst_report(self, h, run):
        return {}

    @staticmethod
    def vcpu_tids(run, src):
        """The source's vCPU threads: ferry names them vcpuN."""
        tids = []
        try:
            for tid in os.listdir(f"/proc/{src.pid}/task"):
                with open(f"/proc/{src.pid}/task/{tid}/comm") as f:
                    if re.fullmatch(r"vcpu\d+", f.read().strip()):
                        tids.append(int(tid))
        except OSError:
            return []
        return tids

    @staticmethod
    def quit(proc, ctl):
        if proc.alive():
            subprocess.run([FERRY, "quit", ctl], stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=10)
            proc.wait(EXIT_TIMEOUT)

    def stop(self, h, run, src, dst):
        for proc, ctl in ((src, run.src_ctl), (dst, run.dst_ctl)):
            self.quit(proc, ctl)


# ---- scenarios ----------------------------------------------------------------


class Scenario:
    """modes: the migration modes this scenario runs (MODES).
    precopy_timeout_s: the bound on a pre-copy run (then it is cancelled and
    counts as not converged).  converges: False where pre-copy is expected
    not to converge (dirty rate above what the link or cap drains); a
    non-converged pre-copy elsewhere makes the exit status 2.
    postcopy_after_s: hybrid's pre-copy phase."""

    def __init__(self, name, cmdline, mem_mib=1024, link="loopback", vcpus=1,
                 bandwidth=0, downtime_ms=300, primary=False, modes=("precopy",),
                 precopy_timeout_s=PRECOPY_TIMEOUT, converges=True, postcopy_after_s=2.0,
                 about="", ferry_args=(), vmms=None, tls=False, net_client=False,
                 storage=None, disk_fill="random"):
        self.name, self.cmdline, self.mem_mib, self.link = name, cmdline, mem_mib, link
        self.vcpus, self.bandwidth, self.downtime_ms, self.primary = vcpus, bandwidth, downtime_ms, primary
        self.modes, self.precopy_timeout_s, self.converges = tuple(modes), precopy_timeout_s, converges
        self.postcopy_after_s, self.about = postcopy_after_s, about
        # ferry_args: more `ferry migrate` options; vmms: only these VMMs run it (None: all).
        self.ferry_args, self.vmms = tuple(ferry_args), vmms
        # tls: both VMMs migrate over TLS 1.3 with x509 (tls_creds()).
        self.tls = tls
        # net_client: the guest has a NIC on a switched network and a client
        # streams at it through the migration (SwitchedNet, NET_CLIENT_METRICS).
        self.net_client = net_client
        # storage: the guest has a virtio-blk disk it writes at a steady rate
        # (StorageEnv): "nbd" (one qemu-nbd export both ends attach), "copy"
        # (local images, copied live: ferry --copy-storage, QEMU
        # blockdev-mirror to the destination's NBD export) or "incremental"
        # (the destination holds an older copy; ferry --copy-storage=incremental).
        self.storage = storage
        # disk_fill: the source's image for copy and incremental: "random"
        # (every block random data) or "mixed" (write_mixed_image: holes,
        # allocated zeros, text and random data, per 64 KiB range).
        self.disk_fill = disk_fill


class Case:
    """One scenario in one mode: a block of the table, a chart."""

    def __init__(self, sc, mode):
        self.sc, self.mode = sc, mode
        self.label = f"{sc.name}/{mode}"
        # Pre-copy keeps the scenario's own file names (name.png).
        self.file = sc.name if mode == "precopy" else f"{sc.name}-{mode}"


LINKS = {
    "loopback": lambda: Link("loopback", "loopback"),
    "veth-1g": lambda: Link("veth-1g", "veth", rate_bit=1_000_000_000),
    "veth-10g": lambda: Link("veth-10g", "veth", rate_bit=10_000_000_000),
    "wan": lambda: Link("wan", "veth", rate_bit=100_000_000, delay_ms=10),
}

IDLE = "workload=idle fill=random period=10ms"
# A guest that dirties a 256 MiB working set as fast as it can.
FAST = "workload=memtouch wss=256M pattern=random rate=0 fill=random period=10ms"
# Hot/cold: 96 MiB/s of writes over 96 MiB, 9 in 10 to its first 9.6 MiB
# (guest/README.md, pattern=hotcold): below the 1 Gbit/s link, so pre-copy
# converges, but the hot set is rewritten within every pass.  The downtime
# limit is 100 ms: the hot set fits what the link carries in it, so
# --order rewrite may leave it for the switchover (docs/convergence.md).
HOTCOLD = "workload=memtouch wss=96M pattern=hotcold rate=96M fill=random period=10ms"
# net-client (issue 12): the guest's address on the switched network, the
# client's, and what the client sends through the migration (UDP echo
# datagrams and pings a second; --udp-rate, --ping-rate).
NC_GUEST_IP, NC_CLIENT_IP = "10.79.0.2", "10.79.0.1"
NC_UDP_RATE, NC_PING_RATE = 1000, 100
NET_CLIENT = f"workload=idle,net ip={NC_GUEST_IP} udp_port=7 fill=random period=10ms"
# Storage (issue 11): a 1 GiB guest whose disk workload writes 4 KiB blocks
# at a steady 10 MiB/s (guest/README.md, disk_rate=: read-modify-write
# sweeps of a 64 MiB working set, each block checked before it is
# rewritten) on a disk of STORAGE_DISK_MIB (--disk-size, --disk-rate).
STORAGE_DISK_MIB = 2048
STORAGE_WSS_BLOCKS = 16384                  # 64 MiB from block 0: a sweep every 6.4 s at 10 MiB/s
STORAGE_RATE = "10M"
STORAGE_DIFFER_PCT = 5                      # incremental: 64 KiB ranges the old copy differs in


def storage_cmdline():
    return (f"workload=idle,disk disk_rate={STORAGE_RATE} disk_blocks={STORAGE_WSS_BLOCKS} "
            "fill=random period=10ms")
SCENARIOS = [
    Scenario("idle-random-lo", IDLE, primary=True),
    Scenario("idle-mixed-lo", "workload=idle fill=mixed period=10ms"),
    Scenario("memtouch-lo", "workload=memtouch wss=256M pattern=random rate=128M fill=random period=10ms"),
    Scenario("cpu-lo", "workload=cpu fill=random period=10ms"),
    Scenario("verify-lo", "workload=verify wss=64M fill=random period=10ms"),
    Scenario("idle-random-1g", IDLE, link="veth-1g"),
    Scenario("idle-random-10g", IDLE, link="veth-10g"),
    Scenario("idle-random-wan", IDLE, mem_mib=256, link="wan"),
    # Dirty rate above the link's capacity: pre-copy cannot converge on
    # either VMM; post-copy and hybrid must finish.
    Scenario("memtouch-fast-1g", FAST, link="veth-1g", modes=MODES,
             precopy_timeout_s=30, converges=False,
             about="dirty rate above the 1 Gbit/s link"),
    # Issue 4's shape: live phase capped at 128 MiB/s (QEMU's default
    # max-bandwidth), the same guest: pre-copy never converges, hybrid
    # (post-copy after 2 s) finishes.
    Scenario("memtouch-fast-128m", FAST, bandwidth=128 * MiB, modes=("precopy", "hybrid"),
             precopy_timeout_s=30, converges=False,
             about="issue 4's shape"),
    # Issue 13, ordered propagation: the same hot/cold guest, ferry alone,
    # in address order and in rewrite order; the report compares the pages
    # each re-sent (target: rewrite <= 0.5x address).
    Scenario("hotcold-address-1g", HOTCOLD, link="veth-1g", vmms=("ferry",), downtime_ms=100,
             ferry_args=("--order", "address"), about="ferry --order address"),
    Scenario("hotcold-rewrite-1g", HOTCOLD, link="veth-1g", vmms=("ferry",), downtime_ms=100,
             ferry_args=("--order", "rewrite"), about="ferry --order rewrite"),
    # Issue 16, what TLS costs: the plain idle scenarios again over TLS
    # (x509, TLS 1.3, AES-GCM on both VMMs); the report sets each beside
    # its plain twin of the same run.
    Scenario("idle-random-lo-tls", IDLE, tls=True, about="over TLS"),
    Scenario("idle-random-1g-tls", IDLE, link="veth-1g", tls=True, about="over TLS"),
    # Issue 12, the network follows the VM: a guest with a NIC on a switched
    # network, a client streaming UDP echoes and pings at it through the
    # migration; what the client loses, and when the switch learns host B.
    Scenario("net-client", NET_CLIENT, mem_mib=256, link="veth-1g", net_client=True,
             about="a client on a switched network streams at the guest's NIC"),
    # Issue 11, storage follows the VM: shared storage (one NBD export both
    # ends attach), a local disk copied live beside RAM, and a destination
    # that already holds an older copy of the disk.  cmdline is filled in
    # by main() (storage_cmdline(): --disk-rate may change it).
    Scenario("storage-nbd-1g", "", link="veth-1g", storage="nbd",
             about="shared storage: one qemu-nbd export, both ends attached"),
    Scenario("storage-copy-1g", "", link="veth-1g", storage="copy", ferry_args=("--copy-storage",),
             about="local disk copied live: ferry --copy-storage, QEMU blockdev-mirror to an NBD export"),
    # The same copy with a disk as disks are (write_mixed_image: holes,
    # allocated zeros, text, random data); ferry with the codec that pays
    # on it at 1 Gbit/s, lz4 (block data through it, DATA_Z; RAM, random,
    # goes raw where lz4 does not shrink a page), QEMU's mirror as before.
    Scenario("storage-copy-mixed-1g", "", link="veth-1g", storage="copy", disk_fill="mixed",
             ferry_args=("--copy-storage", "--compress", "lz4"),
             about="local disk of mixed content copied live: ferry --copy-storage --compress lz4, "
                   "QEMU blockdev-mirror to an NBD export"),
    Scenario("storage-incremental-1g", "", link="veth-1g", storage="incremental",
             ferry_args=("--copy-storage=incremental",),
             about=f"the destination holds an older copy, {STORAGE_DIFFER_PCT}% of it differing: "
                   "ferry --copy-storage=incremental, QEMU a full mirror"),
]
# Issue 13, side by side: the codec and scale scenarios (bench/codecbench.py);
# QEMU in every configuration on the loopback and codec scenarios.
SCENARIOS += codecbench.scenarios(Scenario)
codecbench.mark(SCENARIOS)
# (address, rewrite) scenario pairs whose pages re-sent the report compares.
ORDER_PAIRS = [("hotcold-address-1g", "hotcold-rewrite-1g")]
# (plain, TLS) scenario pairs whose cost the report compares; the target
# (issue 16) is for loopback: ferry over TLS <= 1.1x ferry plain in time.
TLS_PAIRS = [("idle-random-lo", "idle-random-lo-tls", 1.1), ("idle-random-1g", "idle-random-1g-tls", None)]
PRESETS = {
    "quick": ["idle-random-lo"],
    "order": ["hotcold-address-1g", "hotcold-rewrite-1g"],
    "tls": ["idle-random-lo", "idle-random-lo-tls", "idle-random-1g", "idle-random-1g-tls"],
    "net": ["net-client"],
    "storage": ["storage-nbd-1g", "storage-copy-1g", "storage-copy-mixed-1g", "storage-incremental-1g"],
    # issue 14: save/restore, lazy restore, snapshot, replication, A->B->A (bench/savebench.py)
    "save": [s.name for s in savebench.SAVE_SCENARIOS],
    **codecbench.PRESETS,
    "full": [s.name for s in SCENARIOS if s.name not in codecbench.SCALE]
            + ["disk-randwrite", "disk-seqwrite", "disk-seqread", "net-udp-echo"]   # DEVICE_SCENARIOS, below
            + [s.name for s in savebench.SAVE_SCENARIOS],
}

# Targets for the primary scenario (issue 3), checked on ferry; informational.
TARGETS = [("link_pct", ">=", 80.0, "throughput >= 80% of a plain TCP copy"),
           ("downtime_ms", "<=", 10.0, "VMM-reported downtime <= 10 ms"),
           ("outage_ms", "<=", 20.0, "guest-visible outage <= 20 ms")]


class Run:
    def __init__(self, h, case, vmm, rep):
        self.sc, self.mode, self.vmm, self.rep = case.sc, case.mode, vmm, rep
        self.id = f"{case.file}-{vmm.name}-{rep}"
        self.src_ctl = os.path.join(h.tmp, f"{vmm.name}-src.sock")
        self.dst_ctl = os.path.join(h.tmp, f"{vmm.name}-dst.sock")
        self.nic = None             # (tap, MAC) in a net-client scenario
        self.storage = None         # the StorageEnv of a storage scenario


def outage(src_hb, dst_hb, t0, t_end):
    """Guest-visible outage from the two heartbeat streams.

    Returns dict: outage_ms (gap spanning the switchover: last source
    heartbeat to first destination heartbeat), max_gap_ms (largest gap
    between consecutive heartbeats of the merged streams from migration
    start to t_end), base_gap_ms (median gap before the migration),
    seq_jump (first dst seq - last src seq; 1 = none lost or repeated)."""
    res = {"outage_ms": None, "max_gap_ms": None, "base_gap_ms": None, "seq_jump": None}
    before = [t for t, _ in src_hb if t < t0]
    if len(before) > 2:
        res["base_gap_ms"] = 1000 * statistics.median(b - a for a, b in zip(before, before[1:]))
    if not src_hb or not dst_hb:
        return res
    last_src, first_dst = src_hb[-1], dst_hb[0]
    res["outage_ms"] = 1000 * (first_dst[0] - last_src[0])
    res["seq_jump"] = first_dst[1] - last_src[1]
    merged = sorted(t for t, _ in src_hb + dst_hb if t <= t_end)
    gaps = [b - a for a, b in zip(merged, merged[1:]) if b >= t0]
    if gaps:
        res["max_gap_ms"] = 1000 * max(gaps)
    return res


def run_migration(h, case, vmm, link, rep, post_s=1.0, settle_s=1.0):
    sc = case.sc
    run = Run(h, case, vmm, rep)
    rec = {"scenario": sc.name, "mode": case.mode, "vmm": vmm.name, "rep": rep,
           "link": link.name, "mem_mib": sc.mem_mib, "cmdline": sc.cmdline,
           "status": "error", "error": ""}
    if case.mode == "precopy":
        rec["precopy_timeout_s"] = sc.precopy_timeout_s
    src = dst = net = None
    env = h.storage if sc.storage else None
    if sc.net_client:
        post_s = max(post_s, NC_POST_S)
    if env:
        post_s = max(post_s, storage_post_s())
    try:
        if env:
            env.before_run(h, run)
        for p in (run.src_ctl, run.dst_ctl):
            if os.path.exists(p):
                os.unlink(p)
        if sc.net_client:
            net = SwitchedNet(h, link)
            net.setup(h, run)
            run.nic = (net.tap, NET_MAC)
        dst = Proc(h, f"{vmm.name}-dst", vmm.start_dst(h, run, link), netns=link.ns_dst,
                   lines=True, logpath=os.path.join(h.logdir, f"{run.id}-dst.err"))
        dst_ser = Serial(dst.popen.stdout, os.path.join(h.logdir, f"{run.id}-dst.serial"))
        vmm.prepare_dst(h, run, link)
        if not wait_listen(dst.pid, link.vmm_listen[1], LISTEN_TIMEOUT):
            raise BenchError(f"destination {vmm.name} is not listening")
        src = Proc(h, f"{vmm.name}-src", vmm.start_src(h, run, link), netns=link.ns_src,
                   lines=True, logpath=os.path.join(h.logdir, f"{run.id}-src.err"))
        src_ser = Serial(src.popen.stdout, os.path.join(h.logdir, f"{run.id}-src.serial"))
        t_boot = time.monotonic()
        if not src_ser.wait_for(rb"^probe: running", BOOT_TIMEOUT, alive=src.alive):
            raise BenchError(f"source {vmm.name} did not boot (exit {src.status})")
        rec["boot_s"] = time.monotonic() - t_boot
        if not src_ser.wait_for(rb"^hb ", 10, alive=src.alive):
            raise BenchError("source prints no heartbeats")
        if net:
            if not src_ser.wait_for(rb"^probe: net 0x", 10, alive=src.alive):
                raise BenchError("the guest has no NIC")
            net.start_client(h, run)
        time.sleep(settle_s)

        # The source's vCPU threads, sampled through the migration: the
        # last sample before they end (a paused guest's vCPUs gain nothing).
        tids = vmm.vcpu_tids(run, src)
        vcpu = [src.threads_seconds(tids) if tids else None]
        vcpu_stop = threading.Event()

        def vcpu_sampler():
            while not vcpu_stop.wait(0.02):
                t = src.threads_seconds(tids)
                if t is None:
                    break
                vcpu[1:] = [t]
        sampler = threading.Thread(target=vcpu_sampler, daemon=True)
        if vcpu[0] is not None:
            sampler.start()
        cpu0 = (src.cpu_seconds(), dst.cpu_seconds())
        c0 = link.counters()
        ext0 = tcp_ext(dst.pid)
        m = vmm.migrate(h, run, link)
        cpu1 = (src.cpu_seconds(), dst.cpu_seconds())
        vcpu_stop.set()
        if sampler.is_alive():
            sampler.join()
        t = src.threads_seconds(tids) if vcpu[0] is not None else None
        if t is not None:
            vcpu[1:] = [t]
        if vcpu[0] is not None and len(vcpu) > 1:
            rec["src_vcpu_s"] = vcpu[1] - vcpu[0]
        rec.update({k: m.get(k) for k in ("status", "total_ms", "downtime_ms", "setup_ms",
                                           "vmm_bytes", "iterations", "postcopy_requests",
                                           "postcopy_bytes", "disk_bytes", "nbd_tcp_bytes",
                                           "mirror_ready_ms", "switchover_pause_ms",
                                           "ram_total_ms")})
        rec["vmm_report"] = m.get("raw")
        raw = m.get("raw") if isinstance(m.get("raw"), dict) else {}
        # ferry's own counts (QEMU reports no re-sends): pages sent again, pages deferred.
        rec["pages_resent"] = raw.get("pages-resent")
        rec["pages_deferred"] = raw.get("pages-deferred")
        if m.get("phases"):
            rec["downtime_phases"] = json.dumps(m["phases"], separators=(",", ":"))
        rec["wall_ms"] = 1000 * (m["t1"] - m["t0"])
        if m.get("t_postcopy"):
            # Live phase before the switch to post-copy, and the post-copy
            # phase (guest running at the destination, pages still coming).
            rec["precopy_phase_ms"] = 1000 * (m["t_postcopy"] - m["t0"])
            rec["postcopy_ms"] = 1000 * (m["t1"] - m["t_postcopy"])
        for k in ("precopy_phase_ms", "postcopy_ms", "blocktime_ms"):
            if rec.get(k) is None and m.get(k) is not None:
                rec[k] = m[k]           # ferry: from its own report
        if m["status"] == "not-converged":
            # Bounded pre-copy gave up: a result, not a crash.  What was
            # sent until then is recorded; the guest must run on at the
            # source.
            rec["converged"] = "no"
            c1 = link.counters()
            rec["wire_bytes"] = c1["total"] - c0["total"]
            rec["throughput_mibs"] = rec["wire_bytes"] / MiB / (m["t1"] - m["t0"])
            rec["src_cpu_s"], rec["dst_cpu_s"] = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
            alive = src.alive() and src_ser.beats_after(time.monotonic(), ALIVE_TIMEOUT)
            bad = src_ser.grep(rb"CORRUPT|exception")
            rec["guest_ok"] = alive and not bad
            if not alive:
                rec["error"] = "the source guest did not run on after the cancel"
            elif bad:
                rec["error"] = bad[0]
            log(f"  {run.id}: not converged in {sc.precopy_timeout_s:g} s; source guest "
                + ("runs on" if alive else "DEAD"))
            return rec
        if m["status"] != "completed":
            rec["src_cpu_s"], rec["dst_cpu_s"] = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
            raise BenchError(f"migration {m['status']}")
        rec["converged"] = "yes"

        # The guest must go on at the destination.
        if not dst_ser.wait_for(rb"^hb ", FIRST_HB_TIMEOUT, alive=dst.alive):
            raise BenchError(f"no heartbeat from the destination (exit {dst.status})")
        cpu_dst_resumed = dst.cpu_seconds()
        time.sleep(post_s)
        # Read the counters only now: a source may report "completed" while
        # its last bytes still sit in its socket's send buffer.  Nothing else
        # uses these namespaces.
        c1 = link.counters()
        ext1 = tcp_ext(dst.pid)
        rec["tcp_ext_dst"] = " ".join(f"{k}={ext1[k] - ext0.get(k, 0)}" for k in ext1
                                      if ext1[k] - ext0.get(k, 0))
        rec["wire_bytes"] = c1["total"] - c0["total"]
        rec["wire_fwd_bytes"] = None if c1["fwd"] is None else c1["fwd"] - c0["fwd"]
        rec["throughput_mibs"] = rec["wire_bytes"] / MiB / (m["t1"] - m["t0"])
        d = vmm.dst_report(h, run)
        if d.get("blocktime_ms") is not None:
            rec["blocktime_ms"] = d["blocktime_ms"]
        if d.get("vcpu_blocktime_ms") is not None:
            rec["vcpu_blocktime_ms"] = json.dumps(d["vcpu_blocktime_ms"], separators=(",", ":"))
        if d.get("dst_report"):
            rec["dst_report"] = d["dst_report"]
        # The source's CPU runs to its exit on both VMMs, so both counts
        # hold the same things, freeing the guest's RAM included: ferry's
        # source exits by itself once the migration completes and is reaped
        # now (its rusage covers it to the end); QEMU's would stay in
        # postmigrate, so it is told to quit now.  src_cpu_done_s is the
        # count sampled when the migration command returned (a ferry source
        # may be partway through its exit by then).
        src.wait(EXIT_TIMEOUT if vmm.name == "ferry" else 0)
        vmm.quit(src, run.src_ctl)
        rec["src_cpu_done_s"] = cpu1[0] - cpu0[0]
        rec["src_cpu_s"] = (src.cpu_seconds() if src.status is not None else cpu1[0]) - cpu0[0]
        if rec.get("src_vcpu_s") is not None:
            rec["src_cpu_novcpu_s"] = rec["src_cpu_s"] - rec["src_vcpu_s"]
        rec["dst_cpu_s"] = cpu_dst_resumed - cpu0[1]
        rec["src_exit"] = src.status
        rec.update(outage(src_ser.heartbeats(), dst_ser.heartbeats(), m["t0"], m["t1"] + post_s))
        if net:
            rec.update(net.finish(m, src_ser.heartbeats(), dst_ser.heartbeats(), raw))
            if rec.get("net_error"):
                raise BenchError(rec["net_error"])
        bad = dst_ser.grep(rb"CORRUPT|exception|I/O error") + src_ser.grep(rb"CORRUPT|exception|I/O error")
        rec["guest_ok"] = not bad and dst.alive()
        if bad:
            rec["error"] = bad[0]
        if env:
            # The destination's guest swept its working set at least once
            # (every block read back against its last write) and says so.
            gens = dst_ser.grep(rb"^probe: disk generation ")
            rec["dst_disk_gen"] = gens[-1].split()[-1] if gens else None
            if not gens and not bad:
                rec["guest_ok"] = False
                rec["error"] = "the destination's disk workload completed no generation"
            if vmm.name == "ferry" and sc.storage == "incremental":
                try:
                    with open(os.path.join(h.logdir, f"{run.id}-src.err"), errors="replace") as f:
                        d = DIFFERS.search(f.read())
                    rec["ranges_differ"] = int(d.group(1)) if d else None
                except OSError:
                    pass
    except BenchError as e:
        rec["error"] = str(e)
        if rec["status"] == "completed":
            rec["status"] = "error"
        log(f"  {run.id}: {e}")
    finally:
        if src and dst:
            try:
                vmm.stop(h, run, src, dst)
            except Exception as e:      # noqa: BLE001 - cleanup must go on
                log(f"  {run.id}: stop: {e}")
        for p in (src, dst):
            if p:
                p.kill()
        if net:
            net.teardown(h)
        if env:
            try:
                env.check(rec)
            except BenchError as e:
                rec["error"], rec["guest_ok"] = str(e), False
                log(f"  {run.id}: {e}")
            env.after_run(h, run)
    raw_copy(h, sc, link, rec)
    return rec


def raw_copy(h, sc, link, rec):
    """The link's raw capacity for the same bytes (not after a pre-copy
    that did not converge: its bytes are a time bound's worth)."""
    # Raw TCP copy of the same number of bytes, same path, VMMs gone.
    if rec.get("status") == "not-converged" or sc.storage:
        return          # storage: its bytes would take as long again; the link is known (tbf)
    try:
        n = rec.get("wire_bytes") or sc.mem_mib * MiB
        raw = link.raw_copy(h, n)
        rec["raw_mibs"] = raw["rate"] / MiB
        rec["raw_s"] = raw["seconds"]
        if rec.get("throughput_mibs") and rec["status"] == "completed":
            rec["link_pct"] = 100 * rec["throughput_mibs"] / rec["raw_mibs"]
        if not link.rate_bit or link.rate_bit >= 10_000_000_000:   # where CPU may bind
            raw = link.raw_copy(h, n, into_mem=sc.mem_mib * MiB)
            rec["raw_mem_mibs"] = raw["rate"] / MiB
    except (BenchError, subprocess.TimeoutExpired, ValueError) as e:
        log(f"  {rec['scenario']}/{rec['mode']} {rec['vmm']} #{rec['rep']}: raw copy: {e}")


# ---- net-client: a client on a switched network (issue 12) -------------------------
#
#   client --- switch --- A: bridge --- tap (the guest, before)
#                 \
#                  ------ B: bridge --- tap (the guest, after)
#                 A ======== B   the migration link (the scenario's Link)
#
# The same layout as tests/system/migrate_net_hosts.sh.  The client streams
# numbered UDP datagrams and pings at the guest (bench/netclient.py) from
# before the migration until NC_POST_S after it; what it lost and the
# longest time it heard nothing come from its own timestamps.

NC_POST_S = 3.0        # after the migration: both VMMs' announce rounds (5 in 1.25 s) and steady echoes
NC_READY_TIMEOUT = 40  # the client's first echo (netclient.READY_S) and its start


class SwitchedNet:
    """The net-client scenario's network, built for each run around the
    migration Link's namespaces (host A is link.ns_src, host B link.ns_dst)
    so that no run inherits the last one's FDB or ARP entries.  Each host
    has a bridge joining its uplink and the guest's tap (the same name on
    both); the switch (namespace fb<tag>-sw) is a learning Linux bridge with
    a port to A, B and the client (fb<tag>-c).  `bridge monitor fdb` in the
    switch's namespace reports every change of its forwarding table, each
    line stamped on arrival (Serial), as the heartbeats are.  Touched by the
    harness's main thread only (Serial has its own reader thread)."""

    def __init__(self, h, link):
        t = h.tag
        self.ns_sw, self.ns_c = f"fb{t}-sw", f"fb{t}-c"
        self.hosts = {"a": link.ns_src, "b": link.ns_dst, "c": self.ns_c}
        self.sw, self.br, self.upl, self.tap = f"fb{t}sw", f"fb{t}h", f"fb{t}u", f"fb{t}t"
        self.ports = {k: f"fb{t}p{k}" for k in self.hosts}
        self.monitor = self.fdb = self.client = self.client_out = None

    def setup(self, h, run):
        for ns in (self.ns_sw, self.ns_c):
            h.add_netns(ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", self.ns_sw, "link", "add", self.sw, "type", "bridge")
        sh("ip", "-n", self.ns_sw, "link", "set", self.sw, "up")
        self.monitor = Proc(h, "fdb", ["bridge", "monitor", "fdb"], netns=self.ns_sw, lines=True,
                            logpath=os.path.join(h.logdir, f"{run.id}-fdb.err"))
        self.fdb = Serial(self.monitor.popen.stdout, os.path.join(h.logdir, f"{run.id}-fdb.log"))
        for k, ns in self.hosts.items():
            sh("ip", "link", "add", self.ports[k], "netns", self.ns_sw, "type", "veth",
               "peer", "name", self.upl, "netns", ns)
            sh("ip", "-n", self.ns_sw, "link", "set", self.ports[k], "master", self.sw)
            sh("ip", "-n", self.ns_sw, "link", "set", self.ports[k], "up")
            sh("ip", "-n", ns, "link", "set", self.upl, "up")
        sh("ip", "-n", self.ns_c, "addr", "add", f"{NC_CLIENT_IP}/24", "dev", self.upl)
        for k in ("a", "b"):
            ns = self.hosts[k]
            sh("ip", "-n", ns, "link", "add", self.br, "type", "bridge")
            sh("ip", "-n", ns, "link", "set", self.upl, "master", self.br)
            sh("ip", "netns", "exec", ns, "ip", "tuntap", "add", "dev", self.tap, "mode", "tap")
            sh("ip", "-n", ns, "link", "set", self.tap, "master", self.br)
            sh("ip", "-n", ns, "link", "set", self.tap, "up")
            sh("ip", "-n", ns, "link", "set", self.br, "up")

    def port_now(self):
        """"a", "b", "c" or None: where the switch sends the guest's MAC now."""
        out = sh("bridge", "-n", self.ns_sw, "fdb", "show", "br", self.sw, check=False)
        moves = netclient.fdb_moves([(0.0, line) for line in out.splitlines()], NET_MAC, self.ports)
        return moves[-1][1] if moves else None

    def start_client(self, h, run):
        """The client's stream, once the guest at A answers it and the
        switch has learned A's port for it."""
        self.client_out = os.path.join(h.logdir, f"{run.id}-client.json")
        if os.path.exists(self.client_out):
            os.unlink(self.client_out)
        self.client = Proc(h, "client", [sys.executable, NETCLIENT, "stream", NC_GUEST_IP, "7",
                                         str(NC_UDP_RATE), str(NC_PING_RATE), self.client_out],
                           netns=self.ns_c, lines=True,
                           logpath=os.path.join(h.logdir, f"{run.id}-client.err"))
        out = Serial(self.client.popen.stdout, os.path.join(h.logdir, f"{run.id}-client.log"))
        if not out.wait_for(rb"^ready", NC_READY_TIMEOUT, alive=self.client.alive):
            said = " ".join(out.grep(rb"."))[:200]
            raise BenchError(f"the guest does not answer the client{': ' + said if said else ''}")
        deadline = time.monotonic() + 10
        while self.port_now() != "a":
            if time.monotonic() > deadline:
                raise BenchError("the switch did not learn the guest on host A's port")
            time.sleep(0.05)

    def finish(self, m, src_hb, dst_hb, report):
        """Stop the client; what it saw from the migration's start on, and
        when the switch learned host B.  "net_error" in the result: the
        run failed (the guest no longer answers, the switch is not at B)."""
        t_stop = time.monotonic()
        try:
            os.kill(self.client.pid, signal.SIGUSR1)    # ours: ip netns exec execs it
        except ProcessLookupError:
            pass
        res = {}
        if not self.client.wait(netclient.GRACE_S + 10):
            return {"net_error": "the client did not stop"}
        try:
            with open(self.client_out) as f:
                d = json.load(f)
        except (OSError, ValueError) as e:
            return {"net_error": f"the client's samples: {e}"}
        for kind in ("udp", "ping"):
            if d[f"{kind}_sent"]:
                a = netclient.analyse(d[f"{kind}_sent"], d[f"{kind}_recv"], m["t0"], t_stop)
                res.update({f"{kind}_sent": a["sent"], f"{kind}_lost": a["lost"],
                            f"{kind}_gap_ms": a["gap_ms"]})
        with self.fdb.cv:
            lines = [(t, line.decode(errors="replace")) for t, line in self.fdb.lines]
        t_b = netclient.first_at(netclient.fdb_moves(lines, NET_MAC, self.ports), "b", m["t0"])
        # From the pause (the last heartbeat from A) and from the resume (the
        # first from B), harness clock, as the outage.
        if t_b is not None and src_hb:
            res["fdb_ms"] = 1000 * (t_b - src_hb[-1][0])
        if t_b is not None and dst_hb:
            res["fdb_after_resume_ms"] = 1000 * (t_b - dst_hb[0][0])
        res["fdb_final"] = self.port_now() or "none"
        for k in ("net-frames-forwarded", "net-frames-after-go", "net-frames-dropped"):
            res[k.replace("-", "_")] = report.get(k)        # ferry's; QEMU has none
        if not any(t > t_stop - 1.0 for _, t in d["udp_recv"]):
            res["net_error"] = "the guest no longer answers the client after the migration"
        elif res["fdb_final"] != "b":
            res["net_error"] = f"the switch sends the guest's frames to port {res['fdb_final']}, not host B"
        return res

    def teardown(self, h):
        for p in (self.client, self.monitor):
            if p:
                p.kill(grace=1.0)
        # Their veths go with the switch's namespace: the uplinks in A and B too.
        for ns in (self.ns_sw, self.ns_c):
            h.del_netns(ns)
        for k in ("a", "b"):
            for dev in (self.tap, self.br):
                sh("ip", "-n", self.hosts[k], "link", "del", dev, check=False)


# ---- storage: the disk follows the VM (issue 11) ----------------------------------
#
# storage-nbd-1g: one qemu-nbd export (a unix socket: the storage network is
# not the migration link, so its bytes are not counted) that the source and
# the destination both attach.  storage-copy-1g: each end has its own image
# and the disk is copied live beside RAM; QEMU as libvirt drives it (see
# Qemu._migrate_copy).  storage-copy-mixed-1g: the same with a disk of
# mixed content (write_mixed_image) and ferry --compress lz4.
# storage-incremental-1g: the same, the destination holding an older copy
# of the disk.

NBD_PORT = 10809                  # the destination QEMU's NBD server (QEMU's copy)
NBD_NODE = "d0"                   # QEMU's node of the guest's disk, and its NBD export's name
MIRROR_JOB, MIRROR_TARGET = "mirror-d0", "mirror-target"
QEMU_NBD = shutil.which("qemu-nbd") or "qemu-nbd"
RANGE = 64 * 1024                 # incremental: the unit the old copy differs in (ferry's digest range)
DIFFERS = re.compile(r"disk 0: (\d+) of (\d+) ranges of 64 KiB differ")


def parse_size(text):
    """'10M', '2G', '4096' -> bytes (binary units), None if malformed."""
    m = re.fullmatch(r"(\d+)([KMG]?)", text.strip().upper())
    if not m:
        return None
    return int(m.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30}[m.group(2)]


def write_random_image(path, mib):
    """mib MiB of random data, every block allocated and none alike, synced."""
    with open(path, "wb") as f:
        for _ in range(mib):
            f.write(os.urandom(MiB))
        f.flush()
        os.fsync(f.fileno())


# storage-copy-mixed-1g: what each 64 KiB range of the source's image
# holds, in tenths, after the probe's fill=mixed for RAM pages (40 % zero,
# 30 % text, 30 % random), its zeros split between holes and allocated
# zeros: (kind, tenths).
MIXED_KINDS = (("hole", 2), ("zero", 2), ("text", 3), ("random", 3))
TEXT_WORDS = ("the of and to in is that for it as was with be by on not he this are or his from at "
              "which but have an had they you were their one all we can her has there been if more "
              "when will would who so no memory page migration virtual machine guest host dirty copy "
              "state network time system data between through").split()   # guest/fill.c's 64


def mixed_text(n, rng):
    """n bytes of English-like text as the probe's fill=text writes it:
    its 64 words, a capital after a full stop, lines of about 72."""
    out, have, col, cap = [], 0, 0, True
    while have < n:
        r = rng.getrandbits(16)
        w = TEXT_WORDS[r & 63]
        if cap:
            w = w.capitalize()
        cap = (r >> 8) % 12 == 0
        w += ("." if cap else "") + ("\n" if col > 72 else " ")
        col = 0 if col > 72 else col + len(w)
        out.append(w)
        have += len(w)
    return "".join(out).encode()[:n]


def mixed_kinds(ranges, seed=7):
    """The kind of each 64 KiB range: MIXED_KINDS' shares exactly, in an
    order shuffled by seed (so no kind lines up with a stride)."""
    kinds = []
    for kind, tenths in MIXED_KINDS:
        kinds += [kind] * (ranges * tenths // 10)
    kinds += ["random"] * (ranges - len(kinds))
    random.Random(seed).shuffle(kinds)
    return kinds


def write_mixed_image(path, mib, seed=7):
    """mib MiB as a disk holds it, per 64 KiB range (mixed_kinds): a hole,
    allocated zeros, text (a 64 KiB slice of an 8 MiB text, at a random
    offset) or random data; synced.  Returns {kind: ranges}."""
    rng = random.Random(seed)
    pool = mixed_text(8 * MiB + RANGE, rng)
    zeros = bytes(RANGE)
    count = {k: 0 for k, _ in MIXED_KINDS}
    with open(path, "wb") as f:
        f.truncate(mib * MiB)
        for k, kind in enumerate(mixed_kinds(mib * MiB // RANGE, seed)):
            count[kind] += 1
            if kind == "hole":
                continue
            f.seek(k * RANGE)
            if kind == "zero":
                f.write(zeros)
            elif kind == "text":
                at = rng.randrange(8 * MiB)
                f.write(pool[at:at + RANGE])
            else:
                f.write(os.urandom(RANGE))
        f.flush()
        os.fsync(f.fileno())
    return count


def make_older_copy(src, dst, pct=STORAGE_DIFFER_PCT, seed=1):
    """dst: a copy of src in which every (100 / pct)-th 64 KiB range holds
    other random data: what the destination kept from an earlier stay of
    the VM, pct % of it since rewritten.  Returns the ranges changed."""
    shutil.copyfile(src, dst)
    size = os.path.getsize(src)
    step = max(1, round(100 / pct))
    changed = 0
    with open(dst, "r+b") as f:
        for k in range(seed % step, size // RANGE, step):
            f.seek(k * RANGE)
            f.write(os.urandom(RANGE))
            changed += 1
        f.flush()
        os.fsync(f.fileno())
    return changed


def sync_file(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def images_differ(a, b, start):
    """The first offset at or past start where the two images differ, or None."""
    with open(a, "rb") as fa, open(b, "rb") as fb:
        fa.seek(start)
        fb.seek(start)
        off = start
        while True:
            x, y = fa.read(4 * MiB), fb.read(4 * MiB)
            if x != y:
                for i in range(min(len(x), len(y))):
                    if x[i] != y[i]:
                        return off + i
                return off + min(len(x), len(y))
            if not x:
                return None
            off += len(x)


def parse_ss_bytes(text):
    """Sum of bytes_sent + bytes_received over the sockets `ss -tin` shows."""
    total = 0
    for key in ("bytes_sent", "bytes_received"):
        total += sum(int(v) for v in re.findall(rf"\b{key}:(\d+)", text))
    return total


def nbd_tcp_bytes(ns):
    """TCP payload both ways on the source's connections to the NBD port
    (QEMU's mirror), from the kernel's tcp_info; None when there is none."""
    out = sh("ip", "netns", "exec", ns, "ss", "-tinH", "state", "established",
             f"( dport = :{NBD_PORT} )", check=False)
    return parse_ss_bytes(out) if out.strip() else None


def storage_post_s():
    """After the switchover, long enough for the destination's guest to
    sweep its whole working set once (reading back every block)."""
    return STORAGE_WSS_BLOCKS * 4096 / parse_size(STORAGE_RATE) + 1.5


class StorageEnv:
    """What a storage scenario's runs share, and what each run gets afresh.
    nbd: a sparse image of the disk's size behind a qemu-nbd started for
    each run (-e 4 clients, --persistent) on a unix socket.  copy and
    incremental: the source's image, random data in every block (with
    disk_fill "mixed", write_mixed_image's content), written and synced
    once per scenario (so a full copy has all of it to move);
    for each run the destination gets its own image: empty (sparse) for
    copy, for incremental a copy of the source's image as it is before the
    run with 5 % of its 64 KiB ranges rewritten (make_older_copy), synced."""

    def __init__(self, h, sc):
        self.sc, self.dir, self.nbd, self.changed = sc, h.tmp, None, None
        self.src = os.path.join(h.tmp, "storage-src.img")
        self.dst = os.path.join(h.tmp, "storage-dst.img")
        self.sock = os.path.join(h.tmp, "nbd.sock")
        t = time.monotonic()
        if sc.storage == "nbd":
            with open(self.src, "wb") as f:
                f.truncate(STORAGE_DISK_MIB * MiB)
        elif sc.disk_fill == "mixed":
            write_mixed_image(self.src, STORAGE_DISK_MIB)
        else:
            write_random_image(self.src, STORAGE_DISK_MIB)
        log(f"  {sc.name}: {STORAGE_DISK_MIB} MiB image ready in {time.monotonic() - t:.1f} s")

    def nbd_uri(self):
        return f"nbd+unix:///?socket={self.sock}"

    def before_run(self, h, run):
        sc = self.sc
        run.storage = self
        if sc.storage == "nbd":
            if os.path.exists(self.sock):
                os.unlink(self.sock)
            self.nbd = Proc(h, "qemu-nbd", [QEMU_NBD, "-f", "raw", "-k", self.sock, "-e", "4",
                                            "--persistent", self.src],
                            logpath=os.path.join(h.logdir, f"{run.id}-qemu-nbd.err"))
            deadline = time.monotonic() + 10
            while not os.path.exists(self.sock):
                if time.monotonic() > deadline or not self.nbd.alive():
                    raise BenchError("qemu-nbd did not listen")
                time.sleep(0.05)
            return
        if os.path.exists(self.dst):
            os.unlink(self.dst)
        if sc.storage == "incremental":
            self.changed = make_older_copy(self.src, self.dst)
        else:
            with open(self.dst, "wb") as f:
                f.truncate(STORAGE_DISK_MIB * MiB)
        sync_file(self.src)       # the last run's writes go to disk now, not during this one

    def check(self, rec):
        """After a completed copy, with both VMMs gone: beyond the guest's
        working set (which the destination's guest went on rewriting) the
        destination's image must equal the source's."""
        if self.sc.storage == "nbd" or rec.get("status") != "completed":
            return
        if self.changed is not None:
            rec["ranges_changed"] = self.changed
        off = images_differ(self.src, self.dst, STORAGE_WSS_BLOCKS * 4096)
        rec["image_check"] = "equal" if off is None else f"differ at {off}"
        if off is not None:
            raise BenchError(f"the destination's image differs from the source's at byte {off}")

    def after_run(self, h, run):
        if self.nbd:
            self.nbd.kill(grace=1.0)
            self.nbd = None

    def teardown(self, h):
        for p in (self.src, self.dst):
            if os.path.exists(p):
                os.unlink(p)


# ---- device scenarios -------------------------------------------------------------
#
# No migration: the probe boots on each VMM with a virtio-blk disk or a
# virtio-net NIC (QEMU: the microvm machine, whose virtio-mmio layout ferry
# copies) and measures the device.  Disk rates are the guest's own (TSC,
# "probe: disk <mode> ... ops ... ms"); the UDP echo rate is the client's
# (netbench udpecho in the tap's namespace).

DEVICE_SECONDS = 5                # each disk measurement; each net phase
DISK_IMAGE_MIB = 256
NET_HOST_IP, NET_GUEST_IP = "10.78.0.1", "10.78.0.2"
NET_MAC = "52:54:00:fe:78:02"     # the same on both VMMs: the neighbour entry stays right
NET_WINDOWS = (1, 32)             # echoes outstanding: round-trip bound, then pipelined
NET_SIZE = 64                     # UDP payload bytes
NO_NET = "n/a (ferry has no --net)"


class DeviceScenario:
    """device: "disk" or "net".  metrics: (key, label, digits, better)."""

    def __init__(self, name, device, cmdline, about, mem_mib=256):
        self.name, self.device, self.cmdline, self.about = name, device, cmdline, about
        self.mem_mib = mem_mib

    @property
    def metrics(self):
        return DISK_METRICS if self.device == "disk" else NET_METRICS


DISK_METRICS = [("iops", "requests/s (IOPS)", 0, "higher"),
                ("mibs", "MiB/s", 1, "higher"),
                ("flushes_s", "flushes/s", 0, "higher"),
                ("cpu_s", "VMM CPU while measuring (s)", 2, "lower"),
                ("cpu_us_per_op", "VMM CPU per request (us)", 1, "lower")]
NET_METRICS = [(f"pps_w{w}", f"UDP echoes/s, {w} outstanding", 0, "higher") for w in NET_WINDOWS] + \
              [(f"rtt_w{w}_us", f"mean round trip, {w} outstanding (us)", 1, "lower") for w in NET_WINDOWS] + \
              [(f"lost_w{NET_WINDOWS[-1]}", f"echoes lost, {NET_WINDOWS[-1]} outstanding", 0, "lower"),
               ("cpu_s", "VMM CPU while measuring (s)", 2, "lower"),
               ("cpu_us_per_op", "VMM CPU per echo (us)", 1, "lower")]
DEVICE_KEYS = sorted({k for k, *_ in DISK_METRICS + NET_METRICS} | {"ops", "ms", "req_bytes", "flushes"})

_DISK = f"workload=idle,disk disk_blocks={DISK_IMAGE_MIB * 256} period=1s seconds={DEVICE_SECONDS}"
DEVICE_SCENARIOS = [
    DeviceScenario("disk-randwrite", "disk", f"{_DISK} disk_mode=randwrite disk_flush=32",
                   f"4 KiB writes at random blocks of {DISK_IMAGE_MIB} MiB, 32 in flight; every 32 "
                   "writes a FLUSH after the writes in flight completed"),
    DeviceScenario("disk-seqwrite", "disk", f"{_DISK} disk_mode=seqwrite",
                   f"1 MiB writes (one descriptor each) in order round {DISK_IMAGE_MIB} MiB, 8 in flight, no flush"),
    DeviceScenario("disk-seqread", "disk", f"{_DISK} disk_mode=seqread",
                   f"1 MiB reads in order round {DISK_IMAGE_MIB} MiB, 8 in flight (the image is in the host's page cache)"),
    DeviceScenario("net-udp-echo", "net",
                   f"workload=idle,net ip={NET_GUEST_IP} udp_port=7 period=1s seconds=120",
                   f"{NET_SIZE}-byte UDP datagrams echoed by the guest, from a client on the host "
                   f"end of the tap, {DEVICE_SECONDS} s with " +
                   " then ".join(f"{w} outstanding" for w in NET_WINDOWS)),
]


def ferry_run_help():
    try:
        r = subprocess.run([FERRY, "run", "--help"], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=10)
    except OSError:
        return ""
    return r.stdout + r.stderr


def device_support(sc, vmm_names):
    """{vmm: None if it can run sc, else why not}."""
    out = {}
    help_text = ferry_run_help() if "ferry" in vmm_names else ""
    for v in vmm_names:
        if v == "qemu":
            out[v] = None if Qemu.available() else "n/a (QEMU not installed)"
        elif not os.access(FERRY, os.X_OK):
            out[v] = "n/a (ferry not built)"
        elif sc.device == "disk":
            out[v] = None if re.search(r"--disk\b", help_text) else "n/a (ferry has no --disk)"
        else:
            out[v] = None if re.search(r"--net\b", help_text) else NO_NET
    return out


def device_argv(vmm, sc, img, tap):
    """The VMM's command line for a device scenario (1 vCPU, serial on stdout)."""
    if vmm == "qemu":
        argv = [QEMU, "-M", "microvm,acpi=off", "-enable-kvm", "-cpu", "host,-arch-capabilities",
                "-m", str(sc.mem_mib), "-smp", "1", "-nodefaults", "-no-user-config",
                "-display", "none", "-serial", "stdio", "-no-reboot",
                "-device", "isa-debug-exit,iobase=0xf4,iosize=4",
                "-global", "virtio-mmio.force-legacy=false"]
        if sc.device == "disk":     # QEMU's defaults: cache=writeback, aio=threads
            argv += ["-drive", f"if=none,id=d0,file={img},format=raw",
                     "-device", "virtio-blk-device,drive=d0"]
        else:
            argv += ["-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no",
                     "-device", f"virtio-net-device,netdev=n0,mac={NET_MAC}"]
        return argv + ["-kernel", PROBE, "-append", sc.cmdline]
    argv = [FERRY, "run", "--kernel", PROBE, "--memory", f"{sc.mem_mib}M", "--vcpus", "1",
            "--cmdline", sc.cmdline, "--serial", "stdio"]
    if sc.device == "disk":         # ferry's default: cache=writeback, io_uring
        return argv + ["--disk", f"path={img}"]
    return argv + ["--net", f"tap={tap},mac={NET_MAC}"]


class DeviceEnv:
    """What a device scenario's runs share: the disk image (written in full
    and synced before the scenario, so every run overwrites allocated
    blocks), or a namespace with a tap that both VMMs open in turn."""

    def __init__(self, h, sc):
        self.img = self.tap = self.ns = None
        if sc.device == "disk":
            self.img = os.path.join(h.tmp, "disk.img")
            chunk = os.urandom(MiB)
            with open(self.img, "wb") as f:
                for _ in range(DISK_IMAGE_MIB):
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
        else:
            self.ns, self.tap = f"fb{h.tag}-net", f"fb{h.tag}t"
            h.add_netns(self.ns)
            sh("ip", "-n", self.ns, "link", "set", "lo", "up")
            sh("ip", "netns", "exec", self.ns, "ip", "tuntap", "add", "dev", self.tap, "mode", "tap")
            sh("ip", "-n", self.ns, "addr", "add", f"{NET_HOST_IP}/24", "dev", self.tap)
            sh("ip", "-n", self.ns, "link", "set", self.tap, "up")

    def before_run(self):
        """The last run's dirty pages go to disk now, not during the next run."""
        if self.img:
            fd = os.open(self.img, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def teardown(self, h):
        if self.ns:
            h.del_netns(self.ns)        # takes the tap with it
        if self.img and os.path.exists(self.img):
            os.unlink(self.img)


DISK_RATE = re.compile(rb"^probe: disk (\w+) (\d+) ops of (\d+) bytes in (\d+) ms: "
                       rb"\d+ IOPS, [\d.]+ MiB/s, (\d+) flushes")


def qemu_settled_info(q):
    """query-migrate once QEMU has filled it in: it emits the terminal event
    before total-time and downtime are there, so poll a little."""
    info = {}
    for _ in range(200):
        info = q.cmd("query-migrate")
        if info.get("status") != "completed" or info.get("total-time"):
            break
        time.sleep(0.01)
    return info


def udp_echo(env, window):
    r = subprocess.run(["ip", "netns", "exec", env.ns, NETBENCH, "udpecho", NET_GUEST_IP, "7",
                        str(DEVICE_SECONDS), str(window), str(NET_SIZE)],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=DEVICE_SECONDS + 30)
    try:
        res = json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise BenchError(f"udpecho: {r.stderr.strip() or r.stdout.strip()}") from None
    if r.returncode != 0:
        raise BenchError(f"udpecho window {window}: {res.get('error') or r.stderr.strip()}")
    return res


def run_device(h, sc, vmm, rep, env):
    """Boot, measure, stop: one record."""
    rid = f"{sc.name}-{vmm}-{rep}"
    rec = {"scenario": sc.name, "mode": "device", "vmm": vmm, "rep": rep, "link": sc.device,
           "mem_mib": sc.mem_mib, "cmdline": sc.cmdline, "status": "error", "error": ""}
    proc = None
    try:
        env.before_run()
        proc = Proc(h, vmm, device_argv(vmm, sc, env.img, env.tap), netns=env.ns, lines=True,
                    logpath=os.path.join(h.logdir, f"{rid}.err"))
        ser = Serial(proc.popen.stdout, os.path.join(h.logdir, f"{rid}.serial"))
        t_boot = time.monotonic()
        if not ser.wait_for(rb"^probe: running", BOOT_TIMEOUT, alive=proc.alive):
            raise BenchError(f"{vmm} did not boot (exit {proc.status})")
        rec["boot_s"] = time.monotonic() - t_boot
        cpu0 = proc.cpu_seconds()
        if sc.device == "disk":
            # The guest ends itself at seconds= (exit value 0).
            if not proc.wait(DEVICE_SECONDS + 60):
                raise BenchError(f"the guest did not exit within {DEVICE_SECONDS + 60} s")
            rec["cpu_s"] = proc.cpu_seconds() - cpu0
            ok_exit = 1 if vmm == "qemu" else 0     # QEMU exits with (value << 1) | 1
            rec["src_exit"] = proc.status
            ser.thread.join(5)
            m = ser.wait_for(DISK_RATE, 1)
            if not m:
                raise BenchError(f"no rate line (exit {proc.status})")
            g = DISK_RATE.match(m[1])
            ops, req, ms, flushes = (int(g.group(i)) for i in (2, 3, 4, 5))
            rec.update(ops=ops, req_bytes=req, ms=ms, flushes=flushes)
            if ms <= 0 or ops <= 0:
                raise BenchError(f"nothing done: {m[1].decode(errors='replace')}")
            rec["iops"] = ops * 1000 / ms
            rec["mibs"] = ops * req * 1000 / ms / MiB
            rec["flushes_s"] = flushes * 1000 / ms
            rec["cpu_us_per_op"] = 1e6 * rec["cpu_s"] / ops
            if proc.status != ok_exit:
                raise BenchError(f"{vmm} exit status {proc.status}, want {ok_exit}")
        else:
            if not ser.wait_for(rb"^probe: net 0x", 5, alive=proc.alive):
                raise BenchError("the guest has no NIC")
            echoes = 0
            for w in NET_WINDOWS:
                res = udp_echo(env, w)
                rec[f"pps_w{w}"] = res["rate"]
                rec[f"rtt_w{w}_us"] = res["rtt_us"]
                rec[f"lost_w{w}"] = res["lost"]
                echoes += res["received"]
            rec["cpu_s"] = proc.cpu_seconds() - cpu0
            rec["cpu_us_per_op"] = 1e6 * rec["cpu_s"] / echoes if echoes else None
            if not proc.alive():
                raise BenchError(f"{vmm} ended during the measurement (exit {proc.status})")
        bad = ser.grep(rb"CORRUPT|exception|I/O error")
        rec["guest_ok"] = not bad
        rec["status"] = "completed" if not bad else "error"
        if bad:
            rec["error"] = bad[0]
    except (BenchError, subprocess.TimeoutExpired, OSError) as e:
        rec["error"] = str(e)
        log(f"  {rid}: {e}")
    finally:
        if proc:
            proc.kill()
    return rec


def run_devices(h, scenarios, vmm_names, repeat, records):
    """Every device scenario, VMMs alternating first; returns {name: support}."""
    support = {}
    for sc in scenarios:
        sup = support[sc.name] = device_support(sc, vmm_names)
        able = [v for v in vmm_names if sup[v] is None]
        for v in vmm_names:
            if sup[v]:
                log(f"  {sc.name} {v}: {sup[v]}")
        if not able:
            continue
        log(f"{sc.name}: {sc.about}")
        env = DeviceEnv(h, sc)
        try:
            for rep in range(repeat):
                for vmm in (able if rep % 2 == 0 else list(reversed(able))):
                    rec = run_device(h, sc, vmm, rep, env)
                    records.append(rec)
                    what = ", ".join(f"{lab} {fmt(rec.get(k), d)}" for k, lab, d, _ in sc.metrics[:3])
                    log(f"  {sc.name} {vmm} #{rep}: {rec['status']}: {what}"
                        + (f" [{rec['error']}]" if rec.get("error") else ""))
        finally:
            env.teardown(h)
    return support


def summarize_devices(records, scenarios, support):
    out = {}
    for sc in scenarios:
        mine = [r for r in records if r["scenario"] == sc.name]
        s = out[sc.name] = {"_support": support.get(sc.name, {}), "_runs": {}}
        for v in ("ferry", "qemu"):
            rs = [r for r in mine if r["vmm"] == v]
            s["_runs"][v] = (sum(1 for r in rs if r.get("status") == "completed"), len(rs))
        for key, *_ in sc.metrics:
            s[key] = {v: median(r.get(key) for r in mine if r["vmm"] == v
                                and r.get("status") == "completed") for v in ("ferry", "qemu")}
    return out


def report_devices(dsum, scenarios, lines):
    def p(s=""):
        lines.append(s)
        print(s)

    for sc in scenarios:
        s = dsum[sc.name]
        why = {v: s["_support"].get(v, "not selected (--vmm)") for v in ("ferry", "qemu")}
        fw = max(10, len(why["ferry"] or ""))
        p()
        p(f"== {sc.name} (device): {sc.mem_mib} MiB, 1 vCPU, \"{sc.cmdline}\"")
        p(f"   {sc.about}")
        if sc.device == "disk":
            p(f"   raw image of {DISK_IMAGE_MIB} MiB on the host's file system, written and synced "
              "before the scenario, synced before each run; the same file for both VMMs")
            p("   QEMU -M microvm,acpi=off, virtio-blk-device (virtio-mmio 1.x), -drive format=raw "
              "(its defaults: cache=writeback, aio=threads); ferry --disk path=IMG (cache=writeback, io_uring)")
        else:
            p(f"   tap in a namespace, host end {NET_HOST_IP}, guest {NET_GUEST_IP}, the same tap for both VMMs; "
              "QEMU -M microvm,acpi=off, virtio-net-device on -netdev tap (no vhost); ferry --net tap=")

        p(runs_ok_line(s, why))
        p(f"   {'metric':<40} {'ferry':>{fw}} {'qemu':>10} {'ferry/qemu':>11}")
        for key, label, digits, _ in sc.metrics:
            f, q = s[key]["ferry"], s[key]["qemu"]
            fcell = why["ferry"] if why["ferry"] else fmt(f, digits)
            ratio = f / q if f is not None and q and not why["ferry"] else None
            p(f"   {label:<40} {fcell:>{fw}} {fmt(q, digits):>10} {fmt(ratio, 2):>11}")


def write_device_summary_csv(dsum, scenarios, path):
    with open(path, "a", newline="") as f:
        w = csv.writer(f)
        for sc in scenarios:
            s = dsum[sc.name]
            why = s["_support"].get("ferry", "not selected (--vmm)")
            ok, n = s["_runs"]["ferry"]
            qok, qn = s["_runs"]["qemu"]
            w.writerow([sc.name, "device", "runs_ok", why or f"{ok}/{n}", f"{qok}/{qn}", ""])
            for key, *_ in sc.metrics:
                fv, qv = s[key]["ferry"], s[key]["qemu"]
                w.writerow([sc.name, "device", key,
                            why or ("" if fv is None else f"{fv:.3f}"),
                            "" if qv is None else f"{qv:.3f}",
                            f"{fv / qv:.3f}" if not why and fv is not None and qv else ""])


# ---- harness --------------------------------------------------------------------


class Harness:
    def __init__(self, args):
        self.args = args
        self.tag = str(os.environ.get("FERRYBENCH_TAG") or os.getpid())
        self.procs, self.netns = [], []
        self.storage = None         # the running storage scenario's StorageEnv
        self.tmp = tempfile.mkdtemp(prefix="fb.", dir="/tmp")
        self.logdir = os.path.join(OUT, "logs")
        os.makedirs(self.logdir, exist_ok=True)

    def add_netns(self, ns):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)  # stale, ours (same tag)
        sh("ip", "netns", "add", ns)
        self.netns.append(ns)

    def del_netns(self, ns):
        if ns not in self.netns:
            return
        for pid in sh("ip", "netns", "pids", ns, check=False).split():
            # Only pids we started may be in our namespaces; kill them anyway.
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self.netns.remove(ns)

    def cleanup(self):
        for p in self.procs:
            try:
                p.kill(grace=1.0)
            except Exception:      # noqa: BLE001
                pass
        for ns in list(self.netns):
            self.del_netns(ns)
        shutil.rmtree(self.tmp, ignore_errors=True)


def runs_ok_line(s, why):
    """The summary's "runs ok" line: completed/run for each VMM, or why[v] where it is set."""
    def cell(v):
        if why.get(v):
            return why[v]
        ok, n = s["_runs"][v]
        return f"{ok}/{n}"
    return f"   runs ok: ferry {cell('ferry')}, qemu {cell('qemu')} (medians over completed runs)"


def fmt(v, digits=1):
    if v is None or (isinstance(v, float) and v != v):
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


METRICS = [  # key, label, digits, better ("lower"/"higher"/None), post-copy modes only
    ("total_ms", "total time, VMM (ms)", 0, "lower", False),
    ("wall_ms", "total time, harness (ms)", 0, "lower", False),
    ("downtime_ms", "downtime, VMM (ms)", 1, "lower", False),
    ("outage_ms", "guest outage, heartbeats (ms)", 1, "lower", False),
    ("max_gap_ms", "largest hb gap in migration (ms)", 1, "lower", False),
    ("precopy_phase_ms", "live phase before post-copy (ms)", 0, None, True),
    ("postcopy_ms", "post-copy phase (ms)", 0, "lower", True),
    ("blocktime_ms", "vCPU blocked on remote pages (ms)", 0, "lower", True),
    ("postcopy_requests", "post-copy page requests", 0, None, True),
    ("wire_mib", "bytes on the wire (MiB)", 1, "lower", False),
    ("vmm_mib", "bytes, VMM-reported (MiB)", 1, "lower", False),
    ("throughput_mibs", "throughput on the wire (MiB/s)", 0, "higher", False),
    ("raw_mibs", "raw TCP copy, same bytes (MiB/s)", 0, None, False),
    ("link_pct", "throughput / raw copy (%)", 1, "higher", False),
    ("raw_mem_mibs", "raw copy into fresh RAM (MiB/s)", 0, None, False),
    ("src_cpu_s", "source CPU during migration (s)", 2, "lower", False),
    ("src_cpu_novcpu_s", "  the same less its vCPU threads (s)", 2, "lower", False),
    ("dst_cpu_s", "dest CPU during migration (s)", 2, "lower", False),
    ("iterations", "iterations / dirty syncs", 0, None, False),
    ("pages_resent", "pages re-sent (ferry only)", 0, "lower", False),
]
# net-client only, first in its table: what the client saw from the
# migration's start to NC_POST_S after its end, and the switch.
NET_CLIENT_METRICS = [
    ("udp_lost", "UDP echoes lost (client)", 0, "lower", False),
    ("udp_gap_ms", "longest gap with no UDP echo (ms)", 1, "lower", False),
    ("ping_lost", "pings lost (client)", 0, "lower", False),
    ("ping_gap_ms", "longest gap with no ping reply (ms)", 1, "lower", False),
    ("fdb_ms", "switch FDB at host B, from pause (ms)", 1, "lower", False),
    ("udp_sent", "UDP datagrams sent in that time", 0, None, False),
    ("net_frames_forwarded", "frames forwarded (ferry only)", 0, None, False),
]
# Storage scenarios only, first in their table.
STORAGE_METRICS = [
    ("disk_mib", "disk bytes, VMM-reported (MiB)", 1, "lower", False),
    ("mirror_ready_ms", "QEMU mirror ready, before RAM (ms)", 0, None, False),
    ("switchover_pause_ms", "QEMU paused for mirror's end (ms)", 1, None, False),
    ("ranges_differ", "ranges differing, 64 KiB (ferry)", 0, None, False),
]
# What a pre-copy that did not converge still tells (medians over those runs).
NOT_CONVERGED_METRICS = [("wire_mib", "sent on the wire (MiB)", 0),
                         ("throughput_mibs", "at (MiB/s)", 0),
                         ("iterations", "iterations", 0),
                         ("src_cpu_s", "source CPU (s)", 2)]


def case_metrics(case):
    net = NET_CLIENT_METRICS if case.sc.net_client else []
    disk = STORAGE_METRICS if case.sc.storage else []
    if case.sc.storage != "incremental":
        disk = [m for m in disk if m[0] != "ranges_differ"]
    if case.sc.storage == "nbd":
        disk = []           # nothing copied: the disk stays where it is
    return [m for m in net + disk + METRICS if case.mode != "precopy" or not m[4]]


def median(values):
    vals = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v]
    return statistics.median(vals) if vals else None


def summarize(records, cases, vmms, supported):
    """{case label: {metric: {vmm: median}, "_runs": {vmm: (ok, n)} ...}}.
    Medians over completed runs; a VMM that cannot run the case's mode has
    supported False (its cells say so)."""
    out = {}
    for case in cases:
        s = out[case.label] = {"_supported": {v: case.mode in supported.get(v, ()) for v in vmms},
                               "_runs": {}, "_converged": {}, "_notconv": {}}
        mine = [r for r in records if r["scenario"] == case.sc.name and r.get("mode") == case.mode]
        for key, *_ in METRICS + NET_CLIENT_METRICS + STORAGE_METRICS:
            s[key] = {v: median(r.get(key) for r in mine if r["vmm"] == v
                                and r.get("status") == "completed") for v in vmms}
        for v in vmms:
            rs = [r for r in mine if r["vmm"] == v]
            s["_runs"][v] = (sum(1 for r in rs if r.get("guest_ok") and
                                 r.get("status") in ("completed", "not-converged")), len(rs))
            s["_converged"][v] = (sum(1 for r in rs if r.get("converged") == "yes"), len(rs))
            nc = [r for r in rs if r.get("status") == "not-converged"]
            s["_notconv"][v] = {"n": len(nc), **{k: median(r.get(k) for r in nc)
                                                   for k, *_ in NOT_CONVERGED_METRICS}}
    return out


def check(op, value, target):
    if value is None:
        return "n/a"
    ok = value >= target if op == ">=" else value <= target
    return "PASS" if ok else "FAIL"


def report_order(summary, cases, p):
    """Ordered propagation: pages re-sent by ferry in rewrite order against
    address order on the same guest, in the same run (issue 13's target:
    <= 0.5x)."""
    labels = {c.label for c in cases}
    for addr, rew in ORDER_PAIRS:
        a, r = f"{addr}/precopy", f"{rew}/precopy"
        if a not in labels or r not in labels:
            continue
        ra = summary[a]["pages_resent"]["ferry"]
        rr = summary[r]["pages_resent"]["ferry"]
        ratio = rr / ra if ra and rr is not None else None
        p()
        p(f"== ordered propagation: pages re-sent, {rew} against {addr} (medians, this run)")
        p(f"   address {fmt(ra, 0)}, rewrite {fmt(rr, 0)}, ratio {fmt(ratio, 2)}   "
          f"[{check('<=', ratio, 0.5)}: <= 0.5x address order]")
        for key in ("total_ms", "downtime_ms", "wire_mib", "iterations"):
            lab = next(m[1] for m in METRICS if m[0] == key)
            p(f"   {lab}: address {fmt(summary[a][key]['ferry'])}, "
              f"rewrite {fmt(summary[r][key]['ferry'])}")


def report_tls(summary, cases, p):
    """What TLS costs each VMM: its TLS scenario against its plain twin of
    the same run (time, throughput, source CPU), and ferry over TLS
    against QEMU over TLS (issue 16: <= 1.1x plain on loopback, <= QEMU+TLS)."""
    labels = {c.label for c in cases}
    for plain, tls, goal in TLS_PAIRS:
        a, t = f"{plain}/precopy", f"{tls}/precopy"
        if a not in labels or t not in labels:
            continue
        p()
        p(f"== TLS cost: {tls} against {plain} (medians, this run)")
        p(f"   {'TLS / plain, each VMM':<48} {'ferry':>10} {'qemu':>10}")
        for key in ("total_ms", "throughput_mibs", "src_cpu_s", "dst_cpu_s"):
            lab, digits = next((m[1], m[2]) for m in METRICS if m[0] == key)
            cells = []
            for v in ("ferry", "qemu"):
                x, y = summary[t][key][v], summary[a][key][v]
                cells.append(fmt(x / y if x is not None and y else None, 2))
            p(f"   {lab:<48} {cells[0]:>10} {cells[1]:>10}")
        ft, fp = summary[t]["total_ms"]["ferry"], summary[a]["total_ms"]["ferry"]
        qt = summary[t]["total_ms"]["qemu"]
        r_plain = ft / fp if ft is not None and fp else None
        r_qemu = ft / qt if ft is not None and qt else None
        if goal:
            p(f"   [{check('<=', r_plain, goal)}: ferry over TLS <= {goal:g}x ferry plain in time "
              f"({fmt(r_plain, 2)})]")
        p(f"   [{check('<=', r_qemu, 1.0)}: ferry over TLS <= QEMU over TLS in time "
          f"({fmt(r_qemu, 2)})]")


def report_net_client(summary, case, p):
    """Issue 12's goals for what the client sees (information only): no
    ping lost by ferry in pre-copy, UDP losses and the longest gap at most
    0.2x QEMU's in the same run."""
    s = summary[case.label]

    def at_most(key, share):
        f, q = s[key]["ferry"], s[key]["qemu"]
        if f is None or q is None:
            return "n/a", "-"
        if q == 0:
            return ("PASS" if f == 0 else "FAIL"), "-"
        return check("<=", f / q, share), fmt(f / q, 2)
    p(f"   issue 12 goals (ferry; information only; UDP {NC_UDP_RATE:g}/s, pings {NC_PING_RATE:g}/s):")
    if case.mode == "precopy" and NC_PING_RATE:
        v = s["ping_lost"]["ferry"]
        p(f"     {check('<=', v, 0):<5} no ping lost in pre-copy   (ferry {fmt(v, 0)}, "
          f"qemu {fmt(s['ping_lost']['qemu'], 0)})")
    for key, text in (("udp_lost", "UDP echoes lost"), ("udp_gap_ms", "longest gap with no UDP echo")):
        verdict, ratio = at_most(key, 0.2)
        p(f"     {verdict:<5} {text} <= 0.2x QEMU's   (ferry/qemu {ratio})")


def report_storage(summary, case, p):
    """Issue 11's goals (information only): with a local disk copied live,
    total time <= 0.8x QEMU's and outage <= 0.2x QEMU's; with an older copy
    at the destination, disk bytes <= 0.1x QEMU's full mirror."""
    s, sc = summary[case.label], case.sc

    def ratio(key):
        f, q = s[key]["ferry"], s[key]["qemu"]
        return f / q if f is not None and q else None
    if sc.storage == "nbd":
        p(f"   issue 11, shared storage (information only): downtime ferry/qemu "
          f"{fmt(ratio('downtime_ms'), 2)}, guest outage ferry/qemu {fmt(ratio('outage_ms'), 2)}")
        return
    p("   issue 11 goals (ferry; information only):")
    if sc.storage == "copy":
        for key, share, text in (("wall_ms", 0.8, "total time (harness) <= 0.8x QEMU's"),
                                 ("outage_ms", 0.2, "guest outage <= 0.2x QEMU's")):
            r = ratio(key)
            p(f"     {check('<=', r, share):<5} {text}   (ferry/qemu {fmt(r, 2)})")
    else:
        r = ratio("disk_mib")
        p(f"     {check('<=', r, 0.1):<5} disk bytes sent <= 0.1x QEMU's full mirror   "
          f"(ferry/qemu {fmt(r, 3)}; all bytes on the wire, RAM included: "
          f"{fmt(ratio('wire_mib'), 2)})")


def report(summary, cases, links, ferry_ok, ferry_why, lines):
    def p(s=""):
        lines.append(s)
        print(s)

    for case in cases:
        sc, s = case.sc, summary[case.label]
        sup = s["_supported"]
        fw = len(NOT_IMPLEMENTED) if not sup["ferry"] else 10
        p()
        extra = f", {sc.about}" if sc.about else ""
        bw = f", live phase capped at {sc.bandwidth / MiB:g} MiB/s" if sc.bandwidth else ""
        p(f"== {case.label}: {sc.mem_mib} MiB, \"{sc.cmdline}\", {links[sc.link].describe()}{bw}{extra}")
        if sc.storage == "nbd":
            p(f"   disk: one qemu-nbd export ({STORAGE_DISK_MIB} MiB raw image, unix socket: not on the "
              "link) that both ends attach (QEMU -blockdev driver=nbd, ferry --disk nbd=); guest "
              f"writes {STORAGE_RATE}/s of 4 KiB blocks over {STORAGE_WSS_BLOCKS * 4096 // MiB} MiB")
        elif sc.storage:
            fill = ("random data" if sc.disk_fill == "random" else
                    "mixed content (per 64 KiB range: " +
                    ", ".join(f"{t * 10}% {k}" for k, t in MIXED_KINDS) + ")")
            p(f"   disk: {STORAGE_DISK_MIB} MiB raw image of {fill} at the source, the destination's own "
              + ("empty image" if sc.storage == "copy" else
                 f"older copy ({STORAGE_DIFFER_PCT}% of its 64 KiB ranges rewritten)")
              + f"; guest writes {STORAGE_RATE}/s of 4 KiB blocks over "
              f"{STORAGE_WSS_BLOCKS * 4096 // MiB} MiB; QEMU: blockdev-mirror sync=full to the "
              "destination's NBD export, pause-before-switchover, block-job-cancel (libvirt's way); "
              f"ferry: migrate {' '.join(sc.ferry_args)}")
        if sc.net_client:
            p(f"   switch (learning bridge) to host A, host B (each a bridge to the guest's tap) and a "
              f"client sending UDP echoes {NC_UDP_RATE:g}/s and pings {NC_PING_RATE:g}/s from the "
              f"migration's start to {NC_POST_S:g} s after; QEMU -M microvm, virtio-net-device on "
              "the tap; ferry --net tap=; both with their default announce")
        if case.mode == "precopy":
            p(f"   pre-copy, bounded at {sc.precopy_timeout_s:g} s (then cancelled: not converged)")
        elif case.mode == "hybrid":
            if FERRY_HYBRID_AFTER_S:
                p(f"   pre-copy for {sc.postcopy_after_s:g} s, then post-copy (both VMMs)")
            else:
                p(f"   QEMU: pre-copy for {sc.postcopy_after_s:g} s, then post-copy; "
                  "ferry: --mode hybrid (switches itself once pre-copy is shown hopeless)")
        else:
            p("   post-copy from the start")

        p(runs_ok_line(s, {v: None if sup[v] else NOT_IMPLEMENTED for v in ("ferry", "qemu")}))
        p(f"   {'metric':<36} {'ferry':>{fw}} {'qemu':>10} {'ferry/qemu':>11}")

        def conv(v):
            if not sup[v]:
                return NOT_IMPLEMENTED
            k, n = s["_converged"][v]
            return f"{k}/{n}" if n else "-"
        label = "converged in bound (runs)" if case.mode == "precopy" else "completed (runs)"
        p(f"   {label:<36} {conv('ferry'):>{fw}} {conv('qemu'):>10} {'':>11}")
        completed = any(s["_converged"][v][0] for v in ("ferry", "qemu"))
        for key, label, digits, *_ in case_metrics(case) if completed else ():
            f, q = s[key]["ferry"], s[key]["qemu"]
            if not sup["ferry"]:
                p(f"   {label:<36} {NOT_IMPLEMENTED:>{fw}} {fmt(q, digits):>10} {'':>11}")
                continue
            ratio = f / q if f is not None and q else None
            p(f"   {label:<36} {fmt(f, digits):>{fw}} {fmt(q, digits):>10} {fmt(ratio, 2):>11}")
        for v in ("ferry", "qemu"):
            nc = s["_notconv"].get(v) or {}
            if nc.get("n"):
                what = ", ".join(f"{lab} {fmt(nc[k], d)}" for k, lab, d in NOT_CONVERGED_METRICS)
                p(f"   {v}: {nc['n']} run(s) not converged in {sc.precopy_timeout_s:g} s "
                  f"(medians until the cancel: {what})")
        if sc.net_client and completed:
            report_net_client(summary, case, p)
        if sc.storage and completed:
            report_storage(summary, case, p)
        if sc.primary and case.mode == "precopy":
            p("   issue 3 targets (ferry; information only):")
            for key, op, target, text in TARGETS:
                verdict = check(op, s[key]["ferry"], target) if ferry_ok else "n/a"
                qv = check(op, s[key]["qemu"], target)
                p(f"     {verdict:<5} {text}   (ferry {fmt(s[key]['ferry'])}, qemu {fmt(s[key]['qemu'])} [{qv}])")
    report_order(summary, cases, p)
    report_tls(summary, cases, p)
    codecbench.report(summary, cases, links, p)
    if not ferry_ok:
        p()
        p(f"ferry column empty: {ferry_why}")
    elif any(not summary[c.label]["_supported"]["ferry"] for c in cases):
        p()
        p(f"ferry {NOT_IMPLEMENTED}: post-copy and hybrid need `ferry migrate --mode` "
          "(see Ferry.migrate_argv in bench/ferrybench.py)")


def write_csv(records, path):
    keys = ["scenario", "mode", "vmm", "rep", "link", "mem_mib", "status", "converged",
            "guest_ok", "total_ms", "wall_ms", "setup_ms", "downtime_ms", "outage_ms",
            "max_gap_ms", "base_gap_ms", "seq_jump", "precopy_phase_ms", "postcopy_ms",
            "blocktime_ms", "vcpu_blocktime_ms", "postcopy_requests", "postcopy_bytes",
            "wire_bytes", "wire_fwd_bytes", "vmm_bytes", "throughput_mibs",
            "raw_mibs", "raw_s", "link_pct", "raw_mem_mibs", "src_cpu_s", "src_cpu_done_s", "src_vcpu_s", "src_cpu_novcpu_s", "dst_cpu_s", "iterations",
            "boot_s", "src_exit", "precopy_timeout_s", "downtime_phases", "tcp_ext_dst",
            "udp_sent", "udp_lost", "udp_gap_ms", "ping_sent", "ping_lost", "ping_gap_ms",
            "fdb_ms", "fdb_after_resume_ms", "fdb_final", "net_frames_forwarded",
            "net_frames_after_go", "net_frames_dropped", "disk_bytes", "nbd_tcp_bytes", "ram_total_ms",
            "mirror_ready_ms", "switchover_pause_ms", "ranges_changed", "ranges_differ",
            "dst_disk_gen", "image_check"] + \
        DEVICE_KEYS + savebench.KEYS + ["cmdline", "error"]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        for r in records:
            w.writerow({k: ("" if r.get(k) is None else
                            f"{r[k]:.3f}" if isinstance(r.get(k), float) else r.get(k))
                        for k in keys})


def write_summary_csv(summary, cases, path):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["scenario", "mode", "metric", "ferry", "qemu", "ferry_over_qemu"])
        for case in cases:
            s = summary[case.label]
            fsup = s["_supported"]["ferry"]
            k, n = s["_converged"]["qemu"]
            fk, fn = s["_converged"]["ferry"]
            w.writerow([case.sc.name, case.mode, "converged_runs",
                        f"{fk}/{fn}" if fsup else NOT_IMPLEMENTED, f"{k}/{n}", ""])
            for key, *_ in case_metrics(case):
                fv, qv = s[key]["ferry"], s[key]["qemu"]
                w.writerow([case.sc.name, case.mode, key,
                            NOT_IMPLEMENTED if not fsup else "" if fv is None else f"{fv:.3f}",
                            "" if qv is None else f"{qv:.3f}",
                            f"{fv / qv:.3f}" if fsup and fv is not None and qv else ""])
            if any(s["_notconv"][v]["n"] for v in ("ferry", "qemu")):
                # Medians over the runs that did not converge, until the cancel.
                for key, *_ in NOT_CONVERGED_METRICS:
                    fv, qv = (s["_notconv"][v][key] for v in ("ferry", "qemu"))
                    w.writerow([case.sc.name, case.mode, f"not_converged_{key}",
                                "" if fv is None else f"{fv:.3f}", "" if qv is None else f"{qv:.3f}",
                                f"{fv / qv:.3f}" if fv is not None and qv else ""])


def charts(summary, cases):
    """One PNG per scenario and mode: six panels, ferry next to QEMU."""
    gp = shutil.which("gnuplot")
    if not gp:
        log("gnuplot not installed: no charts (scripts/deps.sh installs gnuplot-nox)")
        return
    panels = [("total time (ms)", ["total_ms", "wall_ms"], ["VMM", "harness"]),
              ("downtime and outage (ms)", ["downtime_ms", "outage_ms", "max_gap_ms"],
               ["downtime", "outage", "max gap"]),
              ("MiB", ["wire_mib", "vmm_mib"], ["wire", "VMM"]),
              ("MiB/s", ["throughput_mibs", "raw_mibs", "raw_mem_mibs"],
               ["migration", "raw copy", "raw, fresh RAM"]),
              ("% of the raw TCP copy", ["link_pct"], ["throughput"]),
              ("CPU seconds during migration", ["src_cpu_s", "dst_cpu_s"], ["source", "destination"])]
    for case in cases:
        sc, s = case.sc, summary[case.label]
        if not any(s["_converged"][v][0] for v in ("ferry", "qemu")):
            continue                    # nothing completed: nothing to draw
        dat = os.path.join(OUT, f"{case.file}.dat")
        with open(dat, "w") as f:
            for i, (_, keys, labels) in enumerate(panels):
                f.write(f"# panel {i}\n")
                for k, lab in zip(keys, labels):
                    fv = s[k]["ferry"]
                    qv = s[k]["qemu"]
                    f.write(f"\"{lab}\" {fv if fv is not None else 0} {qv if qv is not None else 0}\n")
                f.write("\n\n")
        png = os.path.join(OUT, f"{case.file}.png")
        fna = "" if s["_supported"]["ferry"] else f"; ferry {NOT_IMPLEMENTED}"
        script = [
            "set terminal pngcairo size 1500,900 noenhanced font \",10\"" if _has_cairo(gp)
            else "set terminal png size 1500,900 noenhanced",
            f"set output '{png}'",
            f"set multiplot layout 2,3 title \"{case.label}: {sc.mem_mib} MiB, {sc.cmdline} ({sc.link}{fna})\"",
            "set style data histograms", "set style histogram clustered gap 1",
            "set style fill solid 0.8 border -1", "set boxwidth 0.9", "set grid ytics",
            "set yrange [0:*]", "set offsets 0,0,graph 0.12,0",
            "set key top center horizontal",
        ]
        for i, (title, _, _) in enumerate(panels):
            script += [f"set title '{title}'",
                       f"plot '{dat}' index {i} using 2:xtic(1) title 'ferry' lc rgb '#1f77b4', "
                       f"'' index {i} using 3 title 'QEMU' lc rgb '#ff7f0e'"]
        script.append("unset multiplot")
        r = subprocess.run([gp], input="\n".join(script), capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            log(f"gnuplot failed for {case.label}: {r.stderr.strip()[:300]}")


def _has_cairo(gp):
    r = subprocess.run([gp, "-e", "set terminal pngcairo"], capture_output=True, text=True, timeout=20)
    return r.returncode == 0 and "unknown" not in r.stderr.lower()


class _FakeQemuQMP:
    """--selftest: a QMP server on a unix socket that answers every command
    and, after the ones that start something, emits the events QEMU 7.2
    would (mirror ready, pre-switchover, mirror completed, completed)."""

    EVENTS = {"blockdev-mirror": ("BLOCK_JOB_READY", {"device": MIRROR_JOB, "len": 1 << 20,
                                                       "offset": 1 << 20}),
              "migrate": ("MIGRATION", {"status": "pre-switchover"}),
              "block-job-cancel": ("BLOCK_JOB_COMPLETED", {"device": MIRROR_JOB, "len": 3 << 20,
                                                           "offset": 3 << 20}),
              "migrate-continue": ("MIGRATION", {"status": "completed"})}

    def __init__(self, path):
        self.commands = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(4)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                f = conn.makefile("rwb")
                f.write(b'{"QMP": {"version": {}, "capabilities": []}}\n')
                f.flush()
                for line in f:
                    msg = json.loads(line)
                    self.commands.append((msg["execute"], msg.get("arguments", {})))
                    ret = {}
                    if msg["execute"] == "query-migrate":
                        ret = {"status": "completed", "total-time": 900, "downtime": 40,
                               "setup-time": 5, "ram": {"transferred": 2 << 20,
                                                        "dirty-sync-count": 2}}
                    f.write(json.dumps({"return": ret}).encode() + b"\n")
                    if msg["execute"] in self.EVENTS:
                        ev, data = self.EVENTS[msg["execute"]]
                        f.write(json.dumps({"event": ev, "data": data}).encode() + b"\n")
                    f.flush()

    def names(self):
        return [c for c, _ in self.commands]


def selftest():
    """The storage scenarios' plumbing without root, KVM or QEMU: the older
    copy's differing ranges, the NBD byte count from `ss`, both VMMs'
    command lines, and QEMU's QMP sequence (the libvirt way) against a
    fake QMP server."""
    import types
    global nbd_tcp_bytes
    tmp = tempfile.mkdtemp(prefix="fb-selftest.")

    def want(cond, what):
        if not cond:
            raise AssertionError(what)
    try:
        # An older copy: every 20th 64 KiB range rewritten, nothing else.
        src, dst = os.path.join(tmp, "src.img"), os.path.join(tmp, "dst.img")
        write_random_image(src, 4)                  # 64 ranges
        n = make_older_copy(src, dst)
        with open(src, "rb") as a, open(dst, "rb") as b:
            diff = [k for k in range(64) if a.read(RANGE) != b.read(RANGE)]
        want(n == 4 and diff == [1, 21, 41, 61], f"older copy: {n} ranges changed, differing {diff}")
        off = images_differ(src, dst, 0)
        want(off is not None and RANGE <= off < 2 * RANGE, f"images_differ found {off}")
        want(images_differ(src, dst, 62 * RANGE) is None, "images_differ past the last change")
        # A mixed image: each kind's share of the ranges, holes left unallocated,
        # text and random ranges full, text compressible and random not.
        import zlib
        mixed = os.path.join(tmp, "mixed.img")
        count = write_mixed_image(mixed, 8)         # 128 ranges
        want(count == {"hole": 25, "zero": 25, "text": 38, "random": 40}, f"mixed image: {count}")
        kinds = mixed_kinds(128)
        with open(mixed, "rb") as f:
            for k, kind in enumerate(kinds):
                r = f.read(RANGE)
                z = len(zlib.compress(r, 1))
                ok = {"hole": r == bytes(RANGE), "zero": r == bytes(RANGE),
                      "text": 0 not in r and z < RANGE // 2, "random": z > RANGE * 9 // 10}[kind]
                want(ok, f"mixed image: range {k} ({kind}) holds other content")
        want(os.stat(mixed).st_blocks * 512 <= 104 * RANGE, "mixed image: the holes are allocated")  # + metadata
        want(parse_size("10M") == 10 * MiB and parse_size("2G") == 2 << 30 and
             parse_size("1.5G") is None, "parse_size")
        ss = ("ESTAB 0 0 10.77.0.1:40000 10.77.0.2:10809\n\t cubic wscale:7,7 bytes_sent:1000 "
              "bytes_retrans:0 bytes_acked:999 bytes_received:24 segs_out:9\n")
        want(parse_ss_bytes(ss) == 1024, f"ss bytes: {parse_ss_bytes(ss)}")

        # Command lines.
        h = types.SimpleNamespace(tmp=tmp, logdir=tmp)
        link = types.SimpleNamespace(vmm_listen=("10.77.0.2", VMM_PORT), migrate_addr=("10.77.0.2", VMM_PORT),
                                     dst_ip="10.77.0.2", ns_src="none")
        env = types.SimpleNamespace(src=src, dst=dst, sock=os.path.join(tmp, "nbd.sock"))
        env.nbd_uri = lambda: f"nbd+unix:///?socket={env.sock}"
        byname = {sc.name: sc for sc in SCENARIOS}
        runs = {}
        for name in PRESETS["storage"]:
            sc = byname[name]
            want(sc.storage and "disk_rate=" in sc.cmdline and sc.link == "veth-1g", f"{name}: scenario")
            run = types.SimpleNamespace(sc=sc, mode="precopy", nic=None, storage=env,
                                        src_ctl=os.path.join(tmp, f"{name}-src.qmp"),
                                        dst_ctl=os.path.join(tmp, f"{name}-dst.qmp"))
            runs[sc.storage] = run
            qs, qd = Qemu().start_src(h, run, link), Qemu().start_dst(h, run, link)
            fs, fd = Ferry().start_src(h, run, link), Ferry().start_dst(h, run, link)
            fm = Ferry.migrate_argv(sc, "precopy")
            for argv in (qs, qd):
                want("microvm,acpi=off" in argv and f"virtio-blk-device,drive={NBD_NODE}" in argv,
                     f"{name}: QEMU has no virtio-blk-device on microvm: {argv}")
            if sc.storage == "nbd":
                node = f"driver=nbd,node-name={NBD_NODE},server.type=unix,server.path={env.sock}"
                want(node in qs and node in qd and qd[-2:] == ["-incoming", f"tcp:10.77.0.2:{VMM_PORT}"],
                     f"{name}: QEMU's NBD disk: {qd}")
                want(fs[-2:] == fd[-2:] == ["--disk", f"nbd={env.nbd_uri()}"], f"{name}: ferry's NBD disk")
                want("--copy-storage" not in fm, f"{name}: ferry copies a shared disk")
            else:
                want(f"driver=file,node-name=f0,filename={src}" in qs and
                     f"driver=file,node-name=f0,filename={dst}" in qd and
                     qd[-2:] == ["-incoming", "defer"], f"{name}: QEMU's images: {qd}")
                want(fs[-2:] == ["--disk", f"path={src}"] and
                     fd[-3:] == ["--copy-storage", "--disk", f"path={dst}"], f"{name}: ferry's images")
                flag = "--copy-storage" if sc.storage == "copy" else "--copy-storage=incremental"
                tail = [flag, "--compress", "lz4"] if sc.disk_fill == "mixed" else [flag]
                want(fm[-len(tail):] == tail, f"{name}: ferry migrate {fm}")

        # QEMU's copy, the libvirt way, against the fake QMP.
        nbd_tcp_bytes = lambda ns: 12345        # noqa: E731 - no namespaces here
        run = runs["copy"]
        fdst, fsrc = _FakeQemuQMP(run.dst_ctl), _FakeQemuQMP(run.src_ctl)
        Qemu().prepare_dst(h, run, link)
        want(fdst.names() == ["qmp_capabilities", "nbd-server-start", "block-export-add",
                              "migrate-incoming"], f"destination QMP: {fdst.names()}")
        args = dict(fdst.commands)
        want(args["block-export-add"]["writable"] and args["block-export-add"]["node-name"] == NBD_NODE
             and args["nbd-server-start"]["addr"]["data"]["port"] == str(NBD_PORT),
             f"the destination's export: {args}")
        res = Qemu().migrate(h, run, link)
        want(fsrc.names() == ["qmp_capabilities", "migrate-set-capabilities", "migrate-set-parameters",
                              "blockdev-add", "blockdev-mirror", "migrate", "block-job-cancel",
                              "migrate-continue", "query-migrate", "blockdev-del"],
             f"source QMP: {fsrc.names()}")
        args = dict(fsrc.commands)
        caps = {c["capability"] for c in args["migrate-set-capabilities"]["capabilities"]}
        want("pause-before-switchover" in caps, "no pause-before-switchover")
        want(args["blockdev-mirror"] == {"job-id": MIRROR_JOB, "device": NBD_NODE,
                                         "target": MIRROR_TARGET, "sync": "full"},
             f"blockdev-mirror {args['blockdev-mirror']}")
        want(args["blockdev-add"]["server"] == {"type": "inet", "host": "10.77.0.2", "port": str(NBD_PORT)},
             f"the mirror's target {args['blockdev-add']}")
        want(res["status"] == "completed" and res["disk_bytes"] == 3 << 20 and
             res["vmm_bytes"] == 5 << 20 and res["nbd_tcp_bytes"] == 12345 and
             res["total_ms"] is None and res["ram_total_ms"] == 900 and
             res["t0"] <= res["t1"], f"QEMU's result {res}")
        # The save preset: in `full` too, and its work-rate arithmetic.
        want(PRESETS["save"] and set(PRESETS["save"]) <= set(PRESETS["full"]), "save preset not in full")
        savebench.selftest(want)
        codecbench.selftest(Qemu, Ferry, _FakeQemuQMP, SCENARIOS, h, link, tmp, want)
        print("selftest: ok (older copy, ss, command lines, QEMU's mirror over QMP, save preset, "
              "QEMU's configurations)")
        return 0
    except AssertionError as e:
        print(f"selftest: FAIL: {e}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    global PREALLOC, FERRY_HYBRID_AFTER_S, NC_UDP_RATE, NC_PING_RATE, STORAGE_DISK_MIB, STORAGE_RATE
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("preset", nargs="?", default="quick", choices=sorted(PRESETS))
    ap.add_argument("--scenario", action="append",
                    help="run only these scenarios (repeatable); NAME/MODE picks one mode")
    ap.add_argument("--mode", action="append", choices=MODES,
                    help="run the selected scenarios in these modes (repeatable; "
                         "default: each scenario's own modes)")
    ap.add_argument("--precopy-timeout", type=float, default=None,
                    help="bound on every pre-copy run in seconds (default: the scenario's, "
                         f"{PRECOPY_TIMEOUT} s or 30 s where pre-copy cannot converge)")
    ap.add_argument("--repeat", type=int, default=None, help="migrations per VMM and scenario")
    ap.add_argument("--vmm", action="append", choices=["ferry"] + list(codecbench.QEMU_CONFIGS),
                    help="only these VMMs (QEMU by configuration: qemu is its default; "
                         "default: ferry and qemu, in presets codecs and full every configuration)")
    ap.add_argument("--mem", help="override guest memory of every scenario (e.g. 256M, 1G)")
    ap.add_argument("--downtime", type=int, default=None, help="downtime limit in ms, both VMMs (default 300)")
    ap.add_argument("--list", action="store_true", help="list scenarios and exit")
    ap.add_argument("--no-prealloc", action="store_true",
                    help="do not preallocate destination RAM (default: both VMMs do, "
                         "QEMU -mem-prealloc, ferry --prealloc)")
    ap.add_argument("--udp-rate", type=float, default=None,
                    help=f"net-client: UDP echo datagrams a second (default {NC_UDP_RATE})")
    ap.add_argument("--ping-rate", type=float, default=None,
                    help=f"net-client: pings a second (default {NC_PING_RATE}; 0: none)")
    ap.add_argument("--disk-size", default=None,
                    help=f"storage-*: the disk's size (default {STORAGE_DISK_MIB // 1024}G; "
                         f"at least the {STORAGE_WSS_BLOCKS * 4096 // MiB}M the guest writes)")
    ap.add_argument("--disk-rate", default=None,
                    help=f"storage-*: what the guest writes a second, 4 KiB blocks (default {STORAGE_RATE})")
    ap.add_argument("--selftest", action="store_true",
                    help="check the storage scenarios' plumbing (command lines, QMP sequence, "
                         "images) without root, KVM or QEMU, and exit")
    ap.add_argument("--ferry-hybrid-timed", action="store_true",
                    help="drive ferry's hybrid like QEMU's (migrate-postcopy after 2 s) "
                         "instead of its own --mode hybrid")
    args = ap.parse_args()
    PREALLOC = not args.no_prealloc
    FERRY_HYBRID_AFTER_S = args.ferry_hybrid_timed
    if args.udp_rate is not None:
        if not 1 <= args.udp_rate <= 100000:
            print("bench: --udp-rate takes 1..100000", file=sys.stderr)
            return 1
        NC_UDP_RATE = args.udp_rate
    if args.ping_rate is not None:
        if not 0 <= args.ping_rate <= 10000:
            print("bench: --ping-rate takes 0..10000", file=sys.stderr)
            return 1
        NC_PING_RATE = args.ping_rate
    if args.disk_size is not None:
        size = parse_size(args.disk_size)
        if not size or size % MiB or size < STORAGE_WSS_BLOCKS * 4096:
            print(f"bench: --disk-size takes whole MiB, at least {STORAGE_WSS_BLOCKS * 4096 // MiB}M "
                  "(e.g. 512M, 2G)", file=sys.stderr)
            return 1
        STORAGE_DISK_MIB = size // MiB
    if args.disk_rate is not None:
        rate = parse_size(args.disk_rate)
        if not rate or not 4096 <= rate <= 1 << 30:
            print("bench: --disk-rate takes 4K..1G (e.g. 10M)", file=sys.stderr)
            return 1
        STORAGE_RATE = args.disk_rate.strip().upper()
    for sc in SCENARIOS:
        if sc.storage:
            sc.cmdline = storage_cmdline()
            # the whole disk and RAM over the link, and then some
            sc.precopy_timeout_s = max(sc.precopy_timeout_s, PRECOPY_TIMEOUT + STORAGE_DISK_MIB // 50)
    if args.selftest:
        return selftest()

    if args.list:
        for sc in SCENARIOS:
            bw = f" cap {sc.bandwidth // MiB}M" if sc.bandwidth else ""
            print(f"{sc.name:<23} {sc.mem_mib:>5} MiB  {sc.link:<9} {'+'.join(sc.modes):<24} "
                  f"{sc.cmdline}{bw}")
        for sc in DEVICE_SCENARIOS:
            print(f"{sc.name:<23} {sc.mem_mib:>5} MiB  {sc.device:<9} {'device, no migration':<24} "
                  f"{sc.cmdline}")
        for sc in savebench.SAVE_SCENARIOS:
            print(f"{sc.name:<23} {sc.mem_mib:>5} MiB  {sc.kind:<9} {'save preset':<24} {sc.cmdline}")
        return 0
    if os.geteuid() != 0:
        print("bench: needs root (network namespaces, tc)", file=sys.stderr)
        return 1
    for path in (PROBE, NETBENCH):
        if not os.path.exists(path):
            print(f"bench: {path} is missing (bench/run.sh builds it)", file=sys.stderr)
            return 1
    names = args.scenario or PRESETS[args.preset]
    byname = {s.name: s for s in SCENARIOS}
    devname = {s.name: s for s in DEVICE_SCENARIOS}
    picked = {}                     # scenario name -> modes, in order
    devices = []                    # device scenarios, in order
    saves = []                      # save scenarios (bench/savebench.py), in order
    for n in names:
        base, _, mode = n.partition("/")
        if base in devname and not mode:
            if devname[base] not in devices:
                devices.append(devname[base])
            continue
        if base in savebench.BY_NAME and not mode:
            if savebench.BY_NAME[base] not in saves:
                saves.append(savebench.BY_NAME[base])
            continue
        if base not in byname or (mode and mode not in MODES):
            print(f"bench: unknown scenario {n!r}; --list shows them (NAME or NAME/MODE, "
                  f"MODE one of {', '.join(MODES)})", file=sys.stderr)
            return 1
        modes = [mode] if mode else list(args.mode or byname[base].modes)
        picked.setdefault(base, [])
        picked[base] += [m for m in modes if m not in picked[base]]
    scenarios = [byname[n] for n in picked]
    cases = [Case(byname[n], m) for n in picked for m in picked[n]]
    for sc in scenarios + devices + saves:
        if args.mem:
            m = re.fullmatch(r"(\d+)([MG])", args.mem.upper())
            if not m:
                print("bench: --mem takes e.g. 256M or 1G", file=sys.stderr)
                return 1
            sc.mem_mib = int(m.group(1)) * (1024 if m.group(2) == "G" else 1)
        if sc in devices or sc in saves:
            continue
        if args.downtime:
            sc.downtime_ms = args.downtime
        if args.precopy_timeout:
            sc.precopy_timeout_s = args.precopy_timeout
    repeat = args.repeat or 3

    ferry_ok = ferry_built = Ferry.available()
    ferry_why = "" if ferry_ok else f"'{FERRY} migrate' does not exist yet (or ferry is not built)"
    vmms = []
    configs = codecbench.configs_for_run(args.preset if not args.scenario else "full", args.vmm)
    for v in (args.vmm or ["qemu", "ferry"] + [c for c in configs if c != "qemu"]):
        if v == "ferry" and not ferry_ok:
            log(f"skipping ferry: {ferry_why}")
            continue
        if v != "ferry" and not Qemu.available():
            log(f"skipping {v}: qemu-system-x86_64 not installed")
            continue
        vmms.append(Ferry() if v == "ferry" else Qemu(v))
    # Device scenarios need `ferry run` only (device_support asks it).
    dev_vmms = [v for v in (args.vmm or ["qemu", "ferry"]) if v in ("qemu", "ferry")]
    if not vmms and not devices and not saves:
        print("bench: nothing to run", file=sys.stderr)
        return 1
    if ferry_ok and not any(v.name == "ferry" for v in vmms):
        ferry_ok, ferry_why = False, "not selected (--vmm)"
    # Which modes each VMM can run.  Without ferry at all its column is
    # empty anyway ("ferry column empty"), not "not implemented".
    supported = {**{c: Qemu(c).modes() for c in codecbench.QEMU_CONFIGS},
                 "ferry": Ferry().modes() if ferry_built else set(MODES)}
    if ferry_ok and supported["ferry"] != set(MODES):
        log(f"ferry: modes {', '.join(sorted(supported['ferry']))} only "
            f"(`ferry migrate --help` has no --mode): its post-copy/hybrid cells say "
            f"'{NOT_IMPLEMENTED}'")

    os.makedirs(OUT, exist_ok=True)
    h = Harness(args)

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    records = []
    links = {}
    dev_support = {}
    save_support = {}
    t_start = time.monotonic()
    try:
        log(f"cases: {', '.join([c.label for c in cases] + [d.name for d in devices + saves])}; "
            f"VMMs: {', '.join(v.name for v in vmms)}; "
            f"{repeat} run(s) each; logs in {h.logdir}")
        for sc in scenarios:
            link = links[sc.link] = LINKS[sc.link]()
            log(f"{sc.name}: setting up {link.describe()}")
            link.setup(h)
            try:
                if sc.storage == "nbd" and not shutil.which(QEMU_NBD):
                    log(f"  {sc.name}: qemu-nbd is not installed: skipped")
                    continue
                if sc.storage:
                    h.storage = StorageEnv(h, sc)
                for case in (c for c in cases if c.sc is sc):
                    able = [v for v in vmms if case.mode in supported[v.name]
                            and codecbench.runs_on(sc, v.name)]
                    if sc.net_client and "ferry" in (v.name for v in able) and \
                            not re.search(r"--net\b", ferry_run_help()):
                        log(f"  {case.label} ferry: {NO_NET}")
                        able = [v for v in able if v.name != "ferry"]
                    for v in vmms:
                        if v not in able and codecbench.runs_on(sc, v.name):
                            log(f"  {case.label} {v.name}: {NOT_IMPLEMENTED}")
                    for rep in range(repeat):
                        order = able if rep % 2 == 0 else list(reversed(able))
                        for vmm in order:
                            rec = run_migration(h, case, vmm, link, rep)
                            rec["wire_mib"] = rec["wire_bytes"] / MiB if rec.get("wire_bytes") else None
                            rec["vmm_mib"] = rec["vmm_bytes"] / MiB if rec.get("vmm_bytes") else None
                            rec["disk_mib"] = rec["disk_bytes"] / MiB if rec.get("disk_bytes") is not None else None
                            records.append(rec)
                            extra = ""
                            if sc.net_client and rec.get("udp_sent") is not None:
                                extra = (f" client: UDP lost {fmt(rec.get('udp_lost'))}"
                                         f"/{fmt(rec.get('udp_sent'))}, gap {fmt(rec.get('udp_gap_ms'))} ms,"
                                         f" pings lost {fmt(rec.get('ping_lost'))}/{fmt(rec.get('ping_sent'))},"
                                         f" gap {fmt(rec.get('ping_gap_ms'))} ms,"
                                         f" FDB at B {fmt(rec.get('fdb_ms'))} ms after the pause,")
                            if rec.get("disk_mib") is not None:
                                extra += (f" harness total {fmt(rec.get('wall_ms'), 0)} ms,"
                                          f" disk {fmt(rec['disk_mib'])} MiB,")
                            if rec.get("postcopy_ms") is not None:
                                extra += (f" post-copy phase {fmt(rec['postcopy_ms'], 0)} ms,"
                                         f" blocked {fmt(rec.get('blocktime_ms'), 0)} ms,")
                            log(f"  {case.label} {vmm.name} #{rep}: {rec['status']}"
                                f" total {fmt(rec.get('total_ms'), 0)} ms,"
                                f" downtime {fmt(rec.get('downtime_ms'))} ms,"
                                f" outage {fmt(rec.get('outage_ms'))} ms,{extra}"
                                f" wire {fmt(rec.get('wire_mib'))} MiB,"
                                f" {fmt(rec.get('throughput_mibs'), 0)} MiB/s"
                                f" (raw {fmt(rec.get('raw_mibs'), 0)} MiB/s,"
                                f" {fmt(rec.get('link_pct'))}%)"
                                + (f" [{rec['error']}]" if rec.get("error") else ""))
            finally:
                if h.storage:
                    h.storage.teardown(h)
                    h.storage = None
                link.teardown(h)
        dev_support = run_devices(h, devices, dev_vmms, repeat, records)
        save_support = savebench.run_all(h, saves, dev_vmms, repeat, records)
    except KeyboardInterrupt:
        log("interrupted: cleaning up")
        h.cleanup()
        return 130
    finally:
        h.cleanup()
        with open(os.path.join(OUT, "results.json"), "w") as f:
            json.dump(records, f, indent=1, default=str)
        write_csv(records, os.path.join(OUT, "results.csv"))

    present = sorted({v.name for v in vmms} | {r["vmm"] for r in records})
    summary = summarize(records, cases, ["ferry"] + list(codecbench.QEMU_CONFIGS), supported)
    what = " and ".join(w for w, on in (("live migration", cases), ("devices", devices),
                                         ("save/restore", saves)) if on)
    lines = [f"ferry vs QEMU {what}, {time.strftime('%Y-%m-%d %H:%M:%S')}, "
             f"{os.cpu_count()} CPUs, {repeat} run(s) per VMM, scenario and mode, "
             f"VMMs run: {', '.join(present)}"]
    print(lines[0])
    if cases:
        report(summary, cases, links, ferry_ok, ferry_why, lines)
    dsum = summarize_devices(records, devices, dev_support)
    report_devices(dsum, devices, lines)
    ssum = savebench.summarize(records, saves, save_support)
    savebench.report(ssum, saves, lines)
    with open(os.path.join(OUT, "summary.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    write_summary_csv(summary, cases, os.path.join(OUT, "summary.csv"))
    write_device_summary_csv(dsum, devices, os.path.join(OUT, "summary.csv"))
    savebench.write_summary_csv(ssum, saves, os.path.join(OUT, "summary.csv"))
    charts(summary, cases)
    log(f"done in {time.monotonic() - t_start:.0f} s: {OUT}/results.csv, summary.csv, summary.txt, *.png")
    # A pre-copy that did not converge is a result where the scenario says
    # it may not (the guest must still have run on at the source).
    byname = {s.name: s for s in SCENARIOS}
    failed = [r for r in records if r["mode"] not in ("device", "save") and (not r.get("guest_ok") or not (
        r.get("status") == "completed" or
        (r.get("status") == "not-converged" and not byname[r["scenario"]].converges)))]
    failed += [r for r in records if r["mode"] in ("device", "save") and r.get("status") != "completed"
               and not r.get("unsupported")]
    return 2 if failed else 0


savebench.setup(sys.modules[__name__])

if __name__ == "__main__":
    sys.exit(main())
