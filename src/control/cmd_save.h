/* Save commands of the control API (docs/api.md, docs/save-format.md). */
#ifndef FERRY_CONTROL_CMD_SAVE_H
#define FERRY_CONTROL_CMD_SAVE_H

#include "control/commands.h"

int cmd_save(struct control_ctx *ctx, json_object *args, json_object **ret);
int cmd_snapshot(struct control_ctx *ctx, json_object *args, json_object **ret);

#endif
