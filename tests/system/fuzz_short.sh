#!/usr/bin/env bash
# A short libFuzzer pass of every fuzz target over its kept corpus
# (tests/fuzz/seeds: every seed is run, then a few seconds of mutations),
# about 40 s in all; make fuzz and make fuzz-long run them longer.  A
# crash, leak, hang or sanitizer report fails the test; the input that did
# it is kept in $BUILD/fuzz/NAME-crash-*.  Without /dev/kvm fuzz_incoming
# runs on machines with no VM behind them (tests/fuzz/README.md).
. "$(dirname "$0")/lib.sh"
ran=0
for f in "$BUILD"/fuzz/fuzz_*; do
	[ -x "$f" ] || continue
	n=$(basename "$f")
	case $n in
	fuzz_incoming|fuzz_standby)
		limits="-runs=2000 -max_total_time=7" ;;
	*)	limits="-runs=20000 -max_total_time=4" ;;
	esac
	mkdir -p "$T/corpus-$n"
	# shellcheck disable=SC2086
	"$f" -max_len=65536 -timeout=20 -rss_limit_mb=4096 -print_final_stats=1 $limits \
		-artifact_prefix="$BUILD/fuzz/$n-" "$T/corpus-$n" "tests/fuzz/seeds/$n" >"$T/$n.log" 2>&1 ||
		{ tail -n 60 "$T/$n.log"; fail "$n found a problem"; }
	log "$n: $(grep -E '^stat::number_of_executed_units' "$T/$n.log")"
	ran=$((ran + 1))
done
[ "$ran" -gt 0 ] || fail "no fuzz target was built"
echo "$ran fuzz target(s) ran clean"
