/*  sched.c - see sched.h. */
#include "sched.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "artifact_store.h"
#include "jobtypes.h"
#include "log.h"
#include "result_cache.h"
#include "train_group.h"

#define T_QUEUED DREAMFLEET__TASK_STATE__TASK_QUEUED
#define T_ASSIGNED DREAMFLEET__TASK_STATE__TASK_ASSIGNED
#define T_RUNNING DREAMFLEET__TASK_STATE__TASK_RUNNING
#define T_SUCCEEDED DREAMFLEET__TASK_STATE__TASK_SUCCEEDED
#define T_FAILED DREAMFLEET__TASK_STATE__TASK_FAILED
#define T_CANCELLED DREAMFLEET__TASK_STATE__TASK_CANCELLED
#define J_QUEUED DREAMFLEET__JOB_STATE__JOB_QUEUED
#define J_RUNNING DREAMFLEET__JOB_STATE__JOB_RUNNING
#define J_SUCCEEDED DREAMFLEET__JOB_STATE__JOB_SUCCEEDED
#define J_FAILED DREAMFLEET__JOB_STATE__JOB_FAILED
#define J_CANCELLED DREAMFLEET__JOB_STATE__JOB_CANCELLED

const double df_sched_latency_bounds[11] = {1, 5, 10, 50, 100, 500, 1000, 5000, 10000, 60000, 600000};

struct _df_sched_t {
    df_store_t *store;
    df_sched_opts opts;
    df_sched_io io;
    char coordinator_id[DF_ID_MAX];
    int store_rc;
    df_error_t store_err;

    df_job **jobs; /* ordered by seq */
    uint32_t njobs, jobs_cap;
    uint64_t next_seq;

    df_worker **workers;
    uint32_t nworkers, workers_cap;

    df_task *qhead, *qtail;
    uint64_t qlen;
    uint64_t adopt_deadline_ms;

    uint64_t latency_counts[12];
    double latency_sum_ms;

    df_result_cache_t *cache; /* borrowed; NULL: none */
};

void df_sched_set_cache(df_sched_t *self, df_result_cache_t *cache)
{
    self->cache = cache;
}

/*  Answers task t from the cache when its job type can name its output and
 *  the cache holds it: the task is then done before any worker sees it. */
static int answer_from_cache(df_sched_t *self, const df_jobtype *jt, df_task *t, uint64_t now)
{
    char key[65];
    int lookup = 0;
    if (!self->cache || !jt->cache_key || !jt->cache_key(t->job, t->index, key, &lookup) || !lookup)
        return 0;
    uint8_t *data;
    size_t len;
    if (df_result_cache_get(self->cache, key, &data, &len, NULL) != DF_OK)
        return 0;
    free(t->output);
    t->output = data, t->output_len = len;
    df_task_set_state(t, T_SUCCEEDED);
    snprintf(t->worker_id, sizeof t->worker_id, "%s", DF_CACHE_WORKER);
    snprintf(t->worker_name, sizeof t->worker_name, "%s", DF_CACHE_WORKER);
    t->progress = 1;
    t->started_ms = t->finished_ms = now;
    df_set_str(&t->message, "from the result cache");
    return 1;
}

/*  Keeps a finished task's output for identical requests. */
static void remember(df_sched_t *self, const df_task *t)
{
    const df_jobtype *jt = df_jobtype_find(t->job->type);
    char key[65];
    int lookup;
    if (!self->cache || !jt || !jt->cache_key || !t->output_len || !jt->cache_key(t->job, t->index, key, &lookup))
        return;
    df_error_t err;
    df_error_clear(&err);
    if (df_result_cache_put(self->cache, key, t->output, t->output_len, &err) != DF_OK)
        df_warn("%s: not cached: %s", t->id, err.msg);
}

df_sched_opts df_sched_default_opts(void)
{
    df_sched_opts o = {.heartbeat_ms = 1000, .timeout_ms = 5000, .max_attempts = 3, .adopt_grace_ms = 0,
                       .join_grace_ms = 60000};
    return o;
}

/* ---------------------------------------------------------------- store */

/* Store failures are sticky: the first is kept and reported by
 * df_sched_store_status(); the daemon stops on it. */
static void persist_task(df_sched_t *self, const df_task *t)
{
    if (self->store && !self->store_rc) {
        df_store_begin(self->store, &self->store_err);
        self->store_rc = df_store_update_task(self->store, t, &self->store_err);
    }
}

static void persist_job(df_sched_t *self, const df_job *job)
{
    if (self->store && !self->store_rc) {
        df_store_begin(self->store, &self->store_err);
        self->store_rc = df_store_update_job(self->store, job, &self->store_err);
    }
}

int df_sched_store_status(const df_sched_t *self, df_error_t *err)
{
    if (self->store_rc && err)
        df_error_set(err, self->store_rc, "%s", self->store_err.msg);
    return self->store_rc;
}

/* --------------------------------------------------------------- lookup */

static df_job *find_job_seq(const df_sched_t *self, uint64_t seq)
{
    uint32_t lo = 0, hi = self->njobs;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (self->jobs[mid]->seq < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < self->njobs && self->jobs[lo]->seq == seq ? self->jobs[lo] : NULL;
}

/* Parses "j-<seq>" and optionally ".<index>". */
static int parse_id(const char *id, uint64_t *seq, int64_t *index)
{
    if (!id || id[0] != 'j' || id[1] != '-')
        return -1;
    char *end;
    unsigned long long s = strtoull(id + 2, &end, 10);
    if (end == id + 2)
        return -1;
    *seq = s;
    *index = -1;
    if (*end == '.') {
        char *end2;
        unsigned long long i = strtoull(end + 1, &end2, 10);
        if (end2 == end + 1 || *end2)
            return -1;
        *index = (int64_t)i;
    } else if (*end) {
        return -1;
    }
    return 0;
}

const df_job *df_sched_job(const df_sched_t *self, const char *job_id)
{
    uint64_t seq;
    int64_t idx;
    if (parse_id(job_id, &seq, &idx) || idx >= 0)
        return NULL;
    return find_job_seq(self, seq);
}

static df_task *find_task(const df_sched_t *self, const char *task_id)
{
    uint64_t seq;
    int64_t idx;
    if (parse_id(task_id, &seq, &idx) || idx < 0)
        return NULL;
    df_job *job = find_job_seq(self, seq);
    return job && (uint64_t)idx < job->ntasks ? &job->tasks[idx] : NULL;
}

static df_worker *find_worker(const df_sched_t *self, const char *id)
{
    for (uint32_t i = 0; i < self->nworkers; i++)
        if (strcmp(self->workers[i]->id, id) == 0)
            return self->workers[i];
    return NULL;
}

const df_worker *df_sched_worker_by_peer(const df_sched_t *self, const uint8_t *peer, size_t peer_len)
{
    for (uint32_t i = 0; i < self->nworkers; i++) {
        df_worker *w = self->workers[i];
        if (w->alive && w->peer_len == peer_len && memcmp(w->peer, peer, peer_len) == 0)
            return w;
    }
    return NULL;
}

uint32_t df_sched_job_count(const df_sched_t *self) { return self->njobs; }
const df_job *df_sched_job_at(const df_sched_t *self, uint32_t i) { return i < self->njobs ? self->jobs[i] : NULL; }
uint32_t df_sched_worker_count(const df_sched_t *self) { return self->nworkers; }
const df_worker *df_sched_worker_at(const df_sched_t *self, uint32_t i)
{
    return i < self->nworkers ? self->workers[i] : NULL;
}
uint64_t df_sched_queue_depth(const df_sched_t *self) { return self->qlen; }

/* ---------------------------------------------------------------- queue */

static void enqueue(df_sched_t *self, df_task *t)
{
    t->qnext = NULL;
    t->in_queue = 1;
    if (self->qtail)
        self->qtail->qnext = t;
    else
        self->qhead = t;
    self->qtail = t;
    self->qlen++;
}

static void unqueue(df_sched_t *self, df_task *t)
{
    if (!t->in_queue)
        return;
    df_task *prev = NULL;
    for (df_task *p = self->qhead; p; prev = p, p = p->qnext)
        if (p == t) {
            if (prev)
                prev->qnext = t->qnext;
            else
                self->qhead = t->qnext;
            if (self->qtail == t)
                self->qtail = prev;
            break;
        }
    t->qnext = NULL;
    t->in_queue = 0;
    self->qlen--;
}

/* --------------------------------------------------------------- sending */

static void send_to(df_sched_t *self, const df_worker *w, df_msg_type type, const ProtobufCMessage *msg)
{
    if (self->io.send && w && w->alive)
        self->io.send(self->io.ctx, w->peer, w->peer_len, type, msg);
}

static void send_cancel(df_sched_t *self, const df_task *t, const char *reason)
{
    Dreamfleet__TaskCancel c = DREAMFLEET__TASK_CANCEL__INIT;
    c.task_id = (char *)t->id;
    c.reason = (char *)reason;
    send_to(self, find_worker(self, t->worker_id), DF_MSG_TASK_CANCEL, &c.base);
}

static void send_ack(df_sched_t *self, const uint8_t *peer, size_t peer_len, const char *task_id)
{
    Dreamfleet__TaskAck a = DREAMFLEET__TASK_ACK__INIT;
    a.task_id = (char *)task_id;
    if (self->io.send)
        self->io.send(self->io.ctx, peer, peer_len, DF_MSG_TASK_ACK, &a.base);
}

/* ------------------------------------------------------------ transitions */

static int active(const df_task *t) { return t->state == T_ASSIGNED || t->state == T_RUNNING; }

/* Training groups (below). */
static int is_group_job(const df_job *job);
static int drop_member(df_sched_t *self, df_task *t, const char *reason, uint64_t now);

/* Frees the task's slot on its worker. */
static void release(df_sched_t *self, df_task *t)
{
    if (!active(t))
        return;
    df_worker *w = find_worker(self, t->worker_id);
    if (w && w->running > 0)
        w->running--;
}

/* Back to the queue; the caller has dealt with the worker's slot. */
static void reset_to_queue(df_sched_t *self, df_task *t, uint64_t now)
{
    df_task_set_state(t, T_QUEUED);
    t->worker_id[0] = '\0';
    t->progress = 0;
    t->queued_ms = now;
    persist_task(self, t);
    enqueue(self, t);
}

static void requeue(df_sched_t *self, df_task *t, uint64_t now)
{
    release(self, t);
    reset_to_queue(self, t, now);
}

static void job_touch(df_sched_t *self, df_job *job, uint64_t now)
{
    job->updated_ms = now;
    persist_job(self, job);
}

/* Ends every unfinished task of job (cancelling running ones on their workers). */
static void stop_tasks(df_sched_t *self, df_job *job, uint64_t now, const char *reason)
{
    for (uint32_t i = 0; i < job->ntasks; i++) {
        df_task *t = &job->tasks[i];
        if (df_task_state_terminal(t->state))
            continue;
        if (active(t)) {
            send_cancel(self, t, reason);
            release(self, t);
        }
        unqueue(self, t);
        df_task_set_state(t, T_CANCELLED);
        t->finished_ms = now;
        persist_task(self, t);
    }
}

static void fail_job(df_sched_t *self, df_job *job, const char *error, uint64_t now)
{
    df_set_str(&job->error, error);
    job->state = J_FAILED;
    stop_tasks(self, job, now, error);
    job_touch(self, job, now);
    df_info("%s failed: %s", job->id, error);
}

static void maybe_finish_job(df_sched_t *self, df_job *job, uint64_t now)
{
    uint32_t ok, failed, terminal;
    df_job_counts(job, &ok, &failed, &terminal);
    /* Members that left a training group ended cancelled; the others
     * finished the training for them. */
    uint32_t done = is_group_job(job) ? ok + job->n_cancelled : ok;
    if (done != job->ntasks || ok == 0 || df_job_state_terminal(job->state))
        return;
    const df_jobtype *jt = df_jobtype_find(job->type);
    df_error_t err;
    df_error_clear(&err);
    if (jt && jt->finish(job, &err)) {
        fail_job(self, job, err.msg, now);
        return;
    }
    job->state = J_SUCCEEDED;
    job_touch(self, job, now);
    df_info("%s succeeded: %s", job->id, job->summary ? job->summary : "");
}

static void assign(df_sched_t *self, df_task *t, df_worker *w, uint64_t now, int new_attempt)
{
    df_task_set_state(t, new_attempt ? T_ASSIGNED : T_RUNNING);
    if (new_attempt)
        t->attempt++;
    snprintf(t->worker_id, sizeof t->worker_id, "%s", w->id);
    snprintf(t->worker_name, sizeof t->worker_name, "%s", w->name);
    t->started_ms = now;
    t->progress = 0;
    persist_task(self, t);
    w->running++;
    w->last_assign_ms = now;
    df_job *job = t->job;
    if (job->state == J_QUEUED) {
        job->state = J_RUNNING;
        job_touch(self, job, now);
    }
    if (new_attempt) {
        Dreamfleet__TaskAssign a = DREAMFLEET__TASK_ASSIGN__INIT;
        a.task_id = t->id;
        a.job_id = job->id;
        a.type = job->type;
        a.params.data = t->params;
        a.params.len = t->params_len;
        a.attempt = t->attempt;
        a.resume = t->artifacts && df_artifacts_valid_hash(t->artifacts) ? t->artifacts : "";
        send_to(self, w, DF_MSG_TASK_ASSIGN, &a.base);
    }
}

/* Runs this job's type, on a device with enough memory. */
static int can_run(const df_worker *w, const df_job *job)
{
    int type_ok = 0;
    for (size_t i = 0; w->hello && i < w->hello->n_job_types && !type_ok; i++)
        type_ok = strcmp(w->hello->job_types[i], job->type) == 0;
    if (!type_ok)
        return 0;
    if (!job->device_bytes)
        return 1;
    for (size_t i = 0; i < w->hello->n_devices; i++)
        if (w->hello->devices[i]->memory_bytes >= job->device_bytes)
            return 1;
    return 0;
}

/* The alive worker with a free slot and the lowest load that can run the
 * job's tasks; among equals the one assigned to longest ago, so work spreads. */
static df_worker *pick_worker(df_sched_t *self, const df_job *job)
{
    df_worker *best = NULL;
    for (uint32_t i = 0; i < self->nworkers; i++) {
        df_worker *w = self->workers[i];
        if (!w->alive || w->running >= w->slots || !can_run(w, job))
            continue;
        if (!best) {
            best = w;
            continue;
        }
        /* Compare running/slots without division. */
        uint64_t a = (uint64_t)w->running * best->slots, b = (uint64_t)best->running * w->slots;
        if (a < b || (a == b && w->last_assign_ms < best->last_assign_ms))
            best = w;
    }
    return best;
}

/* A queued task that no alive worker could run even when idle says so in its
 * message, which `dreamfleet status` shows. */
static void explain_wait(df_sched_t *self, df_task *t)
{
    for (uint32_t i = 0; i < self->nworkers; i++)
        if (self->workers[i]->alive && can_run(self->workers[i], t->job)) {
            if (t->message)
                df_set_str(&t->message, NULL);
            return;
        }
    char why[160];
    if (t->job->device_bytes)
        snprintf(why, sizeof why, "waiting for a worker that runs '%s' with a device of %.1f GiB or more", t->job->type,
                 t->job->device_bytes / 1073741824.0);
    else
        snprintf(why, sizeof why, "waiting for a worker that runs '%s'", t->job->type);
    if (!t->message || strcmp(t->message, why) != 0)
        df_set_str(&t->message, why);
}

int df_sched_dispatch(df_sched_t *self, uint64_t now, df_error_t *err)
{
    uint64_t free_slots = 0;
    for (uint32_t i = 0; i < self->nworkers; i++)
        if (self->workers[i]->alive && self->workers[i]->running < self->workers[i]->slots)
            free_slots += self->workers[i]->slots - self->workers[i]->running;
    df_task *prev = NULL, *t = self->qhead;
    while (t && free_slots) {
        df_task *next = t->qnext;
        df_worker *w = pick_worker(self, t->job);
        if (!w) { /* nobody free can run it now; keep its place, and say why if nobody could */
            explain_wait(self, t);
            prev = t;
            t = next;
            continue;
        }
        /* Unlink t (we know its predecessor: no scan). */
        if (prev)
            prev->qnext = next;
        else
            self->qhead = next;
        if (self->qtail == t)
            self->qtail = prev;
        t->qnext = NULL;
        t->in_queue = 0;
        self->qlen--;
        assign(self, t, w, now, 1);
        free_slots--;
        t = next;
    }
    return df_sched_store_status(self, err);
}

/* ----------------------------------------------------------------- loading */

static int add_job(df_sched_t *self, df_job *job)
{
    if (self->njobs == self->jobs_cap) {
        uint32_t cap = self->jobs_cap ? 2 * self->jobs_cap : 64;
        df_job **j = realloc(self->jobs, cap * sizeof *j);
        if (!j)
            return -1;
        self->jobs = j;
        self->jobs_cap = cap;
    }
    self->jobs[self->njobs++] = job;
    if (job->seq >= self->next_seq)
        self->next_seq = job->seq + 1;
    return 0;
}

static int on_loaded_job(void *ctx, df_job *job)
{
    df_sched_t *self = ctx;
    const df_jobtype *jt = df_jobtype_find(job->type);
    job->device_bytes = jt && jt->device_bytes ? jt->device_bytes(job->params, job->params_len) : 0;
    if (add_job(self, job)) {
        df_job_free(&job);
        return -1;
    }
    for (uint32_t i = 0; i < job->ntasks; i++) {
        df_task *t = &job->tasks[i];
        if (t->state == T_QUEUED && !df_job_state_terminal(job->state))
            enqueue(self, t);
    }
    return 0;
}

df_sched_t *df_sched_new(df_store_t *store, const char *coordinator_id, const df_sched_opts *opts,
                         const df_sched_io *io, uint64_t now_ms, df_error_t *err)
{
    df_sched_t *self = calloc(1, sizeof *self);
    if (!self) {
        df_error_set(err, DF_E_NOMEM, "scheduler: out of memory");
        return NULL;
    }
    self->store = store;
    self->opts = opts ? *opts : df_sched_default_opts();
    if (!self->opts.heartbeat_ms)
        self->opts.heartbeat_ms = 1000;
    if (!self->opts.timeout_ms)
        self->opts.timeout_ms = 5000;
    if (!self->opts.max_attempts)
        self->opts.max_attempts = 3;
    if (!self->opts.adopt_grace_ms)
        self->opts.adopt_grace_ms = self->opts.timeout_ms;
    if (!self->opts.join_grace_ms)
        self->opts.join_grace_ms = 60000;
    if (io)
        self->io = *io;
    snprintf(self->coordinator_id, sizeof self->coordinator_id, "%s", coordinator_id ? coordinator_id : "");
    self->next_seq = 1;
    self->adopt_deadline_ms = now_ms + self->opts.adopt_grace_ms;
    if (store && df_store_load_jobs(store, on_loaded_job, self, err)) {
        df_sched_destroy(&self);
        return NULL;
    }
    return self;
}

void df_sched_destroy(df_sched_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    df_sched_t *self = *self_p;
    for (uint32_t i = 0; i < self->njobs; i++)
        df_job_free(&self->jobs[i]);
    free(self->jobs);
    for (uint32_t i = 0; i < self->nworkers; i++) {
        if (self->workers[i]->hello)
            dreamfleet__worker_hello__free_unpacked(self->workers[i]->hello, NULL);
        free(self->workers[i]);
    }
    free(self->workers);
    free(self);
    *self_p = NULL;
}

/* ---------------------------------------------------------------- clients */

int df_sched_submit(df_sched_t *self, const Dreamfleet__SubmitJob *submit, uint64_t now, const df_job **out,
                    df_error_t *err)
{
    const df_jobtype *jt = df_jobtype_find(submit->type);
    if (!jt)
        return df_error_set(err, DF_E_NOT_FOUND, "unknown job type '%s' (known: %s)", submit->type ? submit->type : "",
                            df_jobtype_names());
    uint32_t ntasks = 0;
    int rc = jt->plan(submit->params.data, submit->params.len, submit->shards, &ntasks, err);
    if (rc)
        return rc;
    if (ntasks == 0 || ntasks > DF_MAX_TASKS_PER_JOB)
        return df_error_set(err, DF_E_RANGE, "%s: %u tasks (allowed 1 to %d)", jt->name, ntasks, DF_MAX_TASKS_PER_JOB);
    if (submit->max_attempts > 100)
        return df_error_set(err, DF_E_RANGE, "max_attempts %u is more than 100", submit->max_attempts);
    df_job *job = df_job_new(self->next_seq, jt->name, ntasks);
    if (!job || df_set_bytes(&job->params, &job->params_len, submit->params.data, submit->params.len)) {
        df_job_free(&job);
        return df_error_set(err, DF_E_NOMEM, "submit: out of memory");
    }
    job->state = J_QUEUED;
    job->max_attempts = submit->max_attempts ? submit->max_attempts : self->opts.max_attempts;
    job->device_bytes = jt->device_bytes ? jt->device_bytes(job->params, job->params_len) : 0;
    job->created_ms = job->updated_ms = now;
    uint32_t cached = 0;
    for (uint32_t i = 0; i < ntasks && !rc; i++) {
        job->tasks[i].state = T_QUEUED;
        job->tasks[i].queued_ms = now;
        rc = jt->task_params(job, i, &job->tasks[i].params, &job->tasks[i].params_len, err);
        if (!rc)
            cached += (uint32_t)answer_from_cache(self, jt, &job->tasks[i], now);
    }
    if (!rc && self->store) {
        df_store_begin(self->store, err);
        rc = df_store_insert_job(self->store, job, err);
        if (rc) {
            self->store_rc = rc;
            df_error_set(&self->store_err, rc, "%s", err ? err->msg : "store write failed");
        }
    }
    if (!rc && add_job(self, job))
        rc = df_error_set(err, DF_E_NOMEM, "submit: out of memory");
    if (rc) {
        df_job_free(&job);
        return rc;
    }
    for (uint32_t i = 0; i < ntasks; i++)
        if (job->tasks[i].state == T_QUEUED)
            enqueue(self, &job->tasks[i]);
    df_info("%s accepted: %s, %u task%s (%u from the result cache)", job->id, job->type, ntasks,
            ntasks == 1 ? "" : "s", cached);
    if (cached)
        maybe_finish_job(self, job, now);
    if (out)
        *out = job;
    return DF_OK;
}

int df_sched_cancel(df_sched_t *self, const char *job_id, uint64_t now, df_error_t *err)
{
    df_job *job = (df_job *)df_sched_job(self, job_id);
    if (!job)
        return df_error_set(err, DF_E_NOT_FOUND, "no job '%s'", job_id ? job_id : "");
    if (df_job_state_terminal(job->state))
        return df_error_set(err, DF_E_STATE, "%s has already %s", job->id, df_job_state_name(job->state));
    job->state = J_CANCELLED;
    df_set_str(&job->error, "cancelled by a client");
    stop_tasks(self, job, now, "job cancelled");
    job_touch(self, job, now);
    df_info("%s cancelled", job->id);
    return df_sched_store_status(self, err);
}

/* ---------------------------------------------------------------- workers */

static df_worker *add_worker(df_sched_t *self, const char *id)
{
    if (self->nworkers == self->workers_cap) {
        uint32_t cap = self->workers_cap ? 2 * self->workers_cap : 16;
        df_worker **w = realloc(self->workers, cap * sizeof *w);
        if (!w)
            return NULL;
        self->workers = w;
        self->workers_cap = cap;
    }
    df_worker *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    snprintf(w->id, sizeof w->id, "%s", id);
    self->workers[self->nworkers++] = w;
    return w;
}

/* Deep copy of a hello (protobuf-c has no copy: pack and unpack). */
static Dreamfleet__WorkerHello *copy_hello(const Dreamfleet__WorkerHello *h)
{
    size_t n = dreamfleet__worker_hello__get_packed_size(h);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        return NULL;
    dreamfleet__worker_hello__pack(h, buf);
    Dreamfleet__WorkerHello *c = dreamfleet__worker_hello__unpack(NULL, n, buf);
    free(buf);
    return c;
}

int df_sched_hello(df_sched_t *self, const uint8_t *peer, size_t peer_len, const Dreamfleet__WorkerHello *h,
                   uint64_t now, df_error_t *err)
{
    if (!h->worker_id || !*h->worker_id || strlen(h->worker_id) >= DF_ID_MAX)
        return df_error_set(err, DF_E_INVALID, "hello: worker_id must be 1 to %d characters", DF_ID_MAX - 1);
    if (peer_len == 0 || peer_len > DF_PEER_MAX)
        return df_error_set(err, DF_E_INVALID, "hello: bad routing id");
    if (h->slots > 1024)
        return df_error_set(err, DF_E_RANGE, "hello: %u slots is more than 1024", h->slots);
    /* A routing id belongs to one worker: a new hello on it replaces the old. */
    df_worker *w = find_worker(self, h->worker_id);
    if (!w && !(w = add_worker(self, h->worker_id)))
        return df_error_set(err, DF_E_NOMEM, "hello: out of memory");
    Dreamfleet__WorkerHello *copy = copy_hello(h);
    if (!copy)
        return df_error_set(err, DF_E_NOMEM, "hello: out of memory");
    if (w->hello)
        dreamfleet__worker_hello__free_unpacked(w->hello, NULL);
    w->hello = copy;
    int was_alive = w->alive;
    snprintf(w->name, sizeof w->name, "%s", h->name && *h->name ? h->name : h->worker_id);
    memcpy(w->peer, peer, peer_len);
    w->peer_len = peer_len;
    w->slots = h->slots ? h->slots : 1;
    w->alive = 1;
    w->last_seen_ms = now;

    /* Re-adopt the tasks it says it holds; tell it to drop the rest. */
    char **drop = calloc(h->n_running_tasks ? h->n_running_tasks : 1, sizeof *drop);
    size_t ndrop = 0;
    for (size_t i = 0; i < h->n_running_tasks; i++) {
        df_task *t = find_task(self, h->running_tasks[i]);
        int keep = 0;
        if (t && !df_task_state_terminal(t->state) && !df_job_state_terminal(t->job->state)) {
            if (active(t) && strcmp(t->worker_id, w->id) == 0) {
                keep = 1;
            } else if (t->state == T_QUEUED) {
                unqueue(self, t);
                assign(self, t, w, now, 0);
                w->running--; /* recounted below */
                keep = 1;
            }
        }
        if (!keep && drop)
            drop[ndrop++] = h->running_tasks[i];
    }
    /* Its slots in use are exactly the active tasks recorded against it; any
     * it no longer holds go back to the queue. */
    w->running = 0;
    for (uint32_t j = 0; j < self->njobs; j++) {
        df_job *job = self->jobs[j];
        if (df_job_state_terminal(job->state))
            continue;
        for (uint32_t i = 0; i < job->ntasks; i++) {
            df_task *t = &job->tasks[i];
            if (!active(t) || strcmp(t->worker_id, w->id) != 0)
                continue;
            int held = 0;
            for (size_t k = 0; k < h->n_running_tasks && !held; k++)
                held = strcmp(h->running_tasks[k], t->id) == 0;
            if (held)
                w->running++;
            else
                reset_to_queue(self, t, now);
        }
    }
    Dreamfleet__HelloAck ack = DREAMFLEET__HELLO_ACK__INIT;
    ack.coordinator_id = self->coordinator_id;
    ack.heartbeat_ms = self->opts.heartbeat_ms;
    ack.timeout_ms = self->opts.timeout_ms;
    ack.n_drop_tasks = ndrop;
    ack.drop_tasks = drop;
    send_to(self, w, DF_MSG_HELLO_ACK, &ack.base);
    free(drop);
    df_info("worker %s (%s) %s: %u slot%s, %u task%s held", w->name, w->id, was_alive ? "reconnected" : "joined",
            w->slots, w->slots == 1 ? "" : "s", w->running, w->running == 1 ? "" : "s");
    return df_sched_store_status(self, err);
}

static void on_result(df_sched_t *self, df_worker *w, const Dreamfleet__TaskResult *r, uint64_t now)
{
    df_task *t = find_task(self, r->task_id);
    if (!t || df_task_state_terminal(t->state)) {
        /* A duplicate after a reconnect, or a task of a finished job. */
        send_ack(self, w->peer, w->peer_len, r->task_id);
        return;
    }
    if (active(t) && strcmp(t->worker_id, w->id) != 0)
        send_cancel(self, t, "another worker finished it first");
    release(self, t);
    unqueue(self, t);
    df_task_set_state(t, T_SUCCEEDED);
    snprintf(t->worker_id, sizeof t->worker_id, "%s", w->id);
    snprintf(t->worker_name, sizeof t->worker_name, "%s", w->name);
    t->progress = 1;
    t->finished_ms = now;
    df_set_bytes(&t->output, &t->output_len, r->output.data, r->output.len);
    /* Output artifacts as one comma-separated list. */
    size_t len = 0;
    for (size_t i = 0; i < r->n_artifacts; i++)
        len += strlen(r->artifacts[i]) + 1;
    char *list = len ? malloc(len) : NULL;
    if (list) {
        list[0] = '\0';
        for (size_t i = 0; i < r->n_artifacts; i++) {
            if (i)
                strcat(list, ",");
            strcat(list, r->artifacts[i]);
        }
    }
    free(t->artifacts);
    t->artifacts = list;
    persist_task(self, t);
    remember(self, t);
    w->tasks_done++;
    double latency = (double)(now - t->queued_ms);
    int b = 0;
    while (b < 11 && latency > df_sched_latency_bounds[b])
        b++;
    self->latency_counts[b]++;
    self->latency_sum_ms += latency;
    send_ack(self, w->peer, w->peer_len, r->task_id);
    maybe_finish_job(self, t->job, now);
}

static void on_failure(df_sched_t *self, df_worker *w, const Dreamfleet__TaskFailure *f, uint64_t now)
{
    df_task *t = find_task(self, f->task_id);
    if (!t || df_task_state_terminal(t->state) || strcmp(t->worker_id, w->id) != 0) {
        /* Stale: the task finished, or moved to another worker meanwhile. */
        send_ack(self, w->peer, w->peer_len, f->task_id);
        return;
    }
    w->tasks_failed++;
    df_set_str(&t->error, f->reason);
    df_job *job = t->job;
    if (f->retryable && is_group_job(job) && drop_member(self, t, f->reason ? f->reason : "failed", now)) {
        send_ack(self, w->peer, w->peer_len, f->task_id);
        return;
    }
    if (f->retryable && t->attempt < job->max_attempts) {
        df_info("%s failed on %s (attempt %u of %u), will retry: %s", t->id, w->name, t->attempt, job->max_attempts,
                f->reason ? f->reason : "");
        requeue(self, t, now);
    } else {
        release(self, t);
        df_task_set_state(t, T_FAILED);
        t->finished_ms = now;
        persist_task(self, t);
        char why[DF_ERROR_MSG_MAX];
        snprintf(why, sizeof why, "task %s failed on %s after %u attempt%s: %s", t->id, w->name, t->attempt,
                 t->attempt == 1 ? "" : "s", f->reason ? f->reason : "no reason given");
        fail_job(self, job, why, now);
    }
    send_ack(self, w->peer, w->peer_len, f->task_id);
}

static void on_progress(df_sched_t *self, df_worker *w, const Dreamfleet__TaskProgress *p)
{
    df_task *t = find_task(self, p->task_id);
    if (!t || !active(t) || strcmp(t->worker_id, w->id) != 0)
        return;
    float f = p->fraction;
    t->progress = f < 0 ? 0 : f > 1 ? 1 : f;
    df_set_str(&t->message, p->message);
    if (p->preview.len && p->preview.len <= DF_PREVIEW_MAX)
        df_set_bytes(&t->preview, &t->preview_len, p->preview.data, p->preview.len);
    if (p->checkpoint && df_artifacts_valid_hash(p->checkpoint) &&
        (!t->artifacts || strcmp(t->artifacts, p->checkpoint) != 0)) {
        /* Stored at once: a retry after any failure goes on from here. */
        df_set_str(&t->artifacts, p->checkpoint);
        persist_task(self, t);
        df_info("%s checkpoint %.12s (%s)", t->id, p->checkpoint, t->message ? t->message : "");
    }
    if (t->state == T_ASSIGNED) { /* progress is not persisted; the state change is */
        df_task_set_state(t, T_RUNNING);
        persist_task(self, t);
    }
}

/* ------------------------------------------------------ training groups */

static int is_group_job(const df_job *job) { return job->ntasks > 1 && strcmp(job->type, "train") == 0; }

/*  The job's training group, built on first need: members whose tasks
 *  already ended (before a coordinator restart) are out of it. */
static df_train_group_t *group_of(df_sched_t *self, df_job *job)
{
    (void)self;
    if (job->group || !is_group_job(job))
        return job->group;
    Dreamfleet__TrainParams *p = dreamfleet__train_params__unpack(NULL, job->params_len, job->params);
    if (!p)
        return NULL;
    uint64_t samples = (uint64_t)(p->batch ? p->batch : 1) * (p->accumulate ? p->accumulate : 1);
    dreamfleet__train_params__free_unpacked(p, NULL);
    df_error_t err;
    df_error_clear(&err);
    job->group = df_train_group_new(job->id, job->ntasks, samples, &err);
    if (!job->group) {
        df_warn("%s", err.msg);
        return NULL;
    }
    /* Members that ended (a restart rebuilds the group) send nothing more. */
    for (uint32_t i = 0; i < job->ntasks; i++)
        if (df_task_state_terminal(job->tasks[i].state)) {
            int complete;
            df_train_group_drop(job->group, i, &complete);
        }
    return job->group;
}

/*  The last round's average, to member m's worker. */
static void send_reply(df_sched_t *self, df_job *job, uint32_t m)
{
    df_task *t = &job->tasks[m];
    df_worker *w = active(t) ? find_worker(self, t->worker_id) : NULL;
    if (!w || !w->alive)
        return;
    for (size_t k = 0; k < df_train_group_reply_parts(job->group); k++) {
        const Dreamfleet__LoraDelta *d = df_train_group_reply(job->group, m, t->id, k);
        if (d)
            send_to(self, w, DF_MSG_LORA_DELTA, &d->base);
    }
}

static void broadcast_reply(df_sched_t *self, df_job *job)
{
    for (uint32_t m = 0; m < job->ntasks; m++)
        if (df_train_group_live(job->group, m))
            send_reply(self, job, m);
}

/*  Takes member t out of its training group when others go on without it:
 *  1 when it did (the task ends cancelled), 0 when it is the last. */
static int drop_member(df_sched_t *self, df_task *t, const char *reason, uint64_t now)
{
    df_job *job = t->job;
    df_train_group_t *g = group_of(self, job);
    /* Others that still run (or wait to) go on without it; members that
     * already finished cannot. */
    uint32_t others = 0;
    for (uint32_t m = 0; g && m < job->ntasks; m++)
        others += m != t->index && df_train_group_live(g, m) && !df_task_state_terminal(job->tasks[m].state);
    if (!g || !df_train_group_live(g, t->index) || others == 0) {
        if (g) /* the last member starts over: so does the group */
            df_train_group_destroy(&job->group);
        return 0;
    }
    df_info("%s leaves its training group: %s", t->id, reason);
    if (active(t)) {
        send_cancel(self, t, reason);
        release(self, t);
    }
    unqueue(self, t);
    df_task_set_state(t, T_CANCELLED);
    df_set_str(&t->error, reason);
    t->finished_ms = now;
    persist_task(self, t);
    int complete;
    df_train_group_drop(g, t->index, &complete);
    if (complete)
        broadcast_reply(self, job);
    maybe_finish_job(self, job, now);
    return 1;
}

static void on_lora_delta(df_sched_t *self, df_worker *w, const Dreamfleet__LoraDelta *d, uint64_t now)
{
    df_task *t = d->task_id ? find_task(self, d->task_id) : NULL;
    if (!t || !active(t) || strcmp(t->worker_id, w->id) != 0 || !is_group_job(t->job)) {
        df_debug("ignored a LoraDelta for %s from %s", d->task_id ? d->task_id : "?", w->name);
        return;
    }
    df_train_group_t *g = group_of(self, t->job);
    if (!g)
        return;
    df_round_outcome outcome;
    df_error_t err;
    df_error_clear(&err);
    if (df_train_group_add(g, t->index, d, now, &outcome, &err) != DF_OK) {
        df_warn("%s: %s", t->id, err.msg);
        return;
    }
    if (outcome == DF_ROUND_COMPLETE)
        broadcast_reply(self, t->job);
    else if (outcome == DF_ROUND_REPEAT && d->first_tensor == 0) /* once per resend, not once per part */
        send_reply(self, t->job, t->index);
    else if (outcome == DF_ROUND_LOST)
        drop_member(self, t, "its round's average was lost with a coordinator restart", now);
}

/*  Members still queued long after their group's round began (no worker
 *  for them) leave it, so the others do not wait for ever. */
static void drop_late_members(df_sched_t *self, df_job *job, uint64_t now)
{
    df_train_group_t *g = job->group;
    uint64_t began = g ? df_train_group_round_started(g) : 0;
    if (!began || now - began < self->opts.join_grace_ms)
        return;
    for (uint32_t m = 0; m < job->ntasks; m++) {
        df_task *t = &job->tasks[m];
        if (t->state == T_QUEUED && df_train_group_live(g, m) && !df_train_group_contributed(g, m))
            drop_member(self, t, "no worker took it before its group went on", now);
    }
}

int df_sched_worker_message(df_sched_t *self, const uint8_t *peer, size_t peer_len, df_msg_type type,
                            const ProtobufCMessage *msg, uint64_t now, df_error_t *err)
{
    df_worker *w = (df_worker *)df_sched_worker_by_peer(self, peer, peer_len);
    if (!w)
        return df_error_set(err, DF_E_STATE, "unknown worker: send a hello first");
    w->last_seen_ms = now;
    switch (type) {
    case DF_MSG_HEARTBEAT: break;
    case DF_MSG_TASK_PROGRESS: on_progress(self, w, (const Dreamfleet__TaskProgress *)msg); break;
    case DF_MSG_TASK_RESULT: on_result(self, w, (const Dreamfleet__TaskResult *)msg, now); break;
    case DF_MSG_TASK_FAILURE: on_failure(self, w, (const Dreamfleet__TaskFailure *)msg, now); break;
    case DF_MSG_LORA_DELTA: on_lora_delta(self, w, (const Dreamfleet__LoraDelta *)msg, now); break;
    case DF_MSG_GOODBYE:
        df_info("worker %s left: %s", w->name, ((const Dreamfleet__Goodbye *)msg)->reason);
        w->alive = 0;
        break;
    default:
        return df_error_set(err, DF_E_INVALID, "%s is not a message a worker sends", df_msg_type_name(type));
    }
    return df_sched_store_status(self, err);
}

/* ------------------------------------------------------------------- tick */

void df_sched_tick(df_sched_t *self, uint64_t now)
{
    for (uint32_t i = 0; i < self->nworkers; i++) {
        df_worker *w = self->workers[i];
        if (!w->alive)
            continue;
        if (now - w->last_seen_ms > self->opts.timeout_ms) {
            df_warn("worker %s (%s) silent for %" PRIu64 " ms: lost", w->name, w->id, now - w->last_seen_ms);
            w->alive = 0;
            w->running = 0;
            continue;
        }
        if (now - w->last_heartbeat_ms >= self->opts.heartbeat_ms) {
            Dreamfleet__Heartbeat hb = DREAMFLEET__HEARTBEAT__INIT;
            hb.seq = ++w->heartbeat_seq;
            send_to(self, w, DF_MSG_HEARTBEAT, &hb.base);
            w->last_heartbeat_ms = now;
        }
    }
    /* Tasks whose worker is gone go back to the queue, once workers have
     * had their chance to reclaim them after a restart. */
    if (now >= self->adopt_deadline_ms)
        for (uint32_t j = 0; j < self->njobs; j++) {
            df_job *job = self->jobs[j];
            if (df_job_state_terminal(job->state))
                continue;
            if (job->group)
                drop_late_members(self, job, now);
            for (uint32_t i = 0; i < job->ntasks && !df_job_state_terminal(job->state); i++) {
                df_task *t = &job->tasks[i];
                if (!active(t))
                    continue;
                df_worker *w = find_worker(self, t->worker_id);
                if (w && w->alive)
                    continue;
                if (is_group_job(job) && drop_member(self, t, "its worker was lost", now))
                    continue;
                if (t->attempt >= job->max_attempts) {
                    char why[256];
                    snprintf(why, sizeof why, "task %s lost its worker on each of %u attempts", t->id, t->attempt);
                    df_task_set_state(t, T_FAILED);
                    t->finished_ms = now;
                    persist_task(self, t);
                    fail_job(self, job, why, now);
                    break;
                }
                df_info("%s goes back to the queue: worker %s is gone", t->id, t->worker_name);
                requeue(self, t, now);
            }
        }
    df_sched_dispatch(self, now, NULL);
}

/* ------------------------------------------------------------------ stats */

void df_sched_counters_get(const df_sched_t *self, df_sched_counters *out)
{
    memset(out, 0, sizeof *out);
    out->jobs_total = self->njobs;
    for (uint32_t j = 0; j < self->njobs; j++)
        for (uint32_t i = 0; i < self->jobs[j]->ntasks; i++) {
            int s = self->jobs[j]->tasks[i].state;
            if (s >= 0 && s < 6)
                out->tasks_by_state[s]++;
        }
    for (uint32_t i = 0; i < self->nworkers; i++)
        out->workers_alive += self->workers[i]->alive;
    out->workers_known = self->nworkers;
    memcpy(out->latency_counts, self->latency_counts, sizeof out->latency_counts);
    out->latency_sum_ms = self->latency_sum_ms;
}
