/*  tasks.h - what a worker does with each type of task: the worker half of
 *  the job type table (coordinator/jobtypes.h holds the other half).
 *
 *  A task runs on one executor thread, owning one device. It reads its
 *  parameters (the job type's protobuf message), reports progress, checks
 *  for cancellation between steps, and returns its result message or a
 *  failure saying whether another attempt could succeed.
 */
#ifndef DF_TASKS_H
#define DF_TASKS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "vk_device.h"
#include "vk_transfer.h"

typedef struct df_task_ctx df_task_ctx;

/*  Something a task type keeps loaded on its executor between tasks (a
 *  model's weights on the device), named by key so a task that needs a
 *  different one replaces it. */
typedef struct {
    char key[4200];
    void *obj;
    void (*destroy)(void *obj);
} df_task_resident;

/*  Destroys what r holds (safe when empty). */
void df_task_resident_release(df_task_resident *r);

struct df_task_ctx {
    const char *worker_name;
    const char *task_id;
    uint32_t attempt;
    const atomic_int *cancelled;
    /* The executor's device and transfer engine, opened on first use and
     * kept for later tasks (models stay resident). */
    int (*device)(df_task_ctx *ctx, df_vk_device_t **dev, df_vk_transfer_t **xfer, df_error_t *err);
    /* Pulls an artifact into the worker's cache; path gets the local file. */
    int (*fetch)(df_task_ctx *ctx, const char *hash, char *path, size_t cap, df_error_t *err);
    /* Progress in [0, 1] with a short message. */
    void (*progress)(df_task_ctx *ctx, float fraction, const char *message);
    /* A small PNG of the work so far, sent with the next progress report
     * (the daemon sends at most one a second); NULL where nobody watches. */
    void (*preview)(df_task_ctx *ctx, const uint8_t *png, size_t len);
    /* Data-parallel training: sends a LoraDelta (packed protobuf) to the
     * coordinator, and waits up to timeout_ms for one addressed to this task
     * (*msg malloc'd). DF_E_IO "timed out" when none came, DF_E_STATE when
     * the task was cancelled meanwhile. NULL where there is no coordinator. */
    int (*send_delta)(df_task_ctx *ctx, const uint8_t *msg, size_t len, df_error_t *err);
    int (*recv_delta)(df_task_ctx *ctx, int timeout_ms, uint8_t **msg, size_t *len, df_error_t *err);
    /* Uploads a file to the coordinator's artifact store (outputs too large
     * for a result message); hex gets its sha256, and the task's result
     * lists it among its artifacts. NULL where there is no coordinator. */
    int (*upload)(df_task_ctx *ctx, const char *path, char hex[65], df_error_t *err);
    /* Resumable tasks: the checkpoint (artifact sha256) an earlier attempt
     * reported ("" for none), and how to report one (an uploaded artifact;
     * sent at once, not rate-limited; NULL where there is no coordinator). */
    const char *resume;
    void (*checkpoint)(df_task_ctx *ctx, const char *hash);
    /* The executor's resident object (NULL where tasks run without one). */
    df_task_resident *resident;
    void *owner;
};

typedef struct {
    const char *name;
    /*  Returns DF_OK with *out (malloc'd) holding the result message, or an
     *  error; *retryable says whether another attempt might succeed. */
    int (*run)(df_task_ctx *ctx, const uint8_t *params, size_t len, uint8_t **out, size_t *out_len, int *retryable,
               df_error_t *err);
} df_task_type;

const df_task_type *df_task_type_find(const char *name);

/*  A task's input file named by ref: an artifact's sha256 (pulled into the
 *  worker's cache: photos the client uploaded) or a path the worker can
 *  read; path gets the file to open. */
int df_task_input(df_task_ctx *ctx, const char *ref, char *path, size_t cap, df_error_t *err);

/*  text (malloc'd, or NULL) with the first occurrence of local, an input's
 *  file on this worker, replaced by name, the input as its owner knows it;
 *  text itself when local is not in it or nothing need change. */
char *df_task_rename_input(char *text, const char *local, const char *name);
size_t df_task_type_count(void);
const df_task_type *df_task_type_at(size_t i);

#endif
