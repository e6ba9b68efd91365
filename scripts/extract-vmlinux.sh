#!/usr/bin/env bash
# extract-vmlinux.sh BZIMAGE OUT - write the ELF vmlinux inside a bzImage.
#
# The logic of the kernel's scripts/extract-vmlinux: find the magic of each
# compressor the x86 decompressor may use, decompress from there, and keep
# the first result that is an ELF file.  A Linux vmlinux carries the PVH
# entry note, so ferry boots it directly (--kernel), without the
# decompressor that kvm-pvm would run in emulated ring 0 for over an hour.
# Exit: 0 written, 1 no ELF found, 64 usage.
set -u

[ $# -eq 2 ] || { echo "usage: $0 BZIMAGE OUT" >&2; exit 64; }
img=$1 out=$2
[ -r "$img" ] || { echo "extract-vmlinux: cannot read $img" >&2; exit 64; }
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT

# try MAGIC(grep -P bytes) COMMAND...: decompress from each of the first
# few places the magic appears until one gives an ELF file.
try() {
	local magic=$1 pos; shift
	for pos in $(LC_ALL=C grep -aboUP "$magic" "$img" 2>/dev/null | head -n 8 | cut -d: -f1); do
		tail -c +"$((pos + 1))" "$img" | "$@" >"$tmp" 2>/dev/null
		if [ "$(head -c 4 "$tmp" | od -An -c | tr -d ' ')" = '177ELF' ]; then
			mv "$tmp" "$out"
			echo "extract-vmlinux: $(basename "$img"): $1-compressed ELF at offset $pos"
			exit 0
		fi
	done
}

try '\x{fd}7zXZ\x00' xz -dc
try '\x28\xb5\x2f\xfd' zstd -dc
try '\x1f\x8b\x08' gzip -dc
try '\x02\x21\x4c\x18' lz4 -dc
try '\x5d\x00\x00\x00' xz -dc --format=lzma
try 'BZh' bzip2 -dc
echo "extract-vmlinux: no compressed ELF kernel found in $img" >&2
exit 1
