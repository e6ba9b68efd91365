#!/usr/bin/env bash
# Runs every test and prints one closing line: "N passed, N failed, N skipped".
#   $BUILD/tests/test_*   cmocka binaries (tests/unit, tests/kvm)
#   tests/system/*.sh     end-to-end scripts that run ferry and QEMU
# A test exits 0 on success, 77 to skip (with its reason on stdout), else fails.
# TESTS=pattern limits the run to tests whose name contains the pattern.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
export BUILD
LOGDIR=$BUILD/test-logs
mkdir -p "$LOGDIR"

pass=0 fail=0 skip=0
failed=()

run_one() {
	local name=$1; shift
	[[ -n ${TESTS:-} && $name != *"$TESTS"* ]] && return
	local log=$LOGDIR/$name.log start=$SECONDS rc
	timeout -k 10 600 "$@" >"$log" 2>&1 </dev/null
	rc=$?
	local t=$((SECONDS - start))
	if ((rc == 0)); then
		pass=$((pass + 1)); printf 'PASS  %-40s %3ds\n' "$name" "$t"
	elif ((rc == 77)); then
		skip=$((skip + 1)); printf 'SKIP  %-40s %s\n' "$name" "$(tail -n 1 "$log")"
	else
		fail=$((fail + 1)); failed+=("$name")
		printf 'FAIL  %-40s %3ds (exit %d, log %s)\n' "$name" "$t" "$rc" "$log"
		tail -n 30 "$log" | sed 's/^/      | /'
	fi
}

for t in "$BUILD"/tests/test_*; do
	[[ -x $t ]] && run_one "$(basename "$t")" "$t"
done
for t in tests/system/*.sh; do
	[[ -x $t ]] && run_one "$(basename "$t" .sh)" "$t"
done

echo
((fail)) && echo "failed: ${failed[*]}"
echo "$pass passed, $fail failed, $skip skipped"
((fail == 0))
