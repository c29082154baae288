/*  metrics.h - the coordinator's Prometheus endpoint: a minimal HTTP/1.0
 *  server on libuv answering GET /metrics with the text exposition format
 *  (queue depth, tasks by state, workers alive and known, bytes and messages
 *  moved, task latency histogram). Anything else gets 404; a request larger
 *  than 8 KiB or slower than 5 s is dropped.
 */
#ifndef DF_METRICS_H
#define DF_METRICS_H

#include <uv.h>

#include "api.h"
#include "error.h"

typedef struct _df_metrics_t df_metrics_t;

/*  Listens on "HOST:PORT" (PORT 0 picks a free one; see df_metrics_port). */
df_metrics_t *df_metrics_new(uv_loop_t *loop, const char *host_port, const df_api *api, df_error_t *err);
/*  Closes the listener and open connections (memory goes in close callbacks). */
void df_metrics_close(df_metrics_t **self_p);
int df_metrics_port(const df_metrics_t *self);

/*  Renders the exposition text into a malloc'd string. */
char *df_metrics_render(const df_api *api, uint64_t now_ms);

#endif
