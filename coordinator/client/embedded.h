/*  embedded.h - a coordinator and one worker inside the client process.
 *
 *  When no coordinator is configured (no --coordinator, no
 *  DREAMFLEET_COORDINATOR), the CLI starts both on threads of its own,
 *  connected over inproc://, with their state under the XDG data directory
 *  (~/.local/share/dreamfleet/embedded), so one machine needs no daemons and
 *  its job history persists between commands.
 */
#ifndef DF_EMBEDDED_H
#define DF_EMBEDDED_H

#include "error.h"

typedef struct _df_embedded_t df_embedded_t;

/*  state_dir NULL: the XDG default. */
df_embedded_t *df_embedded_start(const char *state_dir, df_error_t *err);
const char *df_embedded_endpoint(const df_embedded_t *self);
/*  Stops the worker (after its current task) and the coordinator. */
void df_embedded_stop(df_embedded_t **self_p);

#endif
