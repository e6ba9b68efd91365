/*
 * Save and restore a VM through a file with RAM at fixed offsets
 * (docs/save-format.md): `ferry save` / the `save` command write one,
 * `ferry run --restore FILE [--lazy]` reads one back.  Writing and
 * reading run on a few threads with pwrite/pread; a lazy restore starts
 * the guest at once and fills its pages on first touch through
 * userfaultfd, with a prefetch thread loading the rest behind it.
 */
#ifndef FERRY_MIGRATION_SAVEFILE_SAVEFILE_H
#define FERRY_MIGRATION_SAVEFILE_SAVEFILE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "board/machine.h"
#include "migration/savefile/format.h"

#define SAVEFILE_THREADS 4

struct savefile_save_opts {
	bool keep_running;	/* resume the guest after the save (else it stops) */
	enum savefile_disk_mode disks;	/* by path (default) or copied into the file */
};

struct savefile_stats {
	uint64_t total_ns;	/* the whole save or load */
	uint64_t paused_ns;	/* the guest was paused (a save) */
	uint64_t data_pages, zero_pages;
	uint64_t file_bytes;	/* the file's size (holes included) */
	uint64_t state_bytes;
	uint64_t wp_faults;	/* a snapshot: writes that waited for their block's copy */
	uint64_t fault_copies;	/* ... blocks copied on such a fault, ahead of the writer */
	uint64_t disk_bytes;	/* copied disks: their regions' bytes (holes included) */
	uint64_t disk_data_pages;	/* ... pages of them that hold data */
};

/*
 * Save machine m to `path`: pause it, flush and release its disks, write
 * PATH.tmp, sync it and rename it to `path`.  Then, with keep_running, take
 * the disks back and resume the guest if it ran; else the guest stays
 * paused for good and the VM is told to stop (ferry run exits 0).  On any
 * failure PATH.tmp is removed and the guest runs on as before.  Returns 0
 * or -errno with the reason in why (-EBUSY: the VM is not running or paused).
 */
int savefile_save(struct machine *m, const char *path, const struct savefile_save_opts *o,
		  struct savefile_stats *st, char *why, size_t whylen)
	__attribute__((warn_unused_result));

/*
 * Machine m, paused, with its devices at rest, to `path` (through
 * PATH.tmp, synced, renamed): what savefile_save() writes, without
 * pausing, resuming or stopping anything (a migration's --keep-base).
 * Returns 0 or -errno with the reason in why.
 */
int savefile_save_paused(struct machine *m, const char *path, struct savefile_stats *st,
			 char *why, size_t whylen) __attribute__((warn_unused_result));

/*
 * The file itself, into fd (empty, open for writing): RAM of mem (which
 * must not change meanwhile) on SAVEFILE_THREADS threads, then the
 * metadata meta (savefile_meta_encode()), the block table and the header;
 * synced.  Fills st's page counts and size.  Returns 0 or -errno.
 */
int savefile_write(struct guest_memory *mem, int fd, const uint8_t *meta, size_t meta_len,
		   struct savefile_stats *st) __attribute__((warn_unused_result));

/* The metadata for these disk records (savefile_meta_encode()): 0 or -errno with why. */
typedef int savefile_meta_fn(void *opaque, const struct savefile_disk_rec *recs, uint8_t **meta,
			     size_t *len, char *why, size_t whylen);

/*
 * As savefile_write(), with disks: recs[i] (mode, size and identity set)
 * for the image at paths[i]; each SAVEFILE_DISK_COPY one is placed after
 * RAM and copied there (savefile_disk_copy(); its image must not change
 * meanwhile), then the metadata made by meta_fn(opaque, recs) with the
 * copies' checksums.  Fills st's page and disk counts.  Returns 0 or
 * -errno with why.
 */
int savefile_write_disks(struct guest_memory *mem, int fd, const char *const *paths,
			 struct savefile_disk_rec *recs, unsigned nr_disks,
			 savefile_meta_fn *meta_fn, void *opaque, struct savefile_stats *st,
			 char *why, size_t whylen) __attribute__((warn_unused_result));

/*
 * Copy-on-write: as savefile_write(), but RAM changes from the moment
 * resume(opaque) is called (the guest runs on), and the file holds it as
 * it was just before: the guest's view of mem is write-protected through
 * userfaultfd first and each block released once copied; a write to a
 * block not copied yet waits for its copy.  resume may be NULL.
 * Returns 0 or -errno with why (-ENOTSUP: the kernel cannot
 * write-protect shared memory); resume was called only if it got that far.
 */
int savefile_cow_write(struct guest_memory *mem, int fd, const uint8_t *meta, size_t meta_len,
		       int (*resume)(void *opaque), void *opaque, struct savefile_stats *st,
		       char *why, size_t whylen) __attribute__((warn_unused_result));

/*
 * A live snapshot of machine m to `path` (snapshot.c): paused only to
 * take the state and write-protect RAM, then running while RAM is
 * written; the file restores to the VM at that instant.  The disks are
 * neither copied nor released.  Returns 0 or -errno with the reason in
 * why; the guest runs on (or stays paused, if it was) either way.
 */
int savefile_snapshot(struct machine *m, const char *path, struct savefile_stats *st,
		      char *why, size_t whylen) __attribute__((warn_unused_result));

/* An opened, checked save file: header, metadata and block table. */
struct savefile {
	int fd;
	char *path;
	struct savefile_header h;
	uint8_t *meta_buf;
	struct savefile_meta meta;
	uint8_t *table;
};

/*
 * Open `path` and check everything but the RAM blocks' contents: header,
 * sizes against the file, the metadata's and the table's checksums, the
 * metadata's encoding.  Returns 0, or -errno with the reason in why:
 * -ENOENT (no such file), -EPROTONOSUPPORT (another version), -EPROTO
 * (damaged or truncated), -EISDIR / -EINVAL (not a regular file).
 */
int savefile_open(struct savefile *sf, const char *path, char *why, size_t whylen)
	__attribute__((warn_unused_result));
void savefile_close(struct savefile *sf);

/*
 * Read every block of RAM into mem, all holes until now (through the alias view; pages
 * without data stay holes) on SAVEFILE_THREADS threads, checking each
 * block's checksum.  Returns 0 or -errno (-EPROTO: a block is damaged)
 * with the reason in why.
 */
int savefile_load_ram(struct savefile *sf, struct guest_memory *mem, struct savefile_stats *st,
		      char *why, size_t whylen) __attribute__((warn_unused_result));

/*
 * Can this host (its CPUID offer `host`: KVM's, less --cpu-model) run the
 * saved guest, whose CPUID the configuration carries?  0 (also for a file
 * that carries none: an older ferry's, unchecked), or -EOPNOTSUPP with the
 * features and MSRs it lacks, by name, in why.
 */
int savefile_check_cpu(const struct savefile *sf, const struct kvm_cpuid2 *host, char *why,
		       size_t whylen) __attribute__((warn_unused_result));

/*
 * Decode the device state (hostile: every record checked) and load it
 * into m, whose vCPUs have not run.  Returns 0 or -errno with why.
 */
int savefile_load_state(struct savefile *sf, struct machine *m, char *why, size_t whylen)
	__attribute__((warn_unused_result));

/* Load pages of block b into buf (block_pages pages) and check them: 0 or -errno (why). */
int savefile_read_block(struct savefile *sf, uint64_t b, const struct savefile_block *blk,
			uint8_t *buf, char *why, size_t whylen) __attribute__((warn_unused_result));

/*
 * A base for a migration (migration/base.h): pages [first, first + count)
 * of sf (first a multiple of the block size) into mem, all holes there:
 * pages with data are copied in and marked in `written` (a bit per page
 * index); sums[k] gets the digest (mig_page_hash()) of page first + k as
 * mem now holds it.  A block that fails its checksum or cannot be read is
 * left out: its pages stay zero and their sums say so; *damaged counts
 * such blocks, why holds the first one's reason.  buf: room for a block.
 * Returns the pages of data loaded.
 */
uint64_t savefile_load_range(struct savefile *sf, struct guest_memory *mem, uint64_t first,
			     uint32_t count, uint64_t *sums, unsigned long *written, uint8_t *buf,
			     unsigned *damaged, char *why, size_t whylen);

/* ---- disks.c: disks by path, and copied ----------------------------- */

/*
 * Size and identity (XXH3-64 of the first 64 KiB) of the image at path
 * into r (flags |= SAVEFILE_DISK_F_IDENT).  0 or -errno with why.
 */
int savefile_disk_probe(const char *path, struct savefile_disk_rec *r, char *why, size_t whylen)
	__attribute__((warn_unused_result));
/*
 * Is the image at path the one record r describes (disk `index`, for
 * messages)?  0 (also when r has no identity), -EPROTO (another size),
 * -ESTALE (its first 64 KiB changed) or -errno (cannot read it), with why.
 */
int savefile_disk_check(const struct savefile_disk_rec *r, unsigned index, const char *path,
			char *why, size_t whylen) __attribute__((warn_unused_result));
/*
 * The image at path (r->size bytes, flushed, not written meanwhile) into
 * its region r->off..+r->len of the save file fd, all holes there: only
 * its data extents are read, only pages that are not all zero written.
 * Fills r->data_pages and r->digest.  0 or -errno with why.
 */
int savefile_disk_copy(const char *path, int fd, struct savefile_disk_rec *r, char *why,
		       size_t whylen) __attribute__((warn_unused_result));
/*
 * Write disk i's copy from sf into the image c names (path=, writable):
 * through PATH.tmp, checked against its record's checksum before it is
 * renamed over PATH, so a failure leaves PATH as it was; an image already
 * at PATH must be a regular file no other process holds (its lock).
 * 0 or -errno with why: -EINVAL (not a copied disk, or c is no writable
 * file), -EPROTO (the copy is damaged), -EBUSY (in use).
 */
int savefile_disk_restore(struct savefile *sf, unsigned i, const struct block_config *c,
			  char *why, size_t whylen) __attribute__((warn_unused_result));
/* Read disk i's copy and check it, writing nothing.  0 or -errno with why (-EPROTO: damaged). */
int savefile_disk_verify(struct savefile *sf, unsigned i, char *why, size_t whylen)
	__attribute__((warn_unused_result));

/* ---- lazy.c: restore on first touch ------------------------------------ */

enum savefile_block_state { SF_BLOCK_WAITING, SF_BLOCK_LOADING, SF_BLOCK_LOADED };

struct savefile_lazy {
	struct savefile *sf;		/* borrowed until the lazy restore ends */
	struct machine *m;
	int uffd;
	int stop_fd[2];
	pthread_t fault_thread, prefetch_thread;
	bool fault_started, prefetch_started;
	/*
	 * Per block: enum savefile_block_state, changed only with atomics.
	 * Whoever moves a block WAITING -> LOADING (fault or prefetch
	 * thread) loads it and sets LOADED; `lock` and `loaded` let the
	 * fault thread wait for a block the prefetcher is loading.
	 */
	uint8_t *state;
	pthread_mutex_t lock;
	pthread_cond_t loaded;
	/* Counters: written by their own thread, read atomically for the summary. */
	uint64_t faults, zero_faults, fault_loads, prefetched;
	uint64_t start_ns, done_ns;
	/* Set once by the thread that failed; then the VM is stopped (lost). */
	int err;
	char why[256];
	/* Called on the prefetch thread when every page is in (err 0) or the restore failed. */
	void (*done)(void *opaque, int err);
	void *opaque;
};

/*
 * Register m's RAM (all holes) with userfaultfd and start the fault and
 * prefetch threads; the guest may start right after.  A block whose
 * checksum fails once the guest runs cannot be taken back: the VM is
 * stopped as lost (VM_STOP_LOST) with the reason logged.  Returns 0 or
 * -errno with the reason in why.
 */
int savefile_lazy_start(struct savefile_lazy *lz, struct savefile *sf, struct machine *m,
			char *why, size_t whylen) __attribute__((warn_unused_result));
/* Stop the threads (whatever is loaded stays) and unregister. */
void savefile_lazy_stop(struct savefile_lazy *lz);

#endif
