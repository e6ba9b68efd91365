# Shared helpers for tests/system/*.sh.  Source it; it sets -eu, makes a
# scratch directory and kills, on any exit, every process the test started.
set -eu
BUILD=${BUILD:-build}
FERRY=${FERRY:-$BUILD/ferry-san}
PROBE=${PROBE:-$BUILD/probe.elf}
# ASan: stop on the first error; leaks fail the run too.
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=0:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

T=$(mktemp -d "${TMPDIR:-/tmp}/ferry-test.XXXXXX")
PIDS=()

cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$T"
}
trap cleanup EXIT
# A signal (run.sh's timeout, Ctrl-C) must clean up too, then end the test.
trap 'exit 130' INT
trap 'exit 143' TERM

fail() { echo "FAIL: $*" >&2; exit 1; }
skip() { echo "skipped: $*"; exit 77; }
log() { echo "# $*"; }

require_kvm() {
	[ -r /dev/kvm ] && [ -w /dev/kvm ] || skip "/dev/kvm is not available"
}

# Start ferry in the background; its pid is left in FERRY_PID.
# Usage: start_ferry NAME ARGS...  (stdout+stderr go to $T/NAME.log)
start_ferry() {
	local name=$1; shift
	"$FERRY" run "$@" >"$T/$name.log" 2>&1 &
	FERRY_PID=$!
	PIDS+=("$FERRY_PID")
}

# Wait for a process to end, at most $2 seconds; sets RC to its exit status.
wait_exit() {
	local pid=$1 limit=$2 i
	for ((i = 0; i < limit * 10; i++)); do
		if ! kill -0 "$pid" 2>/dev/null; then
			RC=0
			wait "$pid" || RC=$?
			return 0
		fi
		sleep 0.1
	done
	fail "process $pid still running after ${limit}s"
}

# Wait until FILE has a line matching REGEX, at most SECS seconds.
wait_line() {
	local file=$1 re=$2 limit=$3 i
	for ((i = 0; i < limit * 10; i++)); do
		grep -qE "$re" "$file" 2>/dev/null && return 0
		sleep 0.1
	done
	echo "--- $file:"; tail -n 20 "$file" 2>/dev/null || true
	fail "no line matching '$re' in $file after ${limit}s"
}

# Number of heartbeat lines in FILE.
heartbeats() { grep -cE '^hb [0-9]+' "$1" 2>/dev/null || true; }

# Wait for the control socket to answer.
wait_control() {
	local sock=$1 i
	for ((i = 0; i < 100; i++)); do
		"$FERRY" status "$sock" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	fail "control socket $sock never answered"
}

RELAY=${RELAY:-$BUILD/tools/mig_relay}

# A free-looking TCP port on loopback: random, below the usual ephemeral
# range (32768-60999) so that no outgoing connection holds it; start_dest
# retries another when it is taken all the same.
random_port() { echo $((10000 + RANDOM % 22000)); }

# Start a source VM: start_source NAME VCPUS MEMORY CMDLINE [more ferry args].
# Its control socket is $T/NAME.ctl, serial $T/NAME.serial, pid in FERRY_PID.
start_source() {
	local name=$1 vcpus=$2 mem=$3 cmdline=$4; shift 4
	start_ferry "$name" --kernel "$PROBE" --vcpus "$vcpus" --memory "$mem" \
		--cmdline "$cmdline" --serial "file:$T/$name.serial" --control "$T/$name.ctl" "$@"
	wait_control "$T/$name.ctl"
	wait_line "$T/$name.serial" '^hb 3$' 30
}

# Start a destination: start_dest NAME URI [more ferry args]; pid in
# FERRY_PID, the URI it listens on in DEST_URI.  A tcp port that turns out
# to be taken (tests run in parallel; random_port only guesses) is replaced
# by another random one: migrate to $DEST_URI, not to the URI you passed.
start_dest() {
	local name=$1 uri=$2 try i; shift 2
	for ((try = 0; try < 8; try++)); do
		start_ferry "$name" --incoming "$uri" --serial "file:$T/$name.serial" \
			--control "$T/$name.ctl" "$@"
		DEST_URI=$uri
		case $uri in
		unix:*)
			for ((i = 0; i < 400; i++)); do
				[ -S "${uri#unix:}" ] && return 0
				kill -0 "$FERRY_PID" 2>/dev/null || break
				sleep 0.05
			done
			cat "$T/$name.log" 2>/dev/null
			fail "destination $name never listened on $uri" ;;
		tcp:*)
			for ((i = 0; i < 200; i++)); do
				grep -q "waiting for a migration" "$T/$name.log" 2>/dev/null && return 0
				kill -0 "$FERRY_PID" 2>/dev/null || break
				sleep 0.1
			done
			grep -qE "another process listens there|in use" "$T/$name.log" 2>/dev/null ||
				{ cat "$T/$name.log"; fail "destination $name never listened on $uri"; }
			wait "$FERRY_PID" 2>/dev/null || true
			log "$uri is taken; trying another port"
			uri=${uri%:*}:$(random_port) ;;
		*) return 0 ;;
		esac
	done
	fail "destination $name found no free tcp port"
}

# A JSON number or string field from a flat-ish JSON text (good enough for tests).
json_field() { sed -nE "s/.*\"$2\": *\"?([^\",}]*)\"?.*/\1/p" "$1" | head -n1; }

# The probe's disk workload (workload=disk), from its serial output:
# disk_gen FILE, the last generation it finished (0 before the first);
# wait_gen FILE N SECS, until one past N is done (a CORRUPT line ends the
# wait early); no_corrupt FILE..., fail if any has a CORRUPT line.
disk_gen() { sed -nE 's/^probe: disk generation ([0-9]+)$/\1/p' "$1" | tail -n1 | grep . || echo 0; }
wait_gen() {
	local file=$1 n=$2 limit=$3 end=$((SECONDS + $3))
	while ((SECONDS <= end)); do
		(($(disk_gen "$file") > n)) && return 0
		grep -qE '^CORRUPT' "$file" && break
		sleep 0.1
	done
	grep -v '^hb ' "$file" | tail -n 20
	fail "$file: no disk generation past $n after ${limit}s"
}
no_corrupt() { ! grep -qE '^CORRUPT' "$@" || { grep -hE '^CORRUPT' "$@"; fail "the guest saw corruption"; }; }

# Heartbeats on the destination go on past N: wait_beats FILE N.
wait_beats() { wait_line "$1" "^hb $2\$" "${3:-30}"; }

# The last heartbeat number in FILE.  A last line still being written
# ("hb 54" of "hb 540") does not count.
last_beat() {
	local s
	s=$(cat "$1" 2>/dev/null; printf x)
	s=${s%x}
	case $s in
	*$'\n') ;;
	*$'\n'*) s=${s%$'\n'*}$'\n' ;;
	*) s= ;;
	esac
	printf '%s' "$s" | sed -nE 's/^hb ([0-9]+)$/\1/p' | tail -n1
}

# No guest output at all in FILE (the guest never ran there).
assert_no_guest() {
	if [ -s "$1" ]; then cat "$1"; fail "the guest ran where it must not have ($1)"; fi
}

assert_no_sanitizer() {
	! grep -qE "Sanitizer|runtime error" "$@" || { cat "$@"; fail "a sanitizer complained"; }
}

# A verified migration of a fresh 1-vCPU, 128 MiB guest running CMDLINE to
# a destination listening on URI, once the guest has beaten ten times:
# `ferry migrate --verify --json` and the migrate args given, its report in
# $T/NAME.json; it must complete with a RAM digest.  The two VMs' pids in
# MIG_SRC and MIG_DST (their files $T/NAME-src.* and $T/NAME-dst.*).
# Usage: verified_migration NAME URI CMDLINE [migrate args...]
verified_migration() {
	local name=$1 uri=$2 cmdline=$3; shift 3
	start_dest "$name-dst" "$uri"
	MIG_DST=$FERRY_PID
	start_source "$name-src" 1 128M "$cmdline"
	MIG_SRC=$FERRY_PID
	# Let the workload's pages be written before the migration reads them.
	wait_line "$T/$name-src.serial" '^hb 10$' 30
	"$FERRY" migrate "$T/$name-src.ctl" "$DEST_URI" --verify --json "$@" \
		>"$T/$name.json" 2>"$T/$name.err" ||
		{ cat "$T/$name.json" "$T/$name.err" "$T/$name-dst.log"; fail "$name: migrate failed"; }
	[ "$(json_field "$T/$name.json" status)" = completed ] || fail "$name: not completed"
	json_field "$T/$name.json" ram-digest | grep -qE '^[0-9a-f]{16}$' || fail "$name: no verified digest"
}

# After verified_migration NAME: the source exits 0, the guest beats ten
# more times at the destination, which then quits with 0; no corruption
# seen by either guest, no sanitizer report.  Usage: verified_migration_end NAME
verified_migration_end() {
	local name=$1 first
	wait_exit "$MIG_SRC" 10
	[ "$RC" -eq 0 ] || fail "$name: source exit status $RC"
	wait_line "$T/$name-dst.serial" '^hb ' 10
	first=$(last_beat "$T/$name-dst.serial")
	wait_beats "$T/$name-dst.serial" "$((first + 10))"
	"$FERRY" quit "$T/$name-dst.ctl"
	wait_exit "$MIG_DST" 10
	[ "$RC" -eq 0 ] || fail "$name: destination exit status $RC"
	! grep -q CORRUPT "$T/$name-src.serial" "$T/$name-dst.serial" || fail "$name: guest saw corruption"
	assert_no_sanitizer "$T/$name-src.log" "$T/$name-dst.log"
}

# query-migrate of the VM behind control socket CTL, into $T/query.json
# (empty when it does not answer).
query_migrate() {
	"$FERRY" call "$1" query-migrate >"$T/query.json" 2>/dev/null || : >"$T/query.json"
}

# Poll CTL's query-migrate until its status matches the extended regex RE
# (whole word: "active|device"), at most SECS seconds.  The last answer
# stays in $T/query.json.  Usage: wait_migration CTL RE SECS
wait_migration() {
	local ctl=$1 re=$2 limit=$3 i st= end=$((SECONDS + $3))
	for ((i = 0; i < limit * 50 && SECONDS <= end; i++)); do
		query_migrate "$ctl"
		st=$(json_field "$T/query.json" status)
		[[ $st =~ ^($re)$ ]] && return 0
		sleep 0.02
	done
	cat "$T/query.json"
	fail "$ctl: migration status '$st', want '$re' after ${limit}s"
}

# Poll until query-migrate's numeric FIELD is at least MIN while a
# migration is running (a finished status belongs to the one before, until
# the new one starts), at most SECS seconds.  Usage: wait_migration_ge CTL FIELD MIN SECS
wait_migration_ge() {
	local ctl=$1 field=$2 min=$3 limit=$4 i v= st= end=$((SECONDS + $4))
	for ((i = 0; i < limit * 50 && SECONDS <= end; i++)); do
		query_migrate "$ctl"
		v=$(json_field "$T/query.json" "$field")
		st=$(json_field "$T/query.json" status)
		# A finished status is the last migration's until the new one starts.
		[[ $st =~ ^(completed|failed|cancelled|abandoned|none)$ ]] ||
			{ [ "${v:-0}" -ge "$min" ] 2>/dev/null && return 0; }
		sleep 0.02
	done
	cat "$T/query.json"
	fail "$ctl: $field is '$v' (status '$st'), want >= $min after ${limit}s"
}

# Poll until the live phase reached pass N: wait_iteration CTL N SECS.
wait_iteration() { wait_migration_ge "$1" iteration "$2" "$3"; }

# NAME's guest still runs ($T/NAME.ctl, .serial): status running and heartbeats move on.
assert_source_runs() {
	local name=$1
	"$FERRY" status "$T/$name.ctl" | grep -q '^status: *running' || fail "$name is not running"
	local n; n=$(last_beat "$T/$name.serial")
	wait_beats "$T/$name.serial" "$((n + 5))" 10
	! grep -q CORRUPT "$T/$name.serial" || fail "$name saw corruption"
}
