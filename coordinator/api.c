/*  api.c - see api.h. */
#include "api.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "netmsg.h"

int df_api_job_info(const df_job *job, int with_tasks, Dreamfleet__JobInfo *info)
{
    dreamfleet__job_info__init(info);
    info->job_id = (char *)job->id;
    info->type = (char *)job->type;
    info->state = job->state;
    info->created_ms = job->created_ms;
    info->updated_ms = job->updated_ms;
    info->error = job->error ? job->error : "";
    info->summary = job->summary ? job->summary : "";
    info->result.data = job->result;
    info->result.len = job->result_len;
    uint32_t ok, failed;
    df_job_counts(job, &ok, &failed, NULL);
    info->tasks_total = job->ntasks;
    info->tasks_done = ok;
    info->tasks_failed = failed;
    if (!with_tasks)
        return DF_OK;
    Dreamfleet__TaskInfo *t = calloc(job->ntasks, sizeof *t);
    Dreamfleet__TaskInfo **tp = calloc(job->ntasks, sizeof *tp);
    if (!t || !tp) {
        free(t), free(tp);
        return DF_E_NOMEM;
    }
    for (uint32_t i = 0; i < job->ntasks; i++) {
        const df_task *s = &job->tasks[i];
        dreamfleet__task_info__init(&t[i]);
        t[i].task_id = (char *)s->id;
        t[i].index = s->index;
        t[i].state = s->state;
        t[i].attempt = s->attempt;
        t[i].worker = (char *)s->worker_name;
        t[i].progress = s->progress;
        t[i].message = s->message ? s->message : "";
        t[i].error = s->error ? s->error : "";
        t[i].started_ms = s->started_ms;
        t[i].finished_ms = s->finished_ms;
        t[i].output.data = s->output;
        t[i].output.len = s->output_len;
        if (!df_task_state_terminal(s->state)) { /* once done, the output is the picture */
            t[i].preview.data = s->preview;
            t[i].preview.len = s->preview_len;
        }
        tp[i] = &t[i];
    }
    info->n_tasks = job->ntasks;
    info->tasks = tp;
    return DF_OK;
}

void df_api_job_info_free(Dreamfleet__JobInfo *info)
{
    if (info->n_tasks)
        free(info->tasks[0]); /* the TaskInfo array */
    free(info->tasks);
    info->tasks = NULL;
    info->n_tasks = 0;
}

void df_api_stats(const df_api *api, uint64_t now, Dreamfleet__Stats *st, double bounds[11], uint64_t counts[12])
{
    df_sched_counters c;
    df_sched_counters_get(api->sched, &c);
    dreamfleet__stats__init(st);
    st->jobs_total = c.jobs_total;
    st->queue_depth = df_sched_queue_depth(api->sched);
    st->tasks_assigned = c.tasks_by_state[DREAMFLEET__TASK_STATE__TASK_ASSIGNED];
    st->tasks_running = c.tasks_by_state[DREAMFLEET__TASK_STATE__TASK_RUNNING];
    st->tasks_succeeded = c.tasks_by_state[DREAMFLEET__TASK_STATE__TASK_SUCCEEDED];
    st->tasks_failed = c.tasks_by_state[DREAMFLEET__TASK_STATE__TASK_FAILED];
    st->tasks_cancelled = c.tasks_by_state[DREAMFLEET__TASK_STATE__TASK_CANCELLED];
    st->workers_alive = c.workers_alive;
    st->workers_known = c.workers_known;
    if (api->traffic) {
        st->bytes_in = api->traffic->bytes_in;
        st->bytes_out = api->traffic->bytes_out;
        st->messages_in = api->traffic->messages_in;
        st->messages_out = api->traffic->messages_out;
        st->messages_rejected = api->traffic->messages_rejected;
    }
    /* Cumulative counts, Prometheus style. */
    uint64_t run = 0;
    for (int b = 0; b < 12; b++) {
        run += c.latency_counts[b];
        counts[b] = run;
    }
    memcpy(bounds, df_sched_latency_bounds, 11 * sizeof *bounds);
    st->n_latency_bounds_ms = 11;
    st->latency_bounds_ms = bounds;
    st->n_latency_counts = 12;
    st->latency_counts = counts;
    st->latency_sum_ms = c.latency_sum_ms;
    st->uptime_ms = now - api->start_ms;
}

/* ---- models ---- */

typedef struct {
    Dreamfleet__ModelInfo *items;
    Dreamfleet__ModelInfo **ptrs;
    char *strings; /* name and hash of each, back to back */
    size_t n, cap;
} model_list;

static int collect_model(void *ctx, const char *name, const char *hash, uint64_t size, uint64_t added)
{
    model_list *l = ctx;
    if (l->n == l->cap)
        return 1;
    Dreamfleet__ModelInfo *m = &l->items[l->n];
    dreamfleet__model_info__init(m);
    char *s = l->strings + l->n * 200;
    snprintf(s, 100, "%s", name);
    snprintf(s + 100, 100, "%s", hash);
    m->name = s;
    m->hash = s + 100;
    m->size = size;
    m->added_ms = added;
    l->ptrs[l->n++] = m;
    return 0;
}

/* ---- the request handlers; each fills rep (and may allocate into *scratch) ---- */

typedef struct {
    Dreamfleet__Reply rep;
    Dreamfleet__JobInfo job;
    Dreamfleet__JobList jobs;
    Dreamfleet__WorkerList workers;
    Dreamfleet__ModelList models;
    Dreamfleet__Stats stats;
    Dreamfleet__ArtifactInfo artifact;
    Dreamfleet__ArtifactChunk chunk;
    double bounds[11];
    uint64_t counts[12];
    uint8_t digest[DF_SHA256_BYTES];
    df_error_t err;
    /* Owned allocations released after packing. */
    void *owned[4];
    Dreamfleet__JobInfo *job_infos;
    size_t njob_infos;
    int job_has_tasks;
} reply_t;

static void fail(reply_t *r, int code) { r->rep.status = code ? code : DF_E_INVALID; }

static void do_submit(df_api *api, const Dreamfleet__SubmitJob *s, uint64_t now, reply_t *r)
{
    const df_job *job = NULL;
    int rc = df_sched_submit(api->sched, s, now, &job, &r->err);
    if (rc)
        return fail(r, rc);
    df_api_job_info(job, 0, &r->job);
    r->rep.body_case = DREAMFLEET__REPLY__BODY_JOB;
    r->rep.job = &r->job;
}

static void do_status(df_api *api, const Dreamfleet__JobQuery *q, reply_t *r)
{
    const df_job *job = df_sched_job(api->sched, q->job_id);
    if (!job) {
        df_error_set(&r->err, DF_E_NOT_FOUND, "no job '%s'", q->job_id ? q->job_id : "");
        return fail(r, DF_E_NOT_FOUND);
    }
    if (df_api_job_info(job, q->with_tasks, &r->job)) {
        df_error_set(&r->err, DF_E_NOMEM, "out of memory");
        return fail(r, DF_E_NOMEM);
    }
    r->job_has_tasks = q->with_tasks;
    r->rep.body_case = DREAMFLEET__REPLY__BODY_JOB;
    r->rep.job = &r->job;
}

static void do_jobs(df_api *api, const Dreamfleet__ListJobs *q, reply_t *r)
{
    uint32_t total = df_sched_job_count(api->sched);
    uint32_t n = q->limit && q->limit < total ? q->limit : total;
    r->job_infos = calloc(n ? n : 1, sizeof *r->job_infos);
    Dreamfleet__JobInfo **ptrs = calloc(n ? n : 1, sizeof *ptrs);
    r->owned[0] = ptrs;
    if (!r->job_infos || !ptrs) {
        df_error_set(&r->err, DF_E_NOMEM, "out of memory");
        return fail(r, DF_E_NOMEM);
    }
    for (uint32_t i = 0; i < n; i++) { /* newest first */
        df_api_job_info(df_sched_job_at(api->sched, total - 1 - i), 0, &r->job_infos[i]);
        ptrs[i] = &r->job_infos[i];
    }
    r->njob_infos = n;
    dreamfleet__job_list__init(&r->jobs);
    r->jobs.n_jobs = n;
    r->jobs.jobs = ptrs;
    r->rep.body_case = DREAMFLEET__REPLY__BODY_JOBS;
    r->rep.jobs = &r->jobs;
}

static void do_cancel(df_api *api, const Dreamfleet__JobQuery *q, uint64_t now, reply_t *r)
{
    int rc = df_sched_cancel(api->sched, q->job_id, now, &r->err);
    if (rc)
        return fail(r, rc);
    do_status(api, q, r);
}

static void do_workers(df_api *api, reply_t *r)
{
    uint32_t n = df_sched_worker_count(api->sched);
    Dreamfleet__WorkerInfo *w = calloc(n ? n : 1, sizeof *w);
    Dreamfleet__WorkerInfo **ptrs = calloc(n ? n : 1, sizeof *ptrs);
    r->owned[0] = w;
    r->owned[1] = ptrs;
    if (!w || !ptrs) {
        df_error_set(&r->err, DF_E_NOMEM, "out of memory");
        return fail(r, DF_E_NOMEM);
    }
    for (uint32_t i = 0; i < n; i++) {
        const df_worker *s = df_sched_worker_at(api->sched, i);
        dreamfleet__worker_info__init(&w[i]);
        w[i].worker_id = (char *)s->id;
        w[i].name = (char *)s->name;
        w[i].alive = s->alive;
        w[i].running = s->running;
        w[i].slots = s->slots;
        w[i].last_seen_ms = s->last_seen_ms;
        w[i].tasks_done = s->tasks_done;
        w[i].tasks_failed = s->tasks_failed;
        if (s->hello) {
            w[i].n_devices = s->hello->n_devices;
            w[i].devices = s->hello->devices;
            w[i].n_job_types = s->hello->n_job_types;
            w[i].job_types = s->hello->job_types;
        }
        ptrs[i] = &w[i];
    }
    dreamfleet__worker_list__init(&r->workers);
    r->workers.n_workers = n;
    r->workers.workers = ptrs;
    r->rep.body_case = DREAMFLEET__REPLY__BODY_WORKERS;
    r->rep.workers = &r->workers;
}

static void do_models(df_api *api, reply_t *r)
{
    model_list l = {0};
    l.cap = 4096;
    l.items = calloc(l.cap, sizeof *l.items);
    l.ptrs = calloc(l.cap, sizeof *l.ptrs);
    l.strings = calloc(l.cap, 200);
    r->owned[0] = l.items, r->owned[1] = l.ptrs, r->owned[2] = l.strings;
    if (!l.items || !l.ptrs || !l.strings) {
        df_error_set(&r->err, DF_E_NOMEM, "out of memory");
        return fail(r, DF_E_NOMEM);
    }
    int rc = df_store_list_models(api->store, collect_model, &l, &r->err);
    if (rc)
        return fail(r, rc);
    dreamfleet__model_list__init(&r->models);
    r->models.n_models = l.n;
    r->models.models = l.ptrs;
    r->rep.body_case = DREAMFLEET__REPLY__BODY_MODELS;
    r->rep.models = &r->models;
}

static void do_model_add(df_api *api, const Dreamfleet__ModelAdd *m, uint64_t now, reply_t *r)
{
    if (!m->name || !*m->name || strlen(m->name) > 64 || strchr(m->name, '/')) {
        df_error_set(&r->err, DF_E_INVALID, "model name '%s' must be 1 to 64 characters without '/'",
                     m->name ? m->name : "");
        return fail(r, DF_E_INVALID);
    }
    df_artifact_info info;
    int rc = df_artifacts_stat(api->artifacts, m->hash, &info, &r->err);
    if (rc)
        return fail(r, rc);
    if (!info.complete) {
        df_error_set(&r->err, DF_E_NOT_FOUND, "model '%s': artifact %.12s has not been uploaded", m->name, m->hash);
        return fail(r, DF_E_NOT_FOUND);
    }
    df_store_begin(api->store, &r->err);
    rc = df_store_put_model(api->store, m->name, m->hash, info.size, now, &r->err);
    if (rc)
        return fail(r, rc);
    df_info("model %s registered: %s, %llu bytes", m->name, m->hash, (unsigned long long)info.size);
    do_models(api, r);
}

static void artifact_reply(reply_t *r, const char *hash, const df_artifact_info *info)
{
    dreamfleet__artifact_info__init(&r->artifact);
    r->artifact.hash = (char *)hash;
    r->artifact.size = info->size;
    r->artifact.have_bytes = info->have;
    r->artifact.complete = info->complete;
    r->rep.body_case = DREAMFLEET__REPLY__BODY_ARTIFACT;
    r->rep.artifact = &r->artifact;
}

static void do_artifact_stat(df_api *api, const Dreamfleet__ArtifactStat *q, reply_t *r)
{
    df_artifact_info info;
    int rc = df_artifacts_stat(api->artifacts, q->hash, &info, &r->err);
    if (rc)
        return fail(r, rc);
    artifact_reply(r, q->hash, &info);
}

static void do_artifact_put(df_api *api, const Dreamfleet__ArtifactPut *p, reply_t *r)
{
    if (p->chunk_sha256.len && p->chunk_sha256.len != DF_SHA256_BYTES) {
        df_error_set(&r->err, DF_E_FORMAT, "artifact chunk checksum has %zu bytes, not 32", p->chunk_sha256.len);
        return fail(r, DF_E_FORMAT);
    }
    df_artifact_info info = {0};
    int rc = df_artifacts_write(api->artifacts, p->hash, p->total_size, p->offset, p->data.data, p->data.len,
                                p->chunk_sha256.len ? p->chunk_sha256.data : NULL, &info, &r->err);
    if (rc) {
        /* Say where the store stands so the sender can resume. */
        fail(r, rc);
        df_artifact_info now_info;
        if (df_artifacts_stat(api->artifacts, p->hash, &now_info, NULL) == DF_OK)
            artifact_reply(r, p->hash, &now_info);
        return;
    }
    artifact_reply(r, p->hash, &info);
}

static void do_artifact_get(df_api *api, const Dreamfleet__ArtifactGet *g, reply_t *r)
{
    uint32_t want = g->max_bytes && g->max_bytes < api->max_chunk ? g->max_bytes : api->max_chunk;
    uint8_t *buf = malloc(want ? want : 1);
    r->owned[0] = buf;
    if (!buf) {
        df_error_set(&r->err, DF_E_NOMEM, "out of memory");
        return fail(r, DF_E_NOMEM);
    }
    size_t n = 0;
    uint64_t total = 0;
    int rc = df_artifacts_read(api->artifacts, g->hash, g->offset, buf, want, &n, &total, &r->err);
    if (rc)
        return fail(r, rc);
    df_sha256(buf, n, r->digest);
    dreamfleet__artifact_chunk__init(&r->chunk);
    r->chunk.hash = g->hash;
    r->chunk.total_size = total;
    r->chunk.offset = g->offset;
    r->chunk.data.data = buf;
    r->chunk.data.len = n;
    r->chunk.chunk_sha256.data = r->digest;
    r->chunk.chunk_sha256.len = DF_SHA256_BYTES;
    r->rep.body_case = DREAMFLEET__REPLY__BODY_CHUNK;
    r->rep.chunk = &r->chunk;
}

zmsg_t *df_api_handle(df_api *api, const uint8_t *peer, size_t peer_len, int is_worker,
                      const Dreamfleet__Request *req, uint64_t now)
{
    reply_t *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    dreamfleet__reply__init(&r->rep);
    r->rep.request_id = req->request_id;
    df_error_clear(&r->err);
    /* Workers pull models and push outputs too large for a result message
     * (a trained LoRA); jobs and the registry are the clients'. */
    int worker_ok = req->body_case == DREAMFLEET__REQUEST__BODY_ARTIFACT_STAT ||
                    req->body_case == DREAMFLEET__REQUEST__BODY_ARTIFACT_GET ||
                    req->body_case == DREAMFLEET__REQUEST__BODY_ARTIFACT_PUT ||
                    req->body_case == DREAMFLEET__REQUEST__BODY_MODELS;
    if (is_worker && !worker_ok) {
        df_error_set(&r->err, DF_E_INVALID, "workers may only fetch and store artifacts and list models");
        fail(r, DF_E_INVALID);
    } else {
        switch (req->body_case) {
        case DREAMFLEET__REQUEST__BODY_SUBMIT: do_submit(api, req->submit, now, r); break;
        case DREAMFLEET__REQUEST__BODY_STATUS: do_status(api, req->status, r); break;
        case DREAMFLEET__REQUEST__BODY_JOBS: do_jobs(api, req->jobs, r); break;
        case DREAMFLEET__REQUEST__BODY_CANCEL: do_cancel(api, req->cancel, now, r); break;
        case DREAMFLEET__REQUEST__BODY_WORKERS: do_workers(api, r); break;
        case DREAMFLEET__REQUEST__BODY_MODEL_ADD: do_model_add(api, req->model_add, now, r); break;
        case DREAMFLEET__REQUEST__BODY_MODELS: do_models(api, r); break;
        case DREAMFLEET__REQUEST__BODY_STATS:
            df_api_stats(api, now, &r->stats, r->bounds, r->counts);
            r->rep.body_case = DREAMFLEET__REPLY__BODY_STATS;
            r->rep.stats = &r->stats;
            break;
        case DREAMFLEET__REQUEST__BODY_ARTIFACT_STAT: do_artifact_stat(api, req->artifact_stat, r); break;
        case DREAMFLEET__REQUEST__BODY_ARTIFACT_PUT: do_artifact_put(api, req->artifact_put, r); break;
        case DREAMFLEET__REQUEST__BODY_ARTIFACT_GET: do_artifact_get(api, req->artifact_get, r); break;
        default:
            df_error_set(&r->err, DF_E_INVALID, "request %llu has no body", (unsigned long long)req->request_id);
            fail(r, DF_E_INVALID);
        }
    }
    r->rep.error = r->err.msg;
    df_error_t perr;
    df_error_clear(&perr);
    zmsg_t *m = df_netmsg_pack(peer, peer_len, DF_MSG_REPLY, &r->rep.base, api->limits, &perr);
    if (!m) {
        /* Too large to send (a huge job list): say so instead. */
        Dreamfleet__Reply small = DREAMFLEET__REPLY__INIT;
        small.request_id = req->request_id;
        small.status = perr.code;
        small.error = perr.msg;
        m = df_netmsg_pack(peer, peer_len, DF_MSG_REPLY, &small.base, api->limits, NULL);
    }
    if (r->job_has_tasks)
        df_api_job_info_free(&r->job);
    free(r->job_infos);
    for (int i = 0; i < 4; i++)
        free(r->owned[i]);
    free(r);
    return m;
}
