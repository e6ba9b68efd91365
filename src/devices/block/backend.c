/* The backend table and what every backend shares. */
#include "devices/block/backend.h"

#include <errno.h>
#include <string.h>

const struct block_backend_ops *const block_backend_table[BLOCK_KIND_NR] = {
	[BLOCK_KIND_FILE]	= &block_file_ops,
	[BLOCK_KIND_NBD]	= &block_nbd_ops,
};

int block_open(struct block_backend *bb, const struct block_config *c, bool active,
	       char *why, size_t whylen)
{
	const struct block_backend_ops *ops;
	int err;

	memset(bb, 0, sizeof(*bb));
	if ((unsigned)c->kind >= BLOCK_KIND_NR)
		return -EINVAL;
	ops = block_backend_table[c->kind];
	bb->readonly = c->readonly;
	err = ops->open(bb, c, active, why, whylen);
	if (!err)
		bb->ops = ops;
	return err;
}

void block_close(struct block_backend *bb)
{
	if (bb->ops)
		bb->ops->close(bb);
	bb->ops = NULL;
	bb->priv = NULL;
}
