"""Issue 13's side-by-side rows for bench/ferrybench.py: QEMU's named
configurations, the codec and scale scenarios, and the report block that
sets ferry against every QEMU configuration of the same run.

QEMU runs in one or more named configurations (QEMU_CONFIGS): `qemu` is
its default, the others add migration capabilities and parameters over
QMP on both ends before `migrate`.  Each is a VMM of its own in the run
(its own column, its own records, `vmm` = the configuration's name).
"""

MiB = 1 << 20

# name: (capabilities, parameters), set on both ends (QEMU 7.2 names).
QEMU_CONFIGS = {
    "qemu": ((), {}),
    "qemu-multifd-zstd": (("multifd",), {"multifd-channels": 2, "multifd-compression": "zstd"}),
    "qemu-xbzrle": (("xbzrle",), {"xbzrle-cache-size": 64 * MiB}),
}
ALL_CONFIGS = tuple(QEMU_CONFIGS)

# ferry's options in the codec scenarios: its default --compress is none;
# these rows are about what a codec buys, so ferry runs adaptive there.
FERRY_CODEC = ("--compress", "adaptive")

# The 1 GiB loopback pre-copy scenarios of the bench (SCENARIOS) on which
# QEMU runs in every configuration (preset codecs, full).
LOOPBACK = ["idle-random-lo", "idle-mixed-lo", "memtouch-lo", "cpu-lo", "verify-lo"]
CODEC = ["idle-mixed-1g", "sparse-fast-1g"]
SCALE = ["scale-idle-1g", "scale-idle-4g", "scale-idle-8g",
         "scale-verify-1g", "scale-verify-4g", "scale-verify-8g", "scale-verify-4cpu-8g"]
PRESETS = {"codecs": LOOPBACK + CODEC, "scale": SCALE}
# Presets that run QEMU in all its configurations where a scenario asks.
ALL_CONFIG_PRESETS = ("codecs", "full")
# Guests this large or more: the destination is not preallocated (source
# and destination would not both fit in RAM with every page touched twice).
NO_PREALLOC_MIB = 8192

SPARSE = "workload=memtouch wss=48M pattern=sparse rate=1G fill=random period=10ms"
MIXED = "workload=idle fill=mixed period=10ms"


def scenarios(Scenario):
    """The new scenarios, built with ferrybench's Scenario class."""
    out = [
        # A guest whose RAM compresses (fill=mixed) over 1 Gbit/s: what a
        # codec saves on the wire and in time.
        Scenario("idle-mixed-1g", MIXED, link="veth-1g", ferry_args=FERRY_CODEC,
                 about="ferry --compress adaptive"),
        # A few bytes rewritten in each of many pages, faster than the link
        # drains whole pages: a delta against the copy last sent keeps up.
        Scenario("sparse-fast-1g", SPARSE, link="veth-1g", ferry_args=FERRY_CODEC,
                 precopy_timeout_s=30, converges=False,
                 about="few bytes of many pages dirtied above the link rate; ferry --compress adaptive"),
    ]
    for gib in (1, 4, 8):
        out.append(Scenario(f"scale-idle-{gib}g", "workload=idle fill=random period=10ms",
                            mem_mib=gib * 1024, about="scale"))
        out.append(Scenario(f"scale-verify-{gib}g", "workload=verify wss=64M fill=random period=10ms",
                            mem_mib=gib * 1024, about="scale"))
    out.append(Scenario("scale-verify-4cpu-8g", "workload=verify wss=1G fill=random period=10ms",
                        mem_mib=8192, vcpus=4, about="scale, 4 vCPUs, 1 GiB working set"))
    for sc in out:
        if sc.name.startswith("scale-"):
            sc.precopy_timeout_s = max(sc.precopy_timeout_s, 30 * sc.mem_mib // 1024)
    return out


def mark(all_scenarios):
    """The scenarios on which QEMU runs in every configuration."""
    for sc in all_scenarios:
        if sc.name in LOOPBACK + CODEC:
            sc.qemu_configs = ALL_CONFIGS


def prealloc(sc):
    """Whether the destination of this scenario may be preallocated."""
    return sc.mem_mib < NO_PREALLOC_MIB


def configs_for_run(preset, picked_vmms):
    """The QEMU configurations this run starts: those named with --vmm, or
    all of them in the presets that compare them (where a scenario asks),
    else QEMU's default only."""
    if picked_vmms:
        return [v for v in picked_vmms if v in QEMU_CONFIGS]
    return list(ALL_CONFIGS) if preset in ALL_CONFIG_PRESETS else ["qemu"]


def runs_on(sc, vmm_name):
    """Whether this VMM (ferry, or a QEMU configuration) runs the scenario."""
    if sc.vmms is not None:
        return vmm_name in sc.vmms
    if vmm_name in ("ferry", "qemu"):
        return True
    return vmm_name in getattr(sc, "qemu_configs", ())


# ---- report --------------------------------------------------------------------


def _fmt(v, digits=1):
    if v is None or (isinstance(v, float) and v != v):
        return "-"
    return f"{v:.{digits}f}"


def _ratio(a, b):
    return a / b if a is not None and b else None


def _verdict(value, limit):
    if value is None:
        return "n/a"
    return "PASS" if value <= limit else "FAIL"


def cpu_per_gib(s, v, mem_mib, less_vcpus=False):
    """The source's CPU per GiB of guest RAM; less_vcpus: less its vCPU
    threads' (the guest's own work, which runs on through ferry's short
    downtime and stops for QEMU's long one)."""
    cpu = (s.get("src_cpu_novcpu_s") or {}).get(v) if less_vcpus else s["src_cpu_s"].get(v)
    return cpu / (mem_mib / 1024) if cpu is not None else None


def _wire(s, v):
    """Median MiB on the wire: of the completed runs, else of the runs cancelled at the bound."""
    w = s["wire_mib"].get(v)
    if w is None:
        w = (s["_notconv"].get(v) or {}).get("wire_mib")
    return w


def report(summary, cases, links, p):
    """Per pre-copy case on which more than QEMU's default ran, or on
    loopback: every configuration side by side, and issue 13's goals
    (information only; each against the same run)."""
    for case in cases:
        if case.mode != "precopy":
            continue
        sc, s = case.sc, summary[case.label]
        configs = [c for c in ALL_CONFIGS if s["_runs"].get(c, (0, 0))[1]]
        loop = sc.link == "loopback" and not sc.tls and not sc.storage and not sc.net_client
        if not configs or not s["_runs"].get("ferry", (0, 0))[1] or (len(configs) < 2 and not loop
                                                                   and sc.name not in CODEC):
            continue
        p()
        p(f"== {case.label}: ferry against QEMU's configurations (medians, this run)")
        cols = ["ferry"] + configs
        p(f"   {'':<36} " + " ".join(f"{c:>17}" for c in cols))
        k = {v: s["_converged"].get(v, (0, 0)) for v in cols}
        p(f"   {'converged in bound (runs)':<36} " + " ".join(f"{f'{k[v][0]}/{k[v][1]}':>17}" for v in cols))
        rows = [("total time (ms, VMM)", lambda v: s["total_ms"].get(v), 0),
                ("downtime (ms, VMM)", lambda v: s["downtime_ms"].get(v), 1),
                ("on the wire (MiB)", lambda v: _wire(s, v), 0),
                ("source CPU (s)", lambda v: s["src_cpu_s"].get(v), 2),
                ("source CPU per GiB of guest RAM (s)", lambda v: cpu_per_gib(s, v, sc.mem_mib), 2),
                ("  the same less vCPU threads (s)", lambda v: cpu_per_gib(s, v, sc.mem_mib, True), 2)]
        for label, get, d in rows:
            p(f"   {label:<36} " + " ".join(f"{_fmt(get(v), d):>17}" for v in cols))
        p("   issue 13 goals (ferry; information only):")
        f_cpu, q_cpu = cpu_per_gib(s, "ferry", sc.mem_mib), cpu_per_gib(s, "qemu", sc.mem_mib)
        if loop:
            r = _ratio(f_cpu, q_cpu)
            p(f"     {_verdict(r, 1.0):<5} source CPU per GiB <= 1.0x QEMU default   (ferry/qemu {_fmt(r, 2)})")
            done = {c: s["total_ms"].get(c) for c in configs if s["total_ms"].get(c) is not None}
            if done:
                best = min(done, key=done.get)
                r = _ratio(s["total_ms"].get("ferry"), done[best])
                p(f"     {_verdict(r, 0.9):<5} total time <= 0.9x QEMU's best configuration "
                  f"({best})   (ferry/{best} {_fmt(r, 2)})")
        if sc.name == "idle-mixed-1g":
            for c, limit in (("qemu", 0.5), ("qemu-multifd-zstd", 0.8)):
                r = _ratio(_wire(s, "ferry"), _wire(s, c))
                p(f"     {_verdict(r, limit):<5} bytes on the wire <= {limit}x {c}   (ferry/{c} {_fmt(r, 2)})")
            r = _ratio(s["total_ms"].get("ferry"), s["total_ms"].get("qemu"))
            p(f"     {_verdict(r, 0.6):<5} total time <= 0.6x QEMU default   (ferry/qemu {_fmt(r, 2)})")
        if sc.name == "sparse-fast-1g":
            fk, qk = k["ferry"], k.get("qemu", (0, 0))
            ok = fk[1] and fk[0] == fk[1] and qk[1] and qk[0] < qk[1]
            p(f"     {'PASS' if ok else 'FAIL':<5} ferry converges in pre-copy where QEMU default does not "
              f"  (ferry {fk[0]}/{fk[1]}, qemu {qk[0]}/{qk[1]})")
            r = _ratio(_wire(s, "ferry"), _wire(s, "qemu-xbzrle"))
            p(f"     {_verdict(r, 0.8):<5} bytes on the wire <= 0.8x qemu-xbzrle   "
              f"(ferry/qemu-xbzrle {_fmt(r, 2)}; a run cancelled at the bound counts what it sent until then)")


# ---- selftest ------------------------------------------------------------------


def selftest(Qemu, Ferry, FakeQMP, scenarios_, h, link, tmp, want):
    """ferrybench --selftest: each QEMU configuration's QMP sequence on
    both ends (against ferrybench's fake QMP), which VMM runs which
    scenario, and the 8 GiB destinations left unpreallocated."""
    import os
    import types
    byname = {sc.name: sc for sc in scenarios_}
    sc = byname["idle-mixed-1g"]
    want(sc.ferry_args == FERRY_CODEC and all(runs_on(sc, c) for c in ALL_CONFIGS),
         "idle-mixed-1g: ferry adaptive, every QEMU configuration")
    want(not runs_on(byname["idle-random-1g"], "qemu-xbzrle") and runs_on(byname["idle-random-1g"], "qemu")
         and runs_on(byname["verify-lo"], "qemu-multifd-zstd")
         and not runs_on(byname["hotcold-address-1g"], "qemu"), "runs_on")
    want(configs_for_run("quick", None) == ["qemu"] and configs_for_run("codecs", None) == list(ALL_CONFIGS)
         and configs_for_run("full", ["ferry", "qemu-xbzrle"]) == ["qemu-xbzrle"], "configs_for_run")
    want(not prealloc(byname["scale-idle-8g"]) and prealloc(byname["scale-verify-4g"]), "prealloc")
    for name, pre in (("scale-idle-8g", False), ("scale-verify-4cpu-8g", False), ("scale-idle-4g", True)):
        run = types.SimpleNamespace(sc=byname[name], mode="precopy", nic=None, storage=None,
                                    src_ctl="s", dst_ctl="d")
        qd, fd = Qemu().start_dst(h, run, link), Ferry().start_dst(h, run, link)
        want(("-mem-prealloc" in qd) == pre and ("--prealloc" in fd) == pre,
             f"{name}: destinations preallocated: {qd}, {fd}")
    want(set(PRESETS["scale"]) == {s for s in byname if s.startswith("scale-")}, "preset scale")

    class Completes(FakeQMP):
        EVENTS = {"migrate": ("MIGRATION", {"status": "completed"})}

    for name, (caps, params) in QEMU_CONFIGS.items():
        run = types.SimpleNamespace(sc=sc, mode="precopy", nic=None, storage=None,
                                    src_ctl=os.path.join(tmp, f"{name}-src.qmp"),
                                    dst_ctl=os.path.join(tmp, f"{name}-dst.qmp"))
        q = Qemu(name)
        want(q.name == name, f"{name}: VMM name {q.name}")
        qd = q.start_dst(h, run, link)
        want(qd[-2:] == ["-incoming", "defer" if caps else f"tcp:{link.vmm_listen[0]}:{link.vmm_listen[1]}"],
             f"{name}: destination {qd[-2:]}")
        fdst, fsrc = Completes(run.dst_ctl), Completes(run.src_ctl)
        q.prepare_dst(h, run, link)
        if caps:
            want(fdst.names() == ["qmp_capabilities", "migrate-set-capabilities", "migrate-set-parameters",
                                  "migrate-incoming"], f"{name}: destination QMP {fdst.names()}")
            args = dict(fdst.commands)
            want({c["capability"] for c in args["migrate-set-capabilities"]["capabilities"]} == set(caps)
                 and args["migrate-set-parameters"] == params, f"{name}: destination's configuration {args}")
        else:
            want(fdst.names() == [], f"{name}: destination QMP {fdst.names()}")
        res = q.migrate(h, run, link)
        args = dict(fsrc.commands)
        got = {c["capability"] for c in args["migrate-set-capabilities"]["capabilities"]}
        want(got == {"events", *caps}, f"{name}: source capabilities {got}")
        want(all(args["migrate-set-parameters"].get(k) == v for k, v in params.items())
             and "max-bandwidth" in args["migrate-set-parameters"], f"{name}: source parameters {args}")
        want(res["status"] == "completed", f"{name}: {res}")
