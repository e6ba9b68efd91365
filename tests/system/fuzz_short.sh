#!/usr/bin/env bash
# A short libFuzzer run of every fuzz target (make fuzz runs them long):
# seeded from tests/fuzz/seeds, bounded in runs and time.  A crash, leak or
# sanitizer report fails the test; the input that did it is kept in
# $BUILD/fuzz/NAME-crash-*.
. "$(dirname "$0")/lib.sh"
require_kvm
ran=0
for f in "$BUILD"/fuzz/fuzz_*; do
	[ -x "$f" ] || continue
	n=$(basename "$f")
	mkdir -p "$T/corpus"
	"$f" -max_len=65536 -timeout=20 -rss_limit_mb=4096 -runs=2000 -max_total_time=30 \
		-artifact_prefix="$BUILD/fuzz/$n-" "$T/corpus" "tests/fuzz/seeds/$n" >"$T/$n.log" 2>&1 ||
		{ tail -n 60 "$T/$n.log"; fail "$n found a problem"; }
	log "$n: $(grep -E '^stat::number_of_executed_units' "$T/$n.log")"
	ran=$((ran + 1))
done
[ "$ran" -gt 0 ] || fail "no fuzz target was built"
echo "$ran fuzz target(s) ran clean"
