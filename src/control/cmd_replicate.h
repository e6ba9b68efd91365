/* The replication commands (docs/api.md, docs/replication.md). */
#ifndef FERRY_CONTROL_CMD_REPLICATE_H
#define FERRY_CONTROL_CMD_REPLICATE_H

#include "control/args.h"
#include "control/commands.h"

extern const struct control_arg cmd_replicate_args[];

/* replicate: the primary side, a migration job that never switches over. */
int cmd_replicate(struct control_ctx *ctx, json_object *args, json_object **ret);
/* failover: on a standby, resume the guest from the last checkpoint now. */
int cmd_failover(struct control_ctx *ctx, json_object *args, json_object **ret);

#endif
