#include "devices/block/lock.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* QEMU's RAW_LOCK_PERM_BASE and RAW_LOCK_SHARED_BASE, and its permission bits. */
#define LOCK_PERM_BASE		100
#define LOCK_SHARED_BASE	200
#define LOCK_PERM_CONSISTENT_READ	0	/* BLK_PERM_CONSISTENT_READ */
#define LOCK_PERM_WRITE_BIT		1	/* BLK_PERM_WRITE */
#define LOCK_SCAN_MAX		100000	/* /proc entries looked at for a holder's pid */

static int lock_fcntl(int fd, int cmd, short type, off_t byte, off_t len, short *found)
{
	struct flock fl = { .l_type = type, .l_whence = SEEK_SET, .l_start = byte, .l_len = len };

	if (fcntl(fd, cmd, &fl) < 0)
		return -errno;
	if (found)
		*found = fl.l_type;
	return 0;
}

/* A shared (read) lock on one byte, as QEMU takes them. */
static int lock_byte(int fd, int byte)
{
	return lock_fcntl(fd, F_OFD_SETLK, F_RDLCK, byte, 1, NULL);
}

/* Does another open file description hold a lock on this byte? */
static int lock_held_elsewhere(int fd, int byte)
{
	short type = F_UNLCK;
	int err = lock_fcntl(fd, F_OFD_GETLK, F_WRLCK, byte, 1, &type);

	return err ? err : type != F_UNLCK;
}

void block_lock_release(int fd)
{
	(void)lock_fcntl(fd, F_OFD_SETLK, F_UNLCK, LOCK_PERM_BASE,
			 LOCK_SHARED_BASE + 100 - LOCK_PERM_BASE, NULL);
}

/* Does /proc/PID/fdinfo/FD list a lock inside QEMU's lock bytes? */
static bool lock_fdinfo_locked(long pid, long fd)
{
	char path[64], line[256];
	bool found = false;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/fdinfo/%ld", pid, fd);
	f = fopen(path, "re");
	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f)) {
		/* "lock:\t1: OFDLCK ADVISORY  READ -1 08:02:1234 101 101": the range ends it. */
		char *tok[16], *save = NULL;
		unsigned n = 0;
		if (strncmp(line, "lock:", 5))
			continue;
		for (char *t = strtok_r(line, " \t\n", &save); t && n < 16;
		     t = strtok_r(NULL, " \t\n", &save))
			tok[n++] = t;
		if (n < 3)
			continue;
		unsigned long long start = strtoull(tok[n - 2], NULL, 10);
		unsigned long long end = !strcmp(tok[n - 1], "EOF") ? ~0ULL
					 : strtoull(tok[n - 1], NULL, 10);
		found = start < LOCK_SHARED_BASE + 100 && end >= LOCK_PERM_BASE;
	}
	fclose(f);
	return found;
}

/*
 * Who holds it?  F_OFD_GETLK answers -1 for an OFD lock, so look for a
 * process with a locked fd on the same inode.  Best effort: other users'
 * processes are out of sight without privileges.  0 when not found.
 */
static long lock_holder(int fd)
{
	struct stat me, st;
	long pid = 0;
	unsigned seen = 0;
	char path[64];
	struct dirent *p, *e;
	DIR *proc, *fds;

	if (fstat(fd, &me) || !(proc = opendir("/proc")))
		return 0;
	while (!pid && seen < LOCK_SCAN_MAX && (p = readdir(proc))) {
		long who = strtol(p->d_name, NULL, 10);
		if (who <= 0 || who == (long)getpid())
			continue;
		snprintf(path, sizeof(path), "/proc/%ld/fd", who);
		if (!(fds = opendir(path)))
			continue;
		while (!pid && seen++ < LOCK_SCAN_MAX && (e = readdir(fds))) {
			long n = strtol(e->d_name, NULL, 10);
			snprintf(path, sizeof(path), "/proc/%ld/fd/%ld", who, n);
			if (e->d_name[0] == '.' || stat(path, &st) || st.st_dev != me.st_dev ||
			    st.st_ino != me.st_ino)
				continue;
			if (lock_fdinfo_locked(who, n))
				pid = who;
		}
		closedir(fds);
	}
	closedir(proc);
	return pid;
}

static int lock_busy(int fd, bool write, const char *path, char *why, size_t whylen)
{
	long pid = lock_holder(fd);
	char who[32] = "";

	if (pid)
		snprintf(who, sizeof(who), " (pid %ld)", pid);
	snprintf(why, whylen, "disk %s is in use by another process%s; %s", path, who,
		 write ? "two VMs must never write one disk: stop the other user (a VM, QEMU, "
			 "qemu-nbd), or migrate its VM here instead of starting a second copy"
		       : "it writes the image, so this VM cannot read it consistently");
	return -EBUSY;
}

int block_lock_take(int fd, bool write, const char *path, char *why, size_t whylen)
{
	/* Ours: the permissions we use, and write as the one we do not share. */
	int mine[] = { LOCK_PERM_BASE + LOCK_PERM_CONSISTENT_READ, LOCK_SHARED_BASE + LOCK_PERM_WRITE_BIT,
		       LOCK_PERM_BASE + LOCK_PERM_WRITE_BIT };
	/* Theirs: a user forbidding what we use, or using what we forbid. */
	int theirs[] = { LOCK_SHARED_BASE + LOCK_PERM_CONSISTENT_READ, LOCK_PERM_BASE + LOCK_PERM_WRITE_BIT,
			 LOCK_SHARED_BASE + LOCK_PERM_WRITE_BIT };
	unsigned nmine = write ? 3 : 2, ntheirs = write ? 3 : 2;
	int err = 0;

	for (unsigned i = 0; i < nmine && !err; i++)
		err = lock_byte(fd, mine[i]);
	for (unsigned i = 0; i < ntheirs && !err; i++) {
		int held = lock_held_elsewhere(fd, theirs[i]);
		err = held < 0 ? held : held ? -EBUSY : 0;
	}
	if (!err)
		return 0;
	block_lock_release(fd);
	/* A write lock on one of our bytes (not QEMU's way, but someone's) is a holder too. */
	if (err == -EBUSY || err == -EAGAIN || err == -EACCES)
		return lock_busy(fd, write, path, why, whylen);
	snprintf(why, whylen, "cannot lock %s: %s%s", path, strerror(-err),
		 err == -ENOLCK || err == -EINVAL ? " (a file system without locks: locking=off, "
		 "and make sure yourself that only one VM uses it)" : "");
	return err;
}
