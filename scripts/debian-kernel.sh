#!/usr/bin/env bash
# debian-kernel.sh DIR - Debian's stock kernel in DIR, fetched once:
# DIR/vmlinuz (the bzImage) and DIR/vmlinux (its PVH ELF, extracted).
#
# The linux-image package that linux-image-amd64 depends on is downloaded
# with apt-get download and unpacked with dpkg-deb: nothing is installed on
# this host.  Exit: 0 ready, 77 the archive cannot be reached (the reason on
# stdout), 1 the package is not what it should be.
set -u
[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 64; }
dir=$1
here=$(dirname "$0")
[ -s "$dir/vmlinux" ] && [ -s "$dir/vmlinuz" ] && exit 0
mkdir -p "$dir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
      sed -nE 's/^ *Depends: (linux-image-[0-9][^ ]*-amd64)$/\1/p' | head -n1)
if [ -z "$pkg" ]; then
	echo "apt-cache knows no linux-image-amd64 (run apt-get update)"
	exit 77
fi
if ! (cd "$tmp" && timeout 300 apt-get download "$pkg") >"$tmp/apt.log" 2>&1; then
	cat "$tmp/apt.log" >&2
	echo "cannot download $pkg from the Debian archive"
	exit 77
fi
deb=$(ls "$tmp"/*.deb | head -n1)
mkdir -p "$tmp/pkg"
if ! dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp/pkg" --wildcards './boot/vmlinuz-*'; then
	echo "debian-kernel: $deb has no /boot/vmlinuz" >&2
	exit 1
fi
"$here/extract-vmlinux.sh" "$tmp"/pkg/boot/vmlinuz-* "$tmp/vmlinux" || exit 1
cp "$tmp"/pkg/boot/vmlinuz-* "$dir/vmlinuz.tmp" && mv "$dir/vmlinuz.tmp" "$dir/vmlinuz"
mv "$tmp/vmlinux" "$dir/vmlinux"
echo "debian-kernel: $pkg in $dir"
