/* Migration commands of the control API (docs/api.md). */
#ifndef FERRY_CONTROL_CMD_MIGRATE_H
#define FERRY_CONTROL_CMD_MIGRATE_H

#include "control/args.h"
#include "control/commands.h"

/* The arguments each takes (control/args.h). */
extern const struct control_arg cmd_migrate_args[];
extern const struct control_arg cmd_migrate_set_parameters_args[];
extern const struct control_arg cmd_migrate_resolve_args[];

struct mig_params;
/*
 * The migrate command's arguments (those present) into *p, checked.  0 or
 * -EINVAL with *ret saying why.  Also for replicate (cmd_replicate.c).
 */
int cmd_migrate_parse(json_object *args, struct mig_params *p, json_object **ret);
/*
 * An optional non-negative integer argument into *out (left as it is when
 * absent): 0, or -EINVAL with *ret saying why.
 */
int mig_arg_u64(json_object *args, const char *key, uint64_t *out, json_object **ret);
/* A migration's events to the control clients (opaque: the server). */
void cmd_migrate_event(void *opaque, json_object *event);

int cmd_migrate(struct control_ctx *ctx, json_object *args, json_object **ret);
int cmd_migrate_cancel(struct control_ctx *ctx, json_object *args, json_object **ret);
int cmd_migrate_set_parameters(struct control_ctx *ctx, json_object *args, json_object **ret);
int cmd_migrate_start_postcopy(struct control_ctx *ctx, json_object *args, json_object **ret);
int cmd_test_migration_break(struct control_ctx *ctx, json_object *args, json_object **ret);
int cmd_migrate_resolve(struct control_ctx *ctx, json_object *args, json_object **ret);
int cmd_query_migrate(struct control_ctx *ctx, json_object *args, json_object **ret);

#endif
