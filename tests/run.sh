#!/usr/bin/env bash
# Runs every test and prints one closing line: "N passed, N failed, N skipped".
#   $BUILD/tests/test_*   cmocka binaries (tests/unit, tests/kvm)
#   tests/system/*.sh     end-to-end scripts that run ferry and QEMU
# A test exits 0 on success, 77 to skip (with its reason on stdout), else fails.
# TESTS=pattern limits the run to tests whose name contains the pattern;
# TESTS="p1 p2" to those whose name contains any of them.
#
# Tests run JOBS at a time (default 2); each result line is printed as the
# test ends, with its log's tail when it failed.  A system test with a line
# "# serial: WHY" (timing-sensitive, or it needs the whole machine) runs alone:
# it waits until nothing else runs, and nothing starts beside it.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
JOBS=${JOBS:-2}
export BUILD
LOGDIR=$BUILD/test-logs
mkdir -p "$LOGDIR"
[[ $JOBS =~ ^[1-9][0-9]*$ ]] || { echo "JOBS must be a positive number, not '$JOBS'" >&2; exit 64; }

# What the system tests run and drive ('make test-deps' builds it all; make
# check does first): without it every test would fail on its own, unclearly.
missing=()
for f in "$BUILD/ferry-san" "$BUILD/probe.elf" tests/tools/*.c; do
	[[ $f == *.c ]] && f=$BUILD/tools/$(basename "$f" .c)
	[[ -e $f ]] || missing+=("$f")
done
if ((${#missing[@]})); then
	echo "missing ${missing[*]}: build them with 'make test-deps' (make check does)" >&2
	exit 2
fi

pass=0 fail=0 skip=0
failed=()
declare -A running=()	# pid -> test name
declare -A started=()	# pid -> $SECONDS at its start

# The result of one ended test, from its exit status.
report() {
	local name=$1 rc=$2 t=$3 log=$LOGDIR/$1.log
	if ((rc == 0)); then
		pass=$((pass + 1)); printf 'PASS  %-40s %3ds\n' "$name" "$t"
		# cmocka passes a binary whose cases skipped: say which, and why.
		grep -h '^\[  SKIPPED \] test_' "$log" 2>/dev/null | sort -u | while read -r _ _ _ c; do
			printf '      (skipped %s: %s)\n' "$c" \
				"$(grep -m1 -oE '(SKIP|skipped)[: ].*' "$log" | cut -c1-100)"
		done
	elif ((rc == 77)); then
		skip=$((skip + 1)); printf 'SKIP  %-40s %s\n' "$name" "$(tail -n 1 "$log")"
	else
		fail=$((fail + 1)); failed+=("$name")
		printf 'FAIL  %-40s %3ds (exit %d, log %s)\n' "$name" "$t" "$rc" "$log"
		tail -n 30 "$log" | sed 's/^/      | /'
	fi
}

# Wait for one running test to end and report it.
reap_one() {
	local pid rc
	# wait -n -p needs bash 5.1; each test is bounded by timeout(1), so this ends.
	wait -n -p pid "${!running[@]}"
	rc=$?
	[[ -n ${pid:-} && -n ${running[$pid]:-} ]] || return 0
	report "${running[$pid]}" "$rc" "$((SECONDS - ${started[$pid]}))"
	unset "running[$pid]" "started[$pid]"
}

# Whether TESTS (blank-separated patterns) picks test $1; no TESTS picks all.
picked() {
	local p pats
	[[ -z ${TESTS:-} ]] && return 0
	read -ra pats <<<"$TESTS"
	for p in "${pats[@]}"; do [[ $1 == *"$p"* ]] && return 0; done
	return 1
}

# Start a test once a slot is free (all slots when it is serial).
start_one() {
	local name=$1 serial=$2; shift 2
	picked "$name" || return
	local limit=$JOBS
	((serial)) && limit=1
	while ((${#running[@]} >= limit)); do reap_one; done
	timeout -k 10 600 "$@" >"$LOGDIR/$name.log" 2>&1 </dev/null &
	running[$!]=$name
	started[$!]=$SECONDS
	# A serial test has the machine to itself until it ends.
	((serial)) && reap_one
}

is_serial() { grep -qE '^# serial(:|$)' "$1"; }

# Serial tests first, each alone; then the other system tests (the slow
# ones), so that the short cmocka binaries fill the gaps at the end.
for pass_serial in 1 0; do
	for t in tests/system/*.sh; do
		[[ -x $t ]] || continue
		s=0; is_serial "$t" && s=1
		((s == pass_serial)) && start_one "$(basename "$t" .sh)" "$s" "$t"
	done
done
for t in "$BUILD"/tests/test_*; do
	[[ -x $t ]] && start_one "$(basename "$t")" 0 "$t"
done
while ((${#running[@]})); do reap_one; done

echo
((fail)) && echo "failed: ${failed[*]}"
echo "$pass passed, $fail failed, $skip skipped"
((fail == 0))
