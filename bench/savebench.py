"""The `save` preset of bench/ferrybench.py (issue 14): save and restore
(cold migration), lazy restore, the guest's slowdown during a live
snapshot, the guest's work rate under replication, and what an A->B->A
round trip sends back when the old copy stayed at A (see bench/README.md,
"Save, restore, snapshot, replication").

ferrybench.py imports this module and hands it itself (`fb`): processes,
serial lines, QMP, links, the VMMs' command lines and migrations all come
from there.  Each scenario kind has its driver (run_save, run_snapshot,
run_replicate, run_base) and its report block; every figure is measured in
the same run as what it is compared with.
"""

import csv
import json
import os
import re
import subprocess
import threading
import time
import types

fb = None                   # bench/ferrybench.py, set by setup()

MiB = 1 << 20
WORK = re.compile(rb"^probe: work (\d+) at (\d+) us")
BAD = rb"CORRUPT|exception|I/O error"
LAZY_ALL = re.compile(r"lazy restore: every page is in after ([\d.]+) ms")
SAVE_TIMEOUT = 300          # a save or snapshot of 1 GiB, and QEMU's sync
RESTORE_TIMEOUT = 120
RATE_WINDOW_S = 3.0         # each work-rate window (baseline, replication)
REPORT_EVERY = 10           # report=: a work line every 10 heartbeats (100 ms at 10 ms)
INTERVALS_MS = (25, 50, 100)
BASE_STAY_S = 2.0           # A->B->A: the guest runs at B this long
NO_REPLICATION = "n/a (QEMU has no replication here)"


def setup(module):
    global fb
    fb = module


class SaveScenario:
    """kind: save (save, eager and lazy restore), snapshot (live snapshot
    slowdown), replicate (work rate under replication; ferry only), base
    (A->B->A with the old copy kept at A)."""

    def __init__(self, name, kind, cmdline, about, mem_mib=1024, vmms=("ferry", "qemu")):
        self.name, self.kind, self.cmdline, self.about = name, kind, cmdline, about
        self.mem_mib, self.vmms, self.vcpus = mem_mib, vmms, 1


_MEMTOUCH = f"workload=memtouch wss=256M pattern=random rate=0 period=10ms report={REPORT_EVERY}"
SAVE_SCENARIOS = [
    SaveScenario("save-random-1g", "save", "workload=idle fill=random period=10ms",
                 "ferry save + run --restore [--lazy] against QEMU stop + migrate exec:cat > FILE, "
                 "-incoming exec:cat FILE + cont"),
    SaveScenario("save-mixed-1g", "save", "workload=idle fill=mixed period=10ms",
                 "the same, RAM filled with a mix of zero, text and random pages"),
    SaveScenario("snapshot-1g", "snapshot", f"{_MEMTOUCH} fill=random",
                 "the guest's work rate during ferry snapshot against without; QEMU migrate "
                 "capability background-snapshot to exec:cat > FILE"),
    # Replication, ferry only: a guest that only computes (the epochs' pauses
    # and the host CPU they take), and one that rewrites 16 MiB at random as
    # fast as it can (every page it dirties is copied, each epoch).
    SaveScenario("replicate-cpu-1g", "replicate", f"workload=cpu period=10ms report={REPORT_EVERY}",
                 "the primary's work rate (cpu loops) under ferry replicate --interval "
                 f"{'/'.join(str(i) for i in INTERVALS_MS)} ms against unreplicated; a standby "
                 "across the loopback link", vmms=("ferry",)),
    SaveScenario("replicate-memtouch-1g", "replicate", _MEMTOUCH.replace("wss=256M", "wss=16M"),
                 "the same, the guest rewriting 16 MiB at random as fast as it can (pages written)",
                 vmms=("ferry",)),
    SaveScenario("base-return-1g", "base", "workload=verify wss=51M fill=random period=10ms",
                 "A -> B -> A, the guest rewriting 51 MiB (5 %) of its RAM: ferry migrate "
                 "--keep-base at A, run --incoming --base on the way back; QEMU sends it all again"),
]
BY_NAME = {s.name: s for s in SAVE_SCENARIOS}


# ---- shared pieces ----------------------------------------------------------------


def ferry_boot_argv(sc, ctl):
    return [fb.FERRY, "run", "--kernel", fb.PROBE, "--memory", f"{sc.mem_mib}M",
            "--vcpus", str(sc.vcpus), "--cmdline", sc.cmdline, "--serial", "stdio",
            "--control", ctl]


def start(h, name, argv, rid, netns=None):
    """A VMM process with its serial output stamped line by line."""
    p = fb.Proc(h, name, argv, netns=netns, lines=True,
                logpath=os.path.join(h.logdir, f"{rid}.err"))
    return p, fb.Serial(p.popen.stdout, os.path.join(h.logdir, f"{rid}.serial"))


def boot(h, name, argv, rid, netns=None):
    p, ser = start(h, name, argv, rid, netns)
    if not ser.wait_for(rb"^probe: running", fb.BOOT_TIMEOUT, alive=p.alive):
        raise fb.BenchError(f"{name} did not boot (exit {p.status})")
    if not ser.wait_for(rb"^hb ", 10, alive=p.alive):
        raise fb.BenchError(f"{name} prints no heartbeats")
    return p, ser


def first_hb(ser, proc, t0, timeout=RESTORE_TIMEOUT):
    """Seconds from t0 to the first heartbeat, or an error."""
    m = ser.wait_for(rb"^hb ", timeout, alive=proc.alive)
    if not m:
        raise fb.BenchError(f"no heartbeat after the restore (exit {proc.status})")
    return m[0] - t0


def work_lines(ser):
    """[(arrival, units, guest us)] of the `probe: work` lines so far."""
    with ser.cv:
        out = []
        for t, line in ser.lines:
            m = WORK.match(line)
            if m:
                out.append((t, int(m.group(1)), int(m.group(2))))
        return out


def work_rate(ser, a, b):
    """Work units per second (guest time) from the last work line that
    arrived at or before a to the first at or after b: the whole of [a, b]
    and at most one report period either side.  None without both."""
    lines = work_lines(ser)
    before = [x for x in lines if x[0] <= a]
    after = [x for x in lines if x[0] >= b]
    if not before or not after or after[0][2] <= before[-1][2]:
        return None
    s, e = before[-1], after[0]
    return (e[1] - s[1]) * 1e6 / (e[2] - s[2])


def wait_work_after(ser, t, timeout=5.0):
    """Wait until a work line arrives after t (the window's end is bracketed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(x[0] >= t for x in work_lines(ser)[-3:]):
            return True
        time.sleep(0.05)
    return False


def measure_rate(ser, seconds=RATE_WINDOW_S):
    t0 = time.monotonic()
    time.sleep(seconds)
    t1 = time.monotonic()
    wait_work_after(ser, t1)
    return work_rate(ser, t0, t1)


def file_sizes(path):
    st = os.stat(path)
    return st.st_size, st.st_blocks * 512


def wait_file(path, timeout):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise fb.BenchError(f"{os.path.basename(path)} did not appear in {timeout} s")
        time.sleep(0.005)
    return time.monotonic()


def unlink(*paths):
    for p in paths:
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass


def ferry_json(argv, timeout):
    """Run a ferry command with --json: (rc, its JSON or {}, stdout+stderr)."""
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=timeout)
    info = {}
    start_ = r.stdout.find("{")
    if start_ >= 0:
        try:
            info, _ = json.JSONDecoder().raw_decode(r.stdout[start_:])
        except ValueError:
            info = {}
    return r.returncode, info, (r.stdout + r.stderr).strip()


def ferry_quit(ctl, proc):
    if proc and proc.alive():
        subprocess.run([fb.FERRY, "quit", ctl], stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=10)
        proc.wait(fb.EXIT_TIMEOUT)


def qemu_quit(ctl, proc):
    if proc and proc.alive():
        try:
            q = fb.QMP(ctl, timeout=3)
            q.cmd("quit")
            q.close()
        except (fb.BenchError, OSError):
            pass
        proc.wait(fb.EXIT_TIMEOUT)


def qemu_exec_save(q, path, timeout=SAVE_TIMEOUT):
    """migrate to exec:cat > path, then sync path (ferry's save syncs its
    file too).  QEMU 7.2 has no
    file: URI; the shell runs `cat`, `sync FILE` and marks the end.
    Returns the monotonic times of QEMU's `completed` and of the sync's
    end, and QEMU's query-migrate."""
    done = path + ".done"
    unlink(path, done)
    q.cmd("migrate", {"uri": f"exec:cat > {path} && sync {path} && : > {done}"})
    t1, ev = q.wait_event(lambda e: e["event"] == "MIGRATION" and
                          e["data"]["status"] in ("completed", "failed", "cancelled"), timeout)
    if ev is None:
        raise fb.BenchError(f"QEMU's save did not end in {timeout} s")
    info = fb.qemu_settled_info(q)
    if ev["data"]["status"] != "completed":
        raise fb.BenchError(f"QEMU's save {ev['data']['status']}: {info.get('error-desc', '')}")
    return t1, wait_file(done, timeout), info


def qemu_caps(q, extra=()):
    q.cmd("migrate-set-capabilities", {"capabilities": [
        {"capability": c, "state": True} for c in ("events",) + tuple(extra)]})
    q.cmd("migrate-set-parameters", {"max-bandwidth": fb.UNLIMITED_QEMU_BW})


def guest_bad(*sers):
    for s in sers:
        if s:
            bad = s.grep(BAD)
            if bad:
                return bad[0]
    return None


# ---- save and restore (cold migration), lazy restore --------------------------------


def run_save(h, sc, vmm, rep, rec):
    """Boot, save (the VMM stops), restore eagerly from the file; ferry
    also restores lazily from the same file.  Each restored guest must beat
    on for 2 s."""
    path = os.path.join(h.tmp, f"{sc.name}-{vmm}.sav")
    rid = f"{sc.name}-{vmm}-{rep}"
    procs = []
    try:
        if vmm == "ferry":
            last = save_ferry(h, sc, rid, path, rec, procs)
            for key in ("restore", "lazy"):
                restore_ferry(h, rid, path, rec, procs, key, last)
        else:
            last = save_qemu(h, sc, rid, path, rec, procs)
            restore_qemu(h, sc, rid, path, rec, procs, last)
        rec["file_bytes"], rec["file_alloc_bytes"] = file_sizes(path)
        rec["save_restore_ms"] = rec["save_ms"] + rec["restore_ms"]
        rec["status"] = "completed"
    finally:
        for p in procs:
            p.kill()
        unlink(path, path + ".done", path + ".tmp")


def last_seq(ser):
    hb = ser.heartbeats()
    return hb[-1][1] if hb else None


def save_ferry(h, sc, rid, path, rec, procs):
    """ferry save CONTROL FILE: the guest pauses, FILE is written, synced
    and renamed, ferry exits.  Returns the last heartbeat's number."""
    ctl = os.path.join(h.tmp, "ferry-src.sock")
    unlink(ctl)
    src, ser = boot(h, "ferry-src", ferry_boot_argv(sc, ctl), f"{rid}-src")
    procs.append(src)
    time.sleep(1.0)
    t0 = time.monotonic()
    rc, info, out = ferry_json([fb.FERRY, "save", ctl, path, "--json"], SAVE_TIMEOUT)
    rec["save_ms"] = 1000 * (time.monotonic() - t0)
    if rc != 0:
        raise fb.BenchError(f"ferry save: rc={rc} {out[-300:]}")
    rec["vmm_save_ms"] = info.get("total-time-ms")
    src.wait(fb.EXIT_TIMEOUT)
    return last_seq(ser)


def save_qemu(h, sc, rid, path, rec, procs):
    """As virsh save: stop, then migrate to the file (and sync it)."""
    ctl = os.path.join(h.tmp, "qemu-src.sock")
    unlink(ctl)
    src, ser = boot(h, "qemu-src", fb.Qemu()._argv(sc, ctl), f"{rid}-src")
    procs.append(src)
    time.sleep(1.0)
    q = fb.QMP(ctl)
    try:
        qemu_caps(q)
        t0 = time.monotonic()
        q.cmd("stop")
        _, t_synced, info = qemu_exec_save(q, path)
        rec["save_ms"] = 1000 * (t_synced - t0)
        rec["vmm_save_ms"] = info.get("total-time")
    finally:
        q.close()
    qemu_quit(ctl, src)
    return last_seq(ser)


def restored(rec, key, dser, last):
    """The restored guest continues: heartbeat numbers go on from the
    source's last, and it beats on for 2 s without a complaint."""
    hb = dser.heartbeats()
    if last is not None and hb:
        rec[f"{key}_seq_jump"] = hb[0][1] - last
    if not dser.beats_after(time.monotonic(), 2):
        raise fb.BenchError(f"the guest stopped beating after the {key}")
    bad = guest_bad(dser)
    if bad:
        raise fb.BenchError(bad)


def restore_ferry(h, rid, path, rec, procs, key, last):
    """ferry run --restore FILE (key "restore") or with --lazy ("lazy"):
    from the start of the process to the guest's first heartbeat."""
    ctl = os.path.join(h.tmp, "ferry-dst.sock")
    unlink(ctl)
    t0 = time.monotonic()
    dst, dser = start(h, "ferry-dst", [fb.FERRY, "run", "--restore", path] +
                      (["--lazy"] if key == "lazy" else []) +
                      ["--serial", "stdio", "--control", ctl], f"{rid}-{key}")
    procs.append(dst)
    rec[f"{key}_ms"] = 1000 * first_hb(dser, dst, t0)
    if key == "lazy":
        rec["lazy_all_ms"] = lazy_all(h, f"{rid}-{key}", dst)
    restored(rec, key, dser, last)
    ferry_quit(ctl, dst)


def restore_qemu(h, sc, rid, path, rec, procs, last):
    """As virsh restore: -incoming from the file, then cont; from the start
    of the process to the guest's first heartbeat."""
    ctl = os.path.join(h.tmp, "qemu-dst.sock")
    unlink(ctl)
    t0 = time.monotonic()
    dst, dser = start(h, "qemu-dst", fb.Qemu()._argv(sc, ctl) + ["-incoming", f"exec:cat {path}"],
                      f"{rid}-restore")
    procs.append(dst)
    qemu_cont_after_incoming(ctl)
    rec["restore_ms"] = 1000 * first_hb(dser, dst, t0)
    restored(rec, "restore", dser, last)
    qemu_quit(ctl, dst)


def lazy_all(h, rid, proc, timeout=120):
    """ferry's own time to the last page of a lazy restore (its log line)."""
    deadline = time.monotonic() + timeout
    logpath = os.path.join(h.logdir, f"{rid}.err")
    while time.monotonic() < deadline and proc.alive():
        try:
            with open(logpath, errors="replace") as f:
                m = LAZY_ALL.search(f.read())
            if m:
                return float(m.group(1))
        except OSError:
            pass
        time.sleep(0.1)
    return None


def qemu_cont_after_incoming(ctl):
    """An incoming QEMU whose source was stopped (virsh save) stays paused
    when the load ends: cont, as virsh restore does."""
    q = fb.QMP(ctl, timeout=RESTORE_TIMEOUT, poll=0.005)
    try:
        deadline = time.monotonic() + RESTORE_TIMEOUT
        while True:
            st = q.cmd("query-status")["status"]
            if st not in ("inmigrate", "prelaunch"):
                break
            if time.monotonic() > deadline:
                raise fb.BenchError("QEMU's restore did not end")
            time.sleep(0.005)
        if st == "paused":
            q.cmd("cont")
        elif st != "running":
            raise fb.BenchError(f"QEMU after its restore: {st}")
    finally:
        q.close()


# ---- live snapshot: the guest's slowdown ----------------------------------------------


def run_snapshot(h, sc, vmm, rep, rec):
    """Work rate over RATE_WINDOW_S without, then during the snapshot (from
    the command to the file synced), then after.  QEMU: migrate capability
    background-snapshot (userfaultfd write-protect, as ferry) to exec:cat."""
    path = os.path.join(h.tmp, f"{sc.name}-{vmm}.sav")
    rid = f"{sc.name}-{vmm}-{rep}"
    ctl = os.path.join(h.tmp, f"{vmm}-src.sock")
    proc = None
    try:
        unlink(ctl)
        argv = ferry_boot_argv(sc, ctl) if vmm == "ferry" else fb.Qemu()._argv(sc, ctl)
        proc, ser = boot(h, f"{vmm}-src", argv, rid)
        time.sleep(1.0)
        rec["rate_base"] = mega(measure_rate(ser))
        if vmm == "ferry":
            t0 = time.monotonic()
            rc, info, out = ferry_json([fb.FERRY, "snapshot", ctl, path, "--json"], SAVE_TIMEOUT)
            t1 = time.monotonic()
            if rc != 0:
                raise fb.BenchError(f"ferry snapshot: rc={rc} {out[-300:]}")
            rec["downtime_ms"] = info.get("downtime-ms")
            rec["write_faults"] = info.get("write-faults")
            rec["vmm_snapshot_ms"] = info.get("total-time-ms")
        else:
            q = fb.QMP(ctl)
            try:
                try:
                    qemu_caps(q, ("background-snapshot",))
                except fb.BenchError as e:
                    rec["unsupported"] = f"QEMU refuses background-snapshot: {e}"
                    raise
                t0 = time.monotonic()
                try:
                    _, t1, info = qemu_exec_save(q, path)
                except fb.BenchError as e:
                    rec["unsupported"] = f"QEMU's background-snapshot failed: {e}"
                    raise
                rec["downtime_ms"] = info.get("downtime")
                rec["vmm_snapshot_ms"] = info.get("total-time")
                st = q.cmd("query-status")["status"]
                if st != "running":
                    raise fb.BenchError(f"QEMU after its background snapshot: {st}")
            finally:
                q.close()
        rec["snapshot_ms"] = 1000 * (t1 - t0)
        if not wait_work_after(ser, t1):
            raise fb.BenchError("no work line after the snapshot")
        rec["rate_snap"] = mega(work_rate(ser, t0, t1))
        rec["rate_after"] = mega(measure_rate(ser))
        if rec["rate_base"] and rec["rate_snap"] is not None:
            rec["slowdown_pct"] = 100 * (1 - rec["rate_snap"] / rec["rate_base"])
        rec["file_bytes"], rec["file_alloc_bytes"] = file_sizes(path)
        bad = guest_bad(ser)
        if bad:
            raise fb.BenchError(bad)
        if not proc.alive():
            raise fb.BenchError(f"the guest ended after the snapshot (exit {proc.status})")
        rec["status"] = "completed"
    finally:
        if proc:
            (ferry_quit if vmm == "ferry" else qemu_quit)(ctl, proc)
            proc.kill()
        unlink(path, path + ".done", path + ".tmp")


def mega(rate):
    return None if rate is None else rate / 1e6


# ---- replication: the primary's work rate, the bytes it sends -----------------------------


def query_migrate(ctl):
    rc, info, out = ferry_json([fb.FERRY, "call", ctl, "query-migrate"], 10)
    if rc != 0:
        raise fb.BenchError(f"query-migrate: {out[-200:]}")
    return info


def start_standby(h, sc, link, rid, ctl, manual):
    ip, port = link.vmm_listen
    unlink(ctl)
    argv = [fb.FERRY, "run", "--incoming", f"tcp:{ip}:{port}", "--standby", "--memory",
            f"{sc.mem_mib}M", "--serial", "stdio", "--control", ctl]
    if manual:
        argv += ["--failover", "manual"]
    p, ser = start(h, "ferry-standby", argv, rid, netns=link.ns_dst)
    if not fb.wait_listen(p.pid, port, fb.LISTEN_TIMEOUT):
        raise fb.BenchError("the standby is not listening")
    return p, ser


def replicate_start(pctl, link, interval_ms):
    ip, port = link.migrate_addr
    t0 = time.monotonic()
    rc, _, out = ferry_json([fb.FERRY, "replicate", pctl, f"tcp:{ip}:{port}", "--interval",
                             f"{interval_ms}ms"], fb.MIGRATE_TIMEOUT)
    if rc != 0:
        raise fb.BenchError(f"ferry replicate --interval {interval_ms}ms: rc={rc} {out[-300:]}")
    return time.monotonic() - t0


def run_replicate(h, sc, vmm, rep, rec, link):
    """Unreplicated rate, then for each interval: a fresh standby, the
    initial copy, RATE_WINDOW_S of epochs (rate, bytes), cancel; the
    unreplicated rate again (the baseline is the mean of both).  Last, a
    failover: kill -9 of the primary under replication at 50 ms."""
    rid = f"{sc.name}-{vmm}-{rep}"
    pctl, sctl = (os.path.join(h.tmp, f"ferry-{x}.sock") for x in ("primary", "standby"))
    prim = sb = None
    try:
        unlink(pctl)
        prim, ser = boot(h, "ferry-primary", ferry_boot_argv(sc, pctl), f"{rid}-primary",
                         netns=link.ns_src)
        time.sleep(1.0)
        base0 = measure_rate(ser)
        for iv in INTERVALS_MS:
            sb, _ = start_standby(h, sc, link, f"{rid}-standby-{iv}", sctl, manual=True)
            rec[f"init_ms_{iv}"] = 1000 * replicate_start(pctl, link, iv)
            time.sleep(0.5)
            q0, c0, ta = query_migrate(pctl), link.counters(), time.monotonic()
            time.sleep(RATE_WINDOW_S)
            q1, c1, tb = query_migrate(pctl), link.counters(), time.monotonic()
            wait_work_after(ser, tb)
            r0, r1 = q0.get("replication") or {}, q1.get("replication") or {}
            if q1.get("status") != "replicating":
                raise fb.BenchError(f"primary at {iv} ms: {q1.get('status')} {q1.get('error', '')}")
            rec[f"rate_{iv}"] = mega(work_rate(ser, ta, tb))
            rec[f"mibs_{iv}"] = (r1["epoch-bytes-total"] - r0["epoch-bytes-total"]) / MiB / (tb - ta)
            rec[f"wire_mibs_{iv}"] = (c1["total"] - c0["total"]) / MiB / (tb - ta)
            rec[f"epochs_s_{iv}"] = (r1["epochs"] - r0["epochs"]) / (tb - ta)
            rec[f"pause_ms_{iv}"] = r1.get("epoch-pause-avg-ms")
            rec[f"pause_max_ms_{iv}"] = r1.get("epoch-pause-max-ms")
            subprocess.run([fb.FERRY, "call", pctl, "migrate-cancel"], stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=10)
            if not sb.wait(fb.EXIT_TIMEOUT):
                raise fb.BenchError("the standby did not stand down after the cancel")
            if not ser.beats_after(time.monotonic(), 2):
                raise fb.BenchError("the primary's guest stopped after the cancel")
        base1 = measure_rate(ser)
        if base0 and base1:
            rec["rate_base"] = mega((base0 + base1) / 2)
            for iv in INTERVALS_MS:
                if rec.get(f"rate_{iv}") is not None:
                    rec[f"rate_pct_{iv}"] = 100 * rec[f"rate_{iv}"] / rec["rate_base"]
        failover(h, sc, link, rid, rec, prim, ser, pctl, sctl)
        rec["status"] = "completed"
    finally:
        for p, ctl in ((prim, pctl), (sb, sctl)):
            if p:
                ferry_quit(ctl, p)
                p.kill()


def failover(h, sc, link, rid, rec, prim, ser, pctl, sctl):
    """kill -9 of the primary while it replicates at 50 ms; the standby
    (--failover auto, its default 1 s timeout) resumes the guest: the
    outage is the last heartbeat of the primary to the first of the standby."""
    sb, sser = start_standby(h, sc, link, f"{rid}-standby-failover", sctl, manual=False)
    try:
        replicate_start(pctl, link, 50)
        time.sleep(2.0)
        t_kill = time.monotonic()
        os.killpg(prim.pid, 9)
        prim.wait(5)
        m = sser.wait_for(rb"^hb ", 30, alive=sb.alive)
        if not m:
            raise fb.BenchError(f"the standby did not take over (exit {sb.status})")
        last = [t for t, _ in ser.heartbeats() if t <= t_kill]
        rec["failover_ms"] = 1000 * (m[0] - t_kill)
        if last:
            rec["failover_outage_ms"] = 1000 * (m[0] - last[-1])
        if not sser.beats_after(time.monotonic(), 2):
            raise fb.BenchError("the standby's guest stopped")
        bad = guest_bad(ser, sser)
        if bad:
            raise fb.BenchError(bad)
    finally:
        ferry_quit(sctl, sb)
        sb.kill()


# ---- A -> B -> A: only what changed travels back -------------------------------------------


def run_base(h, sc, vmm, rep, rec, link):
    """A -> B (ferry: --keep-base FILE at A), BASE_STAY_S at B, B -> A'
    (ferry: A' with --base FILE); bytes on the wire each way, counted as
    in the migration scenarios (until 1 s after the first heartbeat)."""
    rid = f"{sc.name}-{vmm}-{rep}"
    basefile = os.path.join(h.tmp, f"{sc.name}.base")
    v = fb.Ferry() if vmm == "ferry" else fb.Qemu()
    ctl = {k: os.path.join(h.tmp, f"{vmm}-{k}.sock") for k in ("a", "b", "a2")}
    ip = link.dst_ip
    procs = {}
    try:
        unlink(basefile, *ctl.values())
        keep = ("--keep-base", basefile) if vmm == "ferry" else ()
        fsc = fb.Scenario(sc.name, sc.cmdline, mem_mib=sc.mem_mib, ferry_args=keep)
        trips = []
        for n, (frm, to, port) in enumerate((("a", "b", fb.VMM_PORT), ("b", "a2", fb.VMM_PORT + 1))):
            run = types.SimpleNamespace(sc=fsc, mode="precopy", src_ctl=ctl[frm], dst_ctl=ctl[to],
                                        id=f"{rid}-{frm}{to}", nic=None, storage=None)
            ln = types.SimpleNamespace(vmm_listen=(ip, port), migrate_addr=(ip, port),
                                       ns_src=link.ns_src, ns_dst=link.ns_dst, dst_ip=ip)
            argv = v.start_dst(h, run, ln)
            if n == 1 and vmm == "ferry":
                argv += ["--base", basefile]
            procs[to] = start(h, f"{vmm}-{to}", argv, f"{rid}-{to}", netns=link.ns_dst)
            if not fb.wait_listen(procs[to][0].pid, port, fb.LISTEN_TIMEOUT):
                raise fb.BenchError(f"{to} is not listening")
            if n == 0:
                procs["a"] = boot(h, f"{vmm}-a", v.start_src(h, run, ln), f"{rid}-a",
                                  netns=link.ns_src)
                time.sleep(1.0)
            c0 = link.counters()
            m = v.migrate(h, run, ln)
            if m["status"] != "completed":
                raise fb.BenchError(f"{frm} -> {to}: {m['status']}")
            dp, dser = procs[to]
            if not dser.wait_for(rb"^hb ", fb.FIRST_HB_TIMEOUT, alive=dp.alive):
                raise fb.BenchError(f"no heartbeat at {to}")
            time.sleep(1.0)
            c1 = link.counters()
            trips.append({"wire": c1["total"] - c0["total"], "vmm": m.get("vmm_bytes"),
                          "ms": 1000 * (m["t1"] - m["t0"]), "raw": m.get("raw") or {}})
            sp = procs[frm][0]
            if vmm == "ferry":
                sp.wait(fb.EXIT_TIMEOUT)
            else:
                qemu_quit(ctl[frm], sp)
            if n == 0:
                fsc.ferry_args = ()
                if vmm == "ferry" and not os.path.exists(basefile):
                    raise fb.BenchError("A kept no base file")
                time.sleep(BASE_STAY_S)         # the guest rewrites its working set at B
        there, back = trips
        rec["there_mib"], rec["back_mib"] = there["wire"] / MiB, back["wire"] / MiB
        rec["there_vmm_mib"] = there["vmm"] / MiB if there["vmm"] else None
        rec["back_vmm_mib"] = back["vmm"] / MiB if back["vmm"] else None
        rec["back_over_there"] = back["wire"] / there["wire"] if there["wire"] else None
        rec["there_ms"], rec["back_ms"] = there["ms"], back["ms"]
        rec["base_pages"] = back["raw"].get("base-pages")
        bad = guest_bad(*(s for _, s in procs.values()))
        if bad:
            raise fb.BenchError(bad)
        rec["status"] = "completed"
    finally:
        for k, (p, _) in procs.items():
            (ferry_quit if vmm == "ferry" else qemu_quit)(ctl[k], p)
            p.kill()
        unlink(basefile)


# ---- running, summary, report -----------------------------------------------------------

DRIVERS = {"save": run_save, "snapshot": run_snapshot}
LINKED = {"replicate": run_replicate, "base": run_base}     # these need the loopback link

METRICS = {     # kind: [(key, label, digits)]
    "save": [("save_ms", "save, harness (ms)", 0),
             ("restore_ms", "restore, eager, to first hb (ms)", 0),
             ("save_restore_ms", "save + restore (ms)", 0),
             ("lazy_ms", "restore --lazy, to first hb (ms)", 1),
             ("lazy_all_ms", "lazy: every page in, ferry's log (ms)", 0),
             ("vmm_save_ms", "save, VMM-reported (ms)", 0),
             ("file_mib", "file size (MiB)", 1),
             ("file_alloc_mib", "file, allocated on disk (MiB)", 1)],
    "snapshot": [("rate_base", "work rate without (M/s)", 2),
                 ("rate_snap", "work rate during snapshot (M/s)", 2),
                 ("slowdown_pct", "slowdown during snapshot (%)", 1),
                 ("rate_after", "work rate after (M/s)", 2),
                 ("snapshot_ms", "snapshot, harness (ms)", 0),
                 ("downtime_ms", "guest paused, VMM-reported (ms)", 1),
                 ("write_faults", "writes that waited (ferry)", 0),
                 ("file_mib", "file size (MiB)", 1)],
    "replicate": [("rate_base", "work rate unreplicated (M/s)", 2)] +
                 [m for iv in INTERVALS_MS for m in (
                     (f"rate_pct_{iv}", f"{iv} ms: work rate, % of unreplicated", 1),
                     (f"mibs_{iv}", f"{iv} ms: replication MiB/s (epochs)", 1),
                     (f"wire_mibs_{iv}", f"{iv} ms: MiB/s on the link", 1),
                     (f"epochs_s_{iv}", f"{iv} ms: epochs a second", 1),
                     (f"pause_ms_{iv}", f"{iv} ms: guest paused per epoch (avg ms)", 2),
                     (f"init_ms_{iv}", f"{iv} ms: initial copy (ms)", 0))] +
                 [("failover_ms", "failover: kill -9 to first hb (ms)", 0),
                  ("failover_outage_ms", "failover: last hb to first hb (ms)", 0)],
    "base": [("there_mib", "A -> B bytes on the wire (MiB)", 1),
             ("back_mib", "B -> A bytes on the wire (MiB)", 1),
             ("back_over_there", "B -> A over A -> B", 3),
             ("there_vmm_mib", "A -> B, VMM-reported (MiB)", 1),
             ("back_vmm_mib", "B -> A, VMM-reported (MiB)", 1),
             ("base_pages", "pages from the base (ferry)", 0),
             ("there_ms", "A -> B, harness (ms)", 0),
             ("back_ms", "B -> A, harness (ms)", 0)],
}
KEYS = sorted({k for ms in METRICS.values() for k, *_ in ms} |
              {"file_bytes", "file_alloc_bytes", "restore_seq_jump", "lazy_seq_jump",
               "pause_max_ms_25", "pause_max_ms_50", "pause_max_ms_100", "rate_25", "rate_50",
               "rate_100", "unsupported"})


def support(sc, vmm_names):
    """{vmm: None if it runs sc, else why not}."""
    out = {}
    for v in vmm_names:
        if v not in sc.vmms:
            out[v] = NO_REPLICATION
        elif v == "qemu" and not fb.Qemu.available():
            out[v] = "n/a (QEMU not installed)"
        elif v == "ferry" and not os.access(fb.FERRY, os.X_OK):
            out[v] = "n/a (ferry not built)"
        else:
            out[v] = None
    return out


def run_all(h, scenarios, vmm_names, repeat, records):
    """Every save scenario, VMMs alternating first; returns {name: support}."""
    sup_all = {}
    link = None
    try:
        for sc in scenarios:
            sup = sup_all[sc.name] = support(sc, vmm_names)
            able = [v for v in vmm_names if sup[v] is None]
            if not able:
                continue
            log(f"{sc.name}: {sc.about}")
            if sc.kind in LINKED and link is None:
                link = fb.LINKS["loopback"]()
                link.setup(h)
            for rep in range(repeat):
                for vmm in (able if rep % 2 == 0 else list(reversed(able))):
                    rec = {"scenario": sc.name, "mode": "save", "vmm": vmm, "rep": rep,
                           "link": "loopback" if sc.kind in LINKED else "file",
                           "mem_mib": sc.mem_mib, "cmdline": sc.cmdline, "status": "error",
                           "error": ""}
                    try:
                        if sc.kind in LINKED:
                            LINKED[sc.kind](h, sc, vmm, rep, rec, link)
                        else:
                            DRIVERS[sc.kind](h, sc, vmm, rep, rec)
                    except (fb.BenchError, subprocess.TimeoutExpired, OSError,
                            KeyError, TypeError, ValueError) as e:
                        # a missing field in a VMM's answer ends this run, not the bench
                        rec["error"] = f"{type(e).__name__}: {e}" if not isinstance(
                            e, fb.BenchError) else str(e)
                    for k in ("file", "file_alloc"):
                        if rec.get(f"{k}_bytes") is not None:
                            rec[f"{k}_mib"] = rec[f"{k}_bytes"] / MiB
                    records.append(rec)
                    what = ", ".join(f"{lab} {fb.fmt(rec.get(k), d)}"
                                     for k, lab, d in METRICS[sc.kind][:4])
                    log(f"  {sc.name} {vmm} #{rep}: {rec['status']}: {what}"
                        + (f" [{rec['error']}]" if rec.get("error") else ""))
    finally:
        if link:
            link.teardown(h)
    return sup_all


def log(msg):
    fb.log(msg)


def summarize(records, scenarios, sup_all):
    out = {}
    for sc in scenarios:
        mine = [r for r in records if r["scenario"] == sc.name and r.get("mode") == "save"]
        s = out[sc.name] = {"_support": sup_all.get(sc.name, {}), "_runs": {}, "_unsupported": {}}
        for v in ("ferry", "qemu"):
            rs = [r for r in mine if r["vmm"] == v]
            s["_runs"][v] = (sum(1 for r in rs if r.get("status") == "completed"), len(rs))
            s["_unsupported"][v] = next((r["unsupported"] for r in rs if r.get("unsupported")), None)
        for key, *_ in METRICS[sc.kind]:
            s[key] = {v: fb.median(r.get(key) for r in mine if r["vmm"] == v
                                   and r.get("status") == "completed") for v in ("ferry", "qemu")}
    return out


def _ratio(a, b):
    return a / b if a is not None and b else None


def goals(sc, s, p):
    """Issue 14's goals (information only)."""
    f = {k: v["ferry"] for k, v in s.items() if not k.startswith("_")}
    q = {k: v["qemu"] for k, v in s.items() if not k.startswith("_")}
    chk = fb.check
    p("   issue 14 goals (ferry; information only):")
    if sc.kind == "save":
        r = _ratio(f["save_restore_ms"], q["save_restore_ms"])
        p(f"     {chk('<=', r, 0.5):<5} save + restore <= 0.5x QEMU's   (ferry/qemu {fb.fmt(r, 2)}; "
          f"save {fb.fmt(_ratio(f['save_ms'], q['save_ms']), 2)}, restore "
          f"{fb.fmt(_ratio(f['restore_ms'], q['restore_ms']), 2)})")
        p(f"     {chk('<=', f['lazy_ms'], 50):<5} lazy restore to first heartbeat <= 50 ms   "
          f"(ferry {fb.fmt(f['lazy_ms'])} ms; over eager {fb.fmt(_ratio(f['lazy_ms'], f['restore_ms']), 3)},"
          f" over QEMU's restore {fb.fmt(_ratio(f['lazy_ms'], q['restore_ms']), 3)})")
    elif sc.kind == "snapshot":
        why = s["_unsupported"]["qemu"]
        p(f"     slowdown during the snapshot: ferry {fb.fmt(f['slowdown_pct'])} %, QEMU "
          + (f"{fb.fmt(q['slowdown_pct'])} %" if not why else f"n/a: {why}")
          + f"; snapshot ferry/qemu {fb.fmt(_ratio(f['snapshot_ms'], q['snapshot_ms']), 2)} in time")
    elif sc.kind == "replicate":
        p("     work rate under replication, % of unreplicated: " +
          ", ".join(f"{iv} ms {fb.fmt(f[f'rate_pct_{iv}'])} %" for iv in INTERVALS_MS) +
          f"; failover outage {fb.fmt(f['failover_outage_ms'], 0)} ms (standby's default "
          "--failover-timeout 1 s)")
    elif sc.kind == "base":
        r = _ratio(f["back_mib"], q["back_mib"])
        p(f"     {chk('<=', r, 0.1):<5} A -> B -> A: bytes back <= 0.1x QEMU's   (ferry/qemu "
          f"{fb.fmt(r, 3)}; ferry back/there {fb.fmt(f['back_over_there'], 3)}, QEMU "
          f"{fb.fmt(q['back_over_there'], 3)})")


def report(summ, scenarios, lines):
    def p(s=""):
        lines.append(s)
        print(s)

    for sc in scenarios:
        s = summ[sc.name]
        why = {v: s["_support"].get(v, "not selected (--vmm)") for v in ("ferry", "qemu")}
        for v in ("ferry", "qemu"):
            if not why[v] and s["_unsupported"][v] and not s["_runs"][v][0]:
                why[v] = "n/a (see below)"
        fw = 10
        qw = max(10, len(why["qemu"] or ""))
        p()
        p(f"== {sc.name} (save): {sc.mem_mib} MiB, 1 vCPU, \"{sc.cmdline}\"")
        p(f"   {sc.about}")
        if sc.kind in ("save", "snapshot"):
            p("   files on the host's root file system, each synced (ferry by itself; QEMU: `sync FILE` "
              "after cat), read back from the page cache")

        p(fb.runs_ok_line(s, why))
        p(f"   {'metric':<42} {'ferry':>{fw}} {'qemu':>{qw}} {'ferry/qemu':>11}")
        for key, label, digits in METRICS[sc.kind]:
            f, q = s[key]["ferry"], s[key]["qemu"]
            qcell = why["qemu"] or fb.fmt(q, digits)
            fcell = why["ferry"] or fb.fmt(f, digits)
            r = _ratio(f, q) if not why["qemu"] and not why["ferry"] else None
            p(f"   {label:<42} {fcell:>{fw}} {qcell:>{qw}} {fb.fmt(r, 2):>11}")
        for v in ("ferry", "qemu"):
            if s["_unsupported"][v]:
                p(f"   {v}: {s['_unsupported'][v]}")
        if any(s["_runs"][v][0] for v in ("ferry", "qemu")):
            goals(sc, s, p)


def write_summary_csv(summ, scenarios, path):
    with open(path, "a", newline="") as f:
        w = csv.writer(f)
        for sc in scenarios:
            s = summ[sc.name]
            whyf = s["_support"].get("ferry", "not selected (--vmm)")
            whyq = s["_support"].get("qemu", "not selected (--vmm)") or s["_unsupported"]["qemu"]
            ok, n = s["_runs"]["ferry"]
            qok, qn = s["_runs"]["qemu"]
            w.writerow([sc.name, "save", "runs_ok", whyf or f"{ok}/{n}", f"{qok}/{qn}", ""])
            for key, *_ in METRICS[sc.kind]:
                fv, qv = s[key]["ferry"], s[key]["qemu"]
                w.writerow([sc.name, "save", key, "" if fv is None else f"{fv:.3f}",
                            (whyq if whyq and qv is None else "" if qv is None else f"{qv:.3f}"),
                            f"{fv / qv:.3f}" if fv is not None and qv else ""])


def selftest(want):
    """The work-rate arithmetic on made-up serial lines (no KVM needed)."""
    ser = types.SimpleNamespace(cv=threading.Condition(), lines=[])
    # arrivals every 0.1 s, 1000 units per 100 ms of guest time, but 100
    # only between guest 0.5 s and 0.7 s (a stall)
    units = 0
    for k in range(11):
        ser.lines.append((10.0 + k / 10, f"probe: work {units} at {k * 100000} us".encode()))
        ser.lines.append((10.0 + k / 10 + 0.01, f"hb {k}".encode()))
        units += 100 if k in (5, 6) else 1000
    want(abs(work_rate(ser, 10.0, 10.5) - 10000) < 1e-6, f"rate before: {work_rate(ser, 10.0, 10.5)}")
    want(abs(work_rate(ser, 10.5, 10.7) - 1000) < 1e-6, f"rate in the stall: {work_rate(ser, 10.5, 10.7)}")
    # a window that ends between two lines reaches the next one
    want(abs(work_rate(ser, 10.5, 10.65) - 1000) < 1e-6, "a window between lines")
    want(work_rate(ser, 9.0, 10.5) is None and work_rate(ser, 10.5, 12.0) is None,
         "a window beyond the lines has no rate")
    kinds = {s.kind for s in SAVE_SCENARIOS}
    want(kinds == {"save", "snapshot", "replicate", "base"} and
         all(k in METRICS and (k in DRIVERS or k in LINKED) for k in kinds), f"kinds {kinds}")
    want(all(f"report={REPORT_EVERY}" in s.cmdline for s in SAVE_SCENARIOS
             if s.kind in ("snapshot", "replicate")), "a rate scenario without report=")
