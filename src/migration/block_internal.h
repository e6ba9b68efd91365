/* What block.c (the source) and block_load.c (the destination) share. */
#ifndef FERRY_MIGRATION_BLOCK_INTERNAL_H
#define FERRY_MIGRATION_BLOCK_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#define BLOCK_REC_HDR	2u	/* a record's kind and disk index */

struct mig_in_ctx;
struct mig_incoming;
struct mig_payload;

/* Read len bytes at off (what is past the end reads as zeros).  0 or -errno. */
int mig_block_read(int fd, uint8_t *buf, uint64_t len, uint64_t off);
/* XXH3-64 of a whole image of `size` bytes, read from fd through buf (a chunk).  0 or -errno. */
int mig_block_digest(int fd, uint64_t size, uint8_t *buf, uint64_t *out);

/* block_load.c: the source's destination ops (live.h). */
bool mig_block_accepted(void);
int mig_block_load(struct mig_in_ctx *c, uint8_t type, struct mig_payload *in);
int mig_block_loaded(struct mig_in_ctx *c);
void mig_block_unload(struct mig_incoming *inc);

#endif
