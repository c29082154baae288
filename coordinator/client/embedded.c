/*  embedded.c - see embedded.h. */
#include "embedded.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "coordinator_daemon.h"
#include "fsutil.h"
#include "log.h"
#include "worker_daemon.h"

struct _df_embedded_t {
    df_coordinator_t *coord;
    df_worker_t *worker;
    pthread_t coord_thread, worker_thread;
    int coord_running, worker_running;
    char endpoint[64];
};

static void *run_coord(void *arg)
{
    df_embedded_t *self = arg;
    df_error_t err;
    df_error_clear(&err);
    if (df_coordinator_run(self->coord, &err))
        df_errorf("embedded coordinator: %s", err.msg);
    return NULL;
}

static void *run_worker(void *arg)
{
    df_embedded_t *self = arg;
    df_error_t err;
    df_error_clear(&err);
    if (df_worker_run(self->worker, &err))
        df_errorf("embedded worker: %s", err.msg);
    return NULL;
}

df_embedded_t *df_embedded_start(const char *state_dir, df_error_t *err)
{
    char dir[4096];
    if (state_dir)
        snprintf(dir, sizeof dir, "%s", state_dir);
    else
        df_xdg_dir(DF_XDG_DATA, "embedded", dir, sizeof dir);
    if (df_mkdirs(dir, err))
        return NULL;
    df_embedded_t *self = calloc(1, sizeof *self);
    if (!self) {
        df_error_set(err, DF_E_NOMEM, "out of memory");
        return NULL;
    }
    snprintf(self->endpoint, sizeof self->endpoint, "inproc://dreamfleet-embedded-%d", (int)getpid());
    df_coordinator_opts co = {.bind = self->endpoint, .state_dir = dir};
    co.sched = df_sched_default_opts();
    co.limits = df_wire_default_limits();
    self->coord = df_coordinator_new(&co, err);
    if (!self->coord) {
        df_error_prefix(err, "embedded coordinator (state %s)", dir);
        df_embedded_stop(&self);
        return NULL;
    }
    if (pthread_create(&self->coord_thread, NULL, run_coord, self) != 0) {
        df_error_set(err, DF_E_NOMEM, "cannot start the embedded coordinator");
        df_embedded_stop(&self);
        return NULL;
    }
    self->coord_running = 1;
    df_worker_opts wo = {.connect = self->endpoint, .device = -1, .name = "embedded"};
    self->worker = df_worker_new(&wo, err);
    if (!self->worker) {
        df_error_prefix(err, "embedded worker");
        df_embedded_stop(&self);
        return NULL;
    }
    if (pthread_create(&self->worker_thread, NULL, run_worker, self) != 0) {
        df_error_set(err, DF_E_NOMEM, "cannot start the embedded worker");
        df_embedded_stop(&self);
        return NULL;
    }
    self->worker_running = 1;
    return self;
}

const char *df_embedded_endpoint(const df_embedded_t *self) { return self->endpoint; }

void df_embedded_stop(df_embedded_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    df_embedded_t *self = *self_p;
    if (self->worker_running) {
        df_worker_stop(self->worker);
        pthread_join(self->worker_thread, NULL);
    }
    df_worker_destroy(&self->worker);
    if (self->coord_running) {
        df_coordinator_stop(self->coord);
        pthread_join(self->coord_thread, NULL);
    }
    df_coordinator_destroy(&self->coord);
    free(self);
    *self_p = NULL;
}
