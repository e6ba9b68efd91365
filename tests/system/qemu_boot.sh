#!/usr/bin/env bash
# The same probe image boots under QEMU (the comparison VMM).
. "$(dirname "$0")/lib.sh"
command -v qemu-system-x86_64 >/dev/null || skip "qemu-system-x86_64 is not installed (scripts/deps.sh installs it)"
require_kvm
exec guest/test-qemu.sh "$PROBE"
