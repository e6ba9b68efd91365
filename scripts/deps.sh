#!/usr/bin/env bash
# Installs the Debian packages ferry needs to build, test and benchmark.
# Called by the Makefile when something is missing; safe to run by hand.
set -euo pipefail

packages=(
  gcc make pkg-config
  libjson-c-dev liblz4-dev libzstd-dev libxxhash-dev libcmocka-dev liburing-dev libnbd-dev
  # scripts/nested-kvm.sh: the initramfs of the VM that runs the KVM tests under TCG
  busybox-static
  # qemu-nbd serves the NBD exports the disk tests attach to
  qemu-utils
  qemu-system-x86 iproute2
  # TLS for migration (src/migration/channel/tls.c); certtool makes the test certificates
  libgnutls28-dev gnutls-bin
  # clang's sanitizer and libFuzzer runtimes are only "recommended" by clang,
  # and recommendations are not installed here: name them.
  clang libclang-rt-14-dev
  python3 gnuplot-nox
  # tests/system/linux_boot.sh unpacks Debian's kernel package and its bzImage;
  # scripts/linux-guest.sh packs an initramfs
  xz-utils zstd cpio
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

echo "deps: installing ${missing[*]}" >&2
if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
else
  SUDO=
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
