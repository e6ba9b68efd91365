/* Migration commands of the control API (docs/api.md). */
#ifndef FERRY_CONTROL_CMD_MIGRATE_H
#define FERRY_CONTROL_CMD_MIGRATE_H

#include "control/args.h"
#include "control/commands.h"

/* The arguments each takes (control/args.h). */
extern const struct control_arg cmd_migrate_args[];
extern const struct control_arg cmd_migrate_set_parameters_args[];
extern const struct control_arg cmd_migrate_resolve_args[];

int cmd_migrate(struct control_ctx *ctx, json_object *args, json_object **ret);
int cmd_migrate_cancel(struct control_ctx *ctx, json_object *args, json_object **ret);
int cmd_migrate_set_parameters(struct control_ctx *ctx, json_object *args, json_object **ret);
int cmd_migrate_start_postcopy(struct control_ctx *ctx, json_object *args, json_object **ret);
int cmd_test_migration_break(struct control_ctx *ctx, json_object *args, json_object **ret);
int cmd_migrate_resolve(struct control_ctx *ctx, json_object *args, json_object **ret);
int cmd_query_migrate(struct control_ctx *ctx, json_object *args, json_object **ret);

#endif
