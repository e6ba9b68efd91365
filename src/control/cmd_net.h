/* The NICs' counters in the control API's replies (docs/api.md). */
#ifndef FERRY_CONTROL_CMD_NET_H
#define FERRY_CONTROL_CMD_NET_H

#include <json-c/json.h>

#include "board/machine.h"

/* `status`'s "nics": one object per NIC, in --net order. */
json_object *control_nics_json(struct machine *m);
/*
 * Add the NICs' totals to a query-migrate reply as top-level numbers (so
 * that `ferry migrate --stats-file` writes them in every row):
 * net-announce-rounds (RARP frames this ferry's NICs sent), and
 * net-announce-errors.
 */
void control_net_totals(struct machine *m, json_object *o);

#endif
