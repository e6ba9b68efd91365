#!/usr/bin/env bash
# The benchmark harness without root or KVM: its Python compiles, it lists
# its scenarios (net-client among them), and net-client's analysis of the
# client's samples and the switch's FDB holds on made-up inputs
# (bench/netclient.py selftest), so a broken bench shows before `make bench`.
. "$(dirname "$0")/lib.sh"
command -v python3 >/dev/null || skip "python3 is not available"

python3 -c 'import sys; [compile(open(f).read(), f, "exec") for f in sys.argv[1:]]' \
	bench/ferrybench.py bench/netclient.py || fail "the bench's Python does not compile"
python3 bench/netclient.py selftest >"$T/selftest" 2>&1 || { cat "$T/selftest"; fail "netclient selftest"; }
grep -q "selftest: ok" "$T/selftest" || fail "netclient selftest said nothing"
python3 bench/ferrybench.py --list >"$T/list" 2>&1 || { cat "$T/list"; fail "ferrybench.py --list"; }
grep -qE '^net-client +256 MiB +veth-1g ' "$T/list" || { cat "$T/list"; fail "net-client is not listed"; }
python3 bench/ferrybench.py --help >"$T/help" 2>&1 || fail "ferrybench.py --help"
grep -q -- "--udp-rate" "$T/help" || fail "ferrybench.py --help has no --udp-rate"
echo "bench harness: compiles, lists net-client, netclient selftest ok"
