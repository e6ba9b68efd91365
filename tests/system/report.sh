#!/usr/bin/env bash
# ferry report: a stats file, crafted here with the columns ferry writes
# (ferry report --columns), read back as a summary and drawn as a PNG;
# hostile and malformed files get exit 65, a missing one 66, a missing
# gnuplot a clear message and 69.  Needs no /dev/kvm.
. "$(dirname "$0")/lib.sh"

command -v python3 >/dev/null || skip "python3 is not installed"
FERRY=$(realpath "$FERRY")	# the hostile-file check runs in $T

"$FERRY" report --columns >"$T/columns"
for col in time-s status throughput-bytes-per-second dirty-pages-rate memory-remaining \
	iteration bandwidth-limit downtime-ms downtime-pause-ms downtime-commit-ms \
	codec-zero-pages codec-raw-bytes-out codecs-negotiated; do
	tr ',' '\n' <"$T/columns" | grep -qx -e "$col" || fail "--columns lacks $col"
done

# gen.py OUT [key=value...]: one migration of a 1 GiB guest capped at
# 100 MiB/s, 13 rows a second apart, 3 passes, zero/raw/lz4 pages,
# downtime 42.5 ms in phases.  key=value overrides a value in every row
# (a column ferry does not write is appended); drop=COL leaves a column out;
# channels=1 adds two channel-N-bytes columns; append=1 appends.
cat >"$T/gen.py" <<'PY'
import csv, sys
out, args = sys.argv[1], dict(a.split("=", 1) for a in sys.argv[3:])
cols = open(sys.argv[2]).read().strip().split(",")
cols = [c for c in cols if c != args.get("drop")]
extra = [k for k in args if k not in cols and k not in ("drop", "channels", "append")]
if args.get("channels"):
    extra += [c for c in ("channel-0-bytes", "channel-1-bytes") if c not in cols]
cols += extra
MiB, GiB = 1 << 20, 1 << 30
rows = []
for i in range(13):
    t = float(i)
    done = i == 12
    sent = min(i, 11) * 100 * MiB
    r = {c: "0" for c in cols}
    r.update({
        "time-s": "%.3f" % t, "status": "completed" if done else "active",
        "total-time-ms": "%.1f" % (12000.0 if done else t * 1000),
        "setup-time-ms": "3.5", "memory-total": str(GiB), "data-total": str(GiB + 8192),
        "data-processed": str(sent), "memory-processed": str(sent),
        "memory-remaining": str(0 if done else max(GiB - sent, 64 * MiB)),
        "throughput-bytes-per-second": str(0 if i == 0 else 100 * MiB - i * MiB),
        "dirty-pages-rate": str(1000 * i), "iteration": str(1 if i < 10 else 2 if i < 11 else 3),
        "pages-resent": "5000", "expected-downtime-ms": "%.1f" % (900 - 70 * i),
        "bandwidth-limit": str(100 * MiB), "verify": "false", "compress": "lz4",
        "codecs-negotiated": "zero,raw,lz4",
        "downtime-ms": "42.50" if done else "0",
    })
    if done:
        r.update({"downtime-pause-ms": "0.50", "downtime-final-sync-ms": "1.00",
                  "downtime-final-pages-ms": "20.00", "downtime-device-state-ms": "5.00",
                  "downtime-commit-ms": "12.00", "downtime-resume-ms": "4.00"})
    pages = i * 20000
    for name, share, ratio in (("zero", 5, 0), ("raw", 3, 1), ("lz4", 2, 0.5)):
        p = pages * share // 10
        r["codec-%s-pages" % name] = str(p)
        r["codec-%s-bytes-in" % name] = str(p * 4096)
        r["codec-%s-bytes-out" % name] = str(int(p * 4096 * ratio))
    r["channel-0-bytes"] = str(sent // 2)
    r["channel-1-bytes"] = str(sent // 2)
    for k, v in args.items():
        if k in cols:
            r[k] = v
    rows.append([r[c] for c in cols])
with open(out, "a" if args.get("append") else "w", newline="") as f:
    w = csv.writer(f, lineterminator="\n")
    w.writerow(cols)
    w.writerows(rows)
PY
gen() { local out=$1; shift; python3 "$T/gen.py" "$out" "$T/columns" "$@"; }

# expect STATUS PATTERN CMD...: CMD exits with STATUS and says PATTERN.
expect() {
	local want=$1 re=$2; shift 2
	local rc=0
	"$@" >"$T/out" 2>&1 || rc=$?
	[ "$rc" -eq "$want" ] || { cat "$T/out"; fail "'$*' exited $rc, want $want"; }
	[ -z "$re" ] || grep -qE -e "$re" "$T/out" || { cat "$T/out"; fail "'$*' did not say '$re'"; }
	! grep -q "Sanitizer" "$T/out" || { cat "$T/out"; fail "'$*' tripped a sanitizer"; }
	log "ok: ${*##*/} -> $rc"
}

# A PNG: its magic, and more than a few bytes.
is_png() {
	[ -s "$1" ] || fail "$1 is missing or empty"
	[ "$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] ||
		fail "$1 is not a PNG"
	[ "$(stat -c %s "$1")" -gt 10000 ] || fail "$1 is too small to hold a chart"
}

# --- the summary ----------------------------------------------------------
gen "$T/good.csv"
grep -q '"zero,raw,lz4"' "$T/good.csv" || fail "the crafted file does not quote codecs-negotiated"
"$FERRY" report "$T/good.csv" >"$T/summary" || { cat "$T/summary"; fail "report exited $?"; }
cat "$T/summary"
want() { grep -qxF -e "$1" "$T/summary" || fail "the summary lacks '$1'"; }
want "Migration:          1 of 1 in the file, completed, 13 rows over 12.0 s"
want "Total time:         12000.0 ms"
want "Passes:             3"
want "Data on the wire:   1.1 GiB"
want "Memory:             1.0 GiB, 1.1 GiB processed, 5000 pages re-sent"
want "Throughput:         mean 91.7 MiB/s, peak 99.0 MiB/s, cap 100.0 MiB/s"
want "Dirty rate:         peak 46.9 MiB/s"
want "Downtime:           42.50 ms"
want "  pause             0.50 ms"
want "  final-pages       20.00 ms"
want "  commit            12.00 ms"
want "  resume            4.00 ms"
want "Codec mix:          zero 50.0% raw 30.0% lz4 20.0% of 240000 pages"
want "  encoded           937.5 MiB -> 375.0 MiB (40.0%)"

# Two migrations appended to one file: the last by default, --migration N.
cp "$T/good.csv" "$T/two.csv"
gen "$T/two.csv" append=1 iteration=7
expect 0 "^Passes: +7$" "$FERRY" report "$T/two.csv"
expect 0 "2 of 2 in the file" "$FERRY" report "$T/two.csv"
expect 0 "^Passes: +3$" "$FERRY" report "$T/two.csv" --migration 1
expect 65 "holds 2 migrations, not 3" "$FERRY" report "$T/two.csv" --migration 3

# With --copy-storage the file has the disks' columns.
gen "$T/disk.csv" disk-total=$((4 << 30)) disk-processed=$((4 << 30)) disk-remaining=0
expect 0 "^Disks: +4.0 GiB, 4.0 GiB processed$" "$FERRY" report "$T/disk.csv"

# An older file without some columns: what is there is still reported.
gen "$T/old.csv" drop=bandwidth-limit
expect 0 "^Throughput: +mean 91.7 MiB/s, peak 99.0 MiB/s$" "$FERRY" report "$T/old.csv"

# --- usage and bad files --------------------------------------------------
expect 64 "need one STATS.csv" "$FERRY" report
expect 64 "Try 'ferry report --help'" "$FERRY" report "$T/good.csv" --png
expect 64 "bad --migration" "$FERRY" report "$T/good.csv" --migration 0
expect 0 "Usage: ferry report" "$FERRY" report --help
expect 66 "No such file" "$FERRY" report "$T/nonexistent.csv"

: >"$T/empty.csv"
expect 65 "empty file" "$FERRY" report "$T/empty.csv"
head -n 1 "$T/good.csv" >"$T/header-only.csv"
expect 65 "has a header but no rows" "$FERRY" report "$T/header-only.csv"
tail -n +2 "$T/good.csv" >"$T/no-header.csv"
expect 65 "line 1: no header" "$FERRY" report "$T/no-header.csv"
{ head -n 3 "$T/good.csv"; echo "1.0,active,5"; } >"$T/short-row.csv"
expect 65 "line 4 has 3 fields" "$FERRY" report "$T/short-row.csv"
gen "$T/word.csv" throughput-bytes-per-second=fast
expect 65 "line 2: column throughput-bytes-per-second holds something that is not a number" \
	"$FERRY" report "$T/word.csv"
gen "$T/downtime-word.csv" downtime-commit-ms=slow
expect 65 "column downtime-commit-ms" "$FERRY" report "$T/downtime-word.csv"
# Text in a column the report does not read (a key a later ferry adds) is fine.
gen "$T/new-key.csv" x-future-mode=fast
expect 0 "^Passes: +3$" "$FERRY" report "$T/new-key.csv"
gen "$T/inf.csv" iteration=inf
expect 65 "column iteration" "$FERRY" report "$T/inf.csv"
{ head -n 2 "$T/good.csv"; echo '3.0,"active'; } >"$T/open-quote.csv"
expect 65 "line 3: an unclosed quote" "$FERRY" report "$T/open-quote.csv"
head -c 3000 /bin/true >"$T/binary.csv"
expect 65 "line 1" "$FERRY" report "$T/binary.csv"
{ head -n 2 "$T/good.csv"; head -c 70000 /dev/zero | tr '\0' 7; echo; } >"$T/long.csv"
expect 65 "line 3 is too long" "$FERRY" report "$T/long.csv"
sed '1s/codec-raw-pages/codec-ra'"'"'w;system("id")-pages/' "$T/good.csv" >"$T/badname.csv"
expect 65 "line 1: column [0-9]+ of the header is not a column name" "$FERRY" report "$T/badname.csv"

# --- the chart --------------------------------------------------------------
mkdir "$T/nogp"
expect 69 "gnuplot is not installed" env PATH="$T/nogp" "$FERRY" report "$T/good.csv" --png "$T/x.png"
[ ! -e "$T/x.png" ] || fail "a PNG appeared without gnuplot"
command -v gnuplot >/dev/null || skip "gnuplot is not installed (scripts/deps.sh); the rest passed"

expect 0 "" "$FERRY" report "$T/good.csv" --png "$T/good.png"
is_png "$T/good.png"
[ ! -s "$T/out" ] || { cat "$T/out"; fail "--png alone printed something"; }
expect 0 "^Passes: +3$" "$FERRY" report "$T/good.csv" --png "$T/both.png" --text
is_png "$T/both.png"
gen "$T/chan.csv" channels=1
expect 0 "" "$FERRY" report "$T/chan.csv" --png "$T/chan.png"
is_png "$T/chan.png"
expect 0 "" "$FERRY" report "$T/disk.csv" --png "$T/disk.png"
is_png "$T/disk.png"
expect 0 "" "$FERRY" report "$T/old.csv" --png "$T/old.png" --bandwidth 100M
is_png "$T/old.png"
# Only time-s: every panel says it has nothing, and gnuplot still succeeds.
printf 'time-s\n0\n1\n' >"$T/bare.csv"
expect 0 "" "$FERRY" report "$T/bare.csv" --png "$T/bare.png"
is_png "$T/bare.png"
expect 73 "cannot write" "$FERRY" report "$T/good.csv" --png "$T/no/such/dir.png"

# Strings in the file that gnuplot would run if they reached its script.
cd "$T"
evil="x'; system(\"touch $T/pwned\"); print '\`touch $T/pwned2\`"
gen "$T/evil.csv" status="$evil" compress="$evil" codecs-negotiated="$evil" error="$evil"
grep -q pwned "$T/evil.csv" || fail "the hostile file lost its payload"
expect 0 "status unknown" "$FERRY" report "$T/evil.csv" --png "$T/evil.png" --text
is_png "$T/evil.png"
[ ! -e "$T/pwned" ] && [ ! -e "$T/pwned2" ] || fail "a string from the file ran in gnuplot"
log "all report checks passed"
