/*
 * Image locks, so two VMs never write one disk: open file description
 * (OFD) byte-range locks on the bytes QEMU uses (block/file-posix.c), so
 * that ferry and QEMU (qemu-system, qemu-img, qemu-nbd) refuse each other
 * too.  Byte 100 + n is held (shared) by whoever uses permission n, byte
 * 200 + n by whoever does not let others use it; n = 0 consistent read,
 * 1 write.  A writer holds 100, 101 and 201; a reader (readonly=on) 100
 * and 201, as QEMU's read-only virtio-blk does.  Taking them is "apply,
 * then check the other side's bytes", so two openers racing both see the
 * other and both refuse, never both win.  docs/devices.md, "Locking".
 */
#ifndef FERRY_DEVICES_BLOCK_LOCK_H
#define FERRY_DEVICES_BLOCK_LOCK_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Take the locks of a writer (or a reader) of the image open as fd, named
 * path in messages.  Returns 0, -EBUSY with "disk PATH is in use by
 * another process (pid N); ..." in why (nothing held then), or -errno
 * (ENOLCK: the file system has no locks; locking=off).
 */
int block_lock_take(int fd, bool write, const char *path, char *why, size_t whylen)
	__attribute__((warn_unused_result));
/* Release every lock byte this fd holds. */
void block_lock_release(int fd);

#endif
