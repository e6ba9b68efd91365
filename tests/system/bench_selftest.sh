#!/usr/bin/env bash
# The benchmark harness without root or KVM: its Python compiles, it lists
# its scenarios (net-client and the storage ones among them), net-client's
# analysis of the client's samples and the switch's FDB holds on made-up
# inputs (bench/netclient.py selftest), and the storage scenarios' plumbing
# holds (ferrybench.py --selftest: the older copy's differing ranges, both
# VMMs' command lines, QEMU's mirror driven over QMP against a fake QMP
# server; the save preset listed, its work-rate arithmetic), so a broken
# bench shows before `make bench`.
. "$(dirname "$0")/lib.sh"
command -v python3 >/dev/null || skip "python3 is not available"

python3 -c 'import sys; [compile(open(f).read(), f, "exec") for f in sys.argv[1:]]' \
	bench/ferrybench.py bench/netclient.py bench/savebench.py || fail "the bench's Python does not compile"
python3 bench/netclient.py selftest >"$T/selftest" 2>&1 || { cat "$T/selftest"; fail "netclient selftest"; }
grep -q "selftest: ok" "$T/selftest" || fail "netclient selftest said nothing"
python3 bench/ferrybench.py --list >"$T/list" 2>&1 || { cat "$T/list"; fail "ferrybench.py --list"; }
grep -qE '^net-client +256 MiB +veth-1g ' "$T/list" || { cat "$T/list"; fail "net-client is not listed"; }
for sc in storage-nbd-1g storage-copy-1g storage-incremental-1g; do
	grep -qE "^$sc +1024 MiB +veth-1g +precopy +workload=idle,disk disk_rate=10M " "$T/list" ||
		{ cat "$T/list"; fail "$sc is not listed with its paced disk workload"; }
done
for sc in save-random-1g save-mixed-1g snapshot-1g replicate-cpu-1g replicate-memtouch-1g base-return-1g; do
	grep -qE "^$sc +1024 MiB .* save preset " "$T/list" || { cat "$T/list"; fail "$sc is not listed"; }
done
python3 bench/ferrybench.py --list --disk-rate 4M >"$T/list4" 2>&1 || fail "ferrybench.py --disk-rate 4M"
grep -qE '^storage-copy-1g .* disk_rate=4M ' "$T/list4" || fail "--disk-rate does not reach the guest"
for bad in "--disk-size 1M" "--disk-size 2.5G" "--disk-rate 100"; do
	# shellcheck disable=SC2086
	! python3 bench/ferrybench.py --list $bad >"$T/bad" 2>&1 && grep -q "^bench: --disk-" "$T/bad" ||
		{ cat "$T/bad"; fail "ferrybench.py $bad was not refused"; }
done
python3 bench/ferrybench.py --selftest >"$T/storage" 2>&1 || { cat "$T/storage"; fail "ferrybench.py --selftest"; }
grep -q "^selftest: ok" "$T/storage" || fail "ferrybench.py --selftest said nothing"
python3 bench/ferrybench.py --help >"$T/help" 2>&1 || fail "ferrybench.py --help"
grep -q -- "--udp-rate" "$T/help" || fail "ferrybench.py --help has no --udp-rate"
grep -q -- "--disk-size" "$T/help" || fail "ferrybench.py --help has no --disk-size"
echo "bench harness: compiles, lists net-client, storage-* and the save preset, selftests ok"
