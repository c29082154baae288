/*  test_sched.c - the scheduler driven by hand: a fake clock, workers that
 *  are just routing ids, and a recorder in place of the sockets. Covers
 *  spreading, retries, lost workers, reconnection and re-adoption, duplicate
 *  results, cancellation, and recovery from the store after a restart. */
#include <stdlib.h>
#include <unistd.h>

#include "jobtypes.h"
#include "log.h"
#include "result_cache.h"
#include "sched.h"
#include "store.h"
#include "test.h"

/* ---- a recorder for what the scheduler sends ---- */

typedef struct {
    char peer[32];
    df_msg_type type;
    ProtobufCMessage *msg;
} sent_t;

static sent_t g_sent[4096];
static int g_nsent;

static void record(void *ctx, const uint8_t *peer, size_t peer_len, df_msg_type type, const ProtobufCMessage *msg)
{
    (void)ctx;
    if (g_nsent == 4096)
        return;
    sent_t *s = &g_sent[g_nsent++];
    snprintf(s->peer, sizeof s->peer, "%.*s", (int)peer_len, (const char *)peer);
    s->type = type;
    /* Keep a decoded copy, as the peer would see it. */
    size_t n = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(n + 1);
    protobuf_c_message_pack(msg, buf);
    s->msg = protobuf_c_message_unpack(msg->descriptor, NULL, n, buf);
    free(buf);
}

static void clear_sent(void)
{
    for (int i = 0; i < g_nsent; i++)
        protobuf_c_message_free_unpacked(g_sent[i].msg, NULL);
    g_nsent = 0;
}

static int count_sent(const char *peer, df_msg_type type)
{
    int n = 0;
    for (int i = 0; i < g_nsent; i++)
        n += g_sent[i].type == type && (!peer || strcmp(g_sent[i].peer, peer) == 0);
    return n;
}

/* The task id of the i-th TaskAssign sent to peer (NULL if none). */
static const char *assigned(const char *peer, int i)
{
    for (int k = 0; k < g_nsent; k++)
        if (g_sent[k].type == DF_MSG_TASK_ASSIGN && strcmp(g_sent[k].peer, peer) == 0 && i-- == 0)
            return ((Dreamfleet__TaskAssign *)g_sent[k].msg)->task_id;
    return NULL;
}

static const df_sched_io k_io = {NULL, record};

/* ---- helpers to play workers and clients ---- */

static df_sched_opts opts(void)
{
    df_sched_opts o = df_sched_default_opts();
    o.heartbeat_ms = 100, o.timeout_ms = 500, o.max_attempts = 3;
    return o;
}

static int hello(df_sched_t *s, const char *name, uint32_t slots, const char **held, size_t nheld, uint64_t now)
{
    char *types[2] = {"noop", "bench"};
    Dreamfleet__WorkerHello h = DREAMFLEET__WORKER_HELLO__INIT;
    h.worker_id = (char *)name; /* id and routing id are the name in these tests */
    h.name = (char *)name;
    h.slots = slots;
    h.n_job_types = 2;
    h.job_types = types;
    h.n_running_tasks = nheld;
    h.running_tasks = (char **)held;
    df_error_t err;
    df_error_clear(&err);
    int rc = df_sched_hello(s, (const uint8_t *)name, strlen(name), &h, now, &err);
    if (rc)
        fprintf(stderr, "hello %s: %s\n", name, err.msg);
    return rc;
}

static int result(df_sched_t *s, const char *peer, const char *task, uint64_t now)
{
    Dreamfleet__NoopResult out = DREAMFLEET__NOOP_RESULT__INIT;
    out.worker = (char *)peer;
    uint8_t buf[64];
    size_t n = dreamfleet__noop_result__pack(&out, buf);
    Dreamfleet__TaskResult r = DREAMFLEET__TASK_RESULT__INIT;
    r.task_id = (char *)task;
    r.output.data = buf;
    r.output.len = n;
    df_error_t err;
    df_error_clear(&err);
    return df_sched_worker_message(s, (const uint8_t *)peer, strlen(peer), DF_MSG_TASK_RESULT, &r.base, now, &err);
}

static int failure(df_sched_t *s, const char *peer, const char *task, int retryable, uint64_t now)
{
    Dreamfleet__TaskFailure f = DREAMFLEET__TASK_FAILURE__INIT;
    f.task_id = (char *)task;
    f.reason = "device lost";
    f.retryable = retryable;
    df_error_t err;
    df_error_clear(&err);
    return df_sched_worker_message(s, (const uint8_t *)peer, strlen(peer), DF_MSG_TASK_FAILURE, &f.base, now, &err);
}

static void heartbeat(df_sched_t *s, const char *peer, uint64_t now)
{
    Dreamfleet__Heartbeat hb = DREAMFLEET__HEARTBEAT__INIT;
    df_sched_worker_message(s, (const uint8_t *)peer, strlen(peer), DF_MSG_HEARTBEAT, &hb.base, now, NULL);
}

static const df_job *submit_noop(df_sched_t *s, uint32_t shards, uint32_t fail_attempts, uint64_t now)
{
    Dreamfleet__NoopParams p = DREAMFLEET__NOOP_PARAMS__INIT;
    p.fail_attempts = fail_attempts;
    uint8_t buf[32];
    Dreamfleet__SubmitJob sj = DREAMFLEET__SUBMIT_JOB__INIT;
    sj.type = "noop";
    sj.params.data = buf;
    sj.params.len = dreamfleet__noop_params__pack(&p, buf);
    sj.shards = shards;
    const df_job *job = NULL;
    df_error_t err;
    df_error_clear(&err);
    if (df_sched_submit(s, &sj, now, &job, &err))
        fprintf(stderr, "submit: %s\n", err.msg);
    return job;
}

/* ---- tests ---- */

static void test_submit_checks(void)
{
    df_error_t err;
    df_error_clear(&err);
    df_sched_opts o = opts();
    df_sched_t *s = df_sched_new(NULL, "c", &o, &k_io, 0, &err);
    Dreamfleet__SubmitJob sj = DREAMFLEET__SUBMIT_JOB__INIT;
    sj.type = "paint";
    CHECK_FAILS(df_sched_submit(s, &sj, 0, NULL, &err), &err, DF_E_NOT_FOUND, "unknown job type 'paint' (known: bench, encode, generate, noop, prep, train)");
    sj.type = "noop";
    uint8_t junk[] = {0xff, 0xff, 0xff};
    sj.params.data = junk;
    sj.params.len = 3;
    CHECK_FAILS(df_sched_submit(s, &sj, 0, NULL, &err), &err, DF_E_FORMAT, "not a NoopParams");
    sj.params.len = 0;
    sj.shards = DF_MAX_TASKS_PER_JOB + 1;
    CHECK_FAILS(df_sched_submit(s, &sj, 0, NULL, &err), &err, DF_E_RANGE, "tasks (allowed 1 to");
    sj.shards = 2;
    sj.max_attempts = 1000;
    CHECK_FAILS(df_sched_submit(s, &sj, 0, NULL, &err), &err, DF_E_RANGE, "max_attempts");
    Dreamfleet__BenchParams bp = DREAMFLEET__BENCH_PARAMS__INIT;
    bp.m = 100000;
    uint8_t buf[32];
    sj.type = "bench";
    sj.max_attempts = 0;
    sj.params.data = buf;
    sj.params.len = dreamfleet__bench_params__pack(&bp, buf);
    CHECK_FAILS(df_sched_submit(s, &sj, 0, NULL, &err), &err, DF_E_RANGE, "16384");
    const df_job *job = submit_noop(s, 12, 0, 0);
    CHECK(job && job->ntasks == 12 && strcmp(job->id, "j-1") == 0);
    CHECK_EQ(df_sched_queue_depth(s), 12);
    CHECK(df_sched_job(s, "j-1") == job);
    CHECK(df_sched_job(s, "j-1.2") == NULL && df_sched_job(s, "x") == NULL && df_sched_job(s, "j-") == NULL);
    CHECK_FAILS(df_sched_cancel(s, "j-9", 0, &err), &err, DF_E_NOT_FOUND, "no job 'j-9'");
    df_sched_destroy(&s);
    clear_sent();
}

static void test_spread_and_complete(void)
{
    df_sched_opts o = opts();
    df_sched_t *s = df_sched_new(NULL, "c", &o, &k_io, 0, NULL);
    const df_job *job = submit_noop(s, 12, 0, 0);
    CHECK_OK(hello(s, "w1", 1, NULL, 0, 0), (df_error_t *)NULL);
    CHECK_OK(hello(s, "w2", 1, NULL, 0, 0), (df_error_t *)NULL);
    CHECK_OK(hello(s, "w3", 2, NULL, 0, 0), (df_error_t *)NULL);
    CHECK_EQ(count_sent(NULL, DF_MSG_HELLO_ACK), 3);
    df_sched_dispatch(s, 1, NULL);
    /* One per slot: every worker busy, nobody doubled up. */
    CHECK_EQ(count_sent("w1", DF_MSG_TASK_ASSIGN), 1);
    CHECK_EQ(count_sent("w2", DF_MSG_TASK_ASSIGN), 1);
    CHECK_EQ(count_sent("w3", DF_MSG_TASK_ASSIGN), 2);
    CHECK_EQ(df_sched_queue_depth(s), 8);
    CHECK_EQ(job->state, DREAMFLEET__JOB_STATE__JOB_RUNNING);
    /* Workers finish and pull more until all 12 are done. */
    int done = 0;
    uint64_t now = 2;
    for (int round = 0; round < 20 && done < 12; round++) {
        int n0 = g_nsent;
        for (int k = 0; k < n0; k++) {
            if (g_sent[k].type != DF_MSG_TASK_ASSIGN || !g_sent[k].msg)
                continue;
            const char *tid = ((Dreamfleet__TaskAssign *)g_sent[k].msg)->task_id;
            CHECK_OK(result(s, g_sent[k].peer, tid, now), (df_error_t *)NULL);
            protobuf_c_message_free_unpacked(g_sent[k].msg, NULL);
            g_sent[k].msg = NULL;
            g_sent[k].type = 0;
            done++;
        }
        df_sched_dispatch(s, ++now, NULL);
    }
    CHECK_EQ(done, 12);
    CHECK_EQ(job->state, DREAMFLEET__JOB_STATE__JOB_SUCCEEDED);
    CHECK(job->summary && strcmp(job->summary, "12 no-op tasks done") == 0);
    CHECK_EQ(count_sent(NULL, DF_MSG_TASK_ACK), 12);
    /* Every worker did some of it. */
    for (uint32_t i = 0; i < df_sched_worker_count(s); i++)
        CHECK(df_sched_worker_at(s, i)->tasks_done >= 2);
    df_sched_counters c;
    df_sched_counters_get(s, &c);
    CHECK_EQ(c.tasks_by_state[DREAMFLEET__TASK_STATE__TASK_SUCCEEDED], 12);
    CHECK_EQ(c.workers_alive, 3);
    uint64_t hist = 0;
    for (int b = 0; b < 12; b++)
        hist += c.latency_counts[b];
    CHECK_EQ(hist, 12);
    df_sched_destroy(&s);
    clear_sent();
}

static void test_retry_then_fail(void)
{
    df_sched_opts o = opts();
    df_sched_t *s = df_sched_new(NULL, "c", &o, &k_io, 0, NULL);
    const df_job *job = submit_noop(s, 2, 0, 0);
    hello(s, "w1", 2, NULL, 0, 0);
    df_sched_dispatch(s, 0, NULL);
    const char *t0 = assigned("w1", 0), *t1 = assigned("w1", 1);
    CHECK(t0 && t1);
    /* Retryable failures: back in the queue, attempt by attempt. */
    CHECK_OK(failure(s, "w1", t0, 1, 1), (df_error_t *)NULL);
    CHECK_EQ(job->tasks[0].state, DREAMFLEET__TASK_STATE__TASK_QUEUED);
    df_sched_dispatch(s, 2, NULL);
    CHECK_EQ(job->tasks[0].attempt, 2);
    failure(s, "w1", t0, 1, 3);
    df_sched_dispatch(s, 4, NULL);
    CHECK_EQ(job->tasks[0].attempt, 3);
    /* The third failure exhausts max_attempts: the job fails and the other
     * task is cancelled on its worker. */
    failure(s, "w1", t0, 1, 5);
    CHECK_EQ(job->state, DREAMFLEET__JOB_STATE__JOB_FAILED);
    CHECK(job->error && strstr(job->error, "after 3 attempts: device lost"));
    CHECK_EQ(job->tasks[1].state, DREAMFLEET__TASK_STATE__TASK_CANCELLED);
    CHECK_EQ(count_sent("w1", DF_MSG_TASK_CANCEL), 1);
    CHECK_EQ(df_sched_worker_at(s, 0)->running, 0);
    /* A result for the cancelled task is acknowledged and ignored. */
    int acks = count_sent("w1", DF_MSG_TASK_ACK);
    CHECK_OK(result(s, "w1", t1, 6), (df_error_t *)NULL);
    CHECK_EQ(count_sent("w1", DF_MSG_TASK_ACK), acks + 1);
    CHECK_EQ(job->tasks[1].state, DREAMFLEET__TASK_STATE__TASK_CANCELLED);
    /* Non-retryable: fails at once. */
    const df_job *job2 = submit_noop(s, 1, 0, 7);
    df_sched_dispatch(s, 7, NULL);
    failure(s, "w1", job2->tasks[0].id, 0, 8);
    CHECK_EQ(job2->state, DREAMFLEET__JOB_STATE__JOB_FAILED);
    CHECK_EQ(job2->tasks[0].attempt, 1);
    df_sched_destroy(&s);
    clear_sent();
}

static void test_lost_worker_and_late_result(void)
{
    df_sched_opts o = opts();
    df_sched_t *s = df_sched_new(NULL, "c", &o, &k_io, 0, NULL);
    const df_job *job = submit_noop(s, 1, 0, 0);
    hello(s, "w1", 1, NULL, 0, 0);
    df_sched_dispatch(s, 0, NULL);
    CHECK(assigned("w1", 0) != NULL);
    hello(s, "w2", 1, NULL, 0, 10);
    /* w2 keeps heartbeating, w1 goes silent past the timeout. */
    for (uint64_t now = 100; now <= 700; now += 100) {
        heartbeat(s, "w2", now);
        df_sched_tick(s, now);
    }
    CHECK(!df_sched_worker_at(s, 0)->alive);
    CHECK(assigned("w2", 0) && strcmp(assigned("w2", 0), job->tasks[0].id) == 0);
    CHECK_EQ(job->tasks[0].attempt, 2);
    /* The scheduler sent w2 heartbeats meanwhile. */
    CHECK(count_sent("w2", DF_MSG_HEARTBEAT) >= 5);
    /* w1 was only partitioned: it says hello again still holding the task,
     * which now belongs to w2, so w1 is told to drop it. */
    const char *held[1] = {job->tasks[0].id};
    hello(s, "w1", 1, held, 1, 800);
    Dreamfleet__HelloAck *ack = NULL;
    for (int k = g_nsent - 1; k >= 0 && !ack; k--)
        if (g_sent[k].type == DF_MSG_HELLO_ACK && strcmp(g_sent[k].peer, "w1") == 0)
            ack = (Dreamfleet__HelloAck *)g_sent[k].msg;
    CHECK(ack && ack->n_drop_tasks == 1 && strcmp(ack->drop_tasks[0], job->tasks[0].id) == 0);
    /* Its result arrives anyway, first: accepted once; w2 is told to stop. */
    CHECK_OK(result(s, "w1", job->tasks[0].id, 900), (df_error_t *)NULL);
    CHECK_EQ(job->state, DREAMFLEET__JOB_STATE__JOB_SUCCEEDED);
    CHECK_EQ(count_sent("w2", DF_MSG_TASK_CANCEL), 1);
    CHECK_OK(result(s, "w2", job->tasks[0].id, 901), (df_error_t *)NULL);
    CHECK(strcmp(job->tasks[0].worker_name, "w1") == 0);
    CHECK_EQ(df_sched_worker_at(s, 0)->tasks_done + df_sched_worker_at(s, 1)->tasks_done, 1);
    CHECK_EQ(df_sched_worker_at(s, 1)->running, 0);
    /* Messages from a connection that never said hello are refused. */
    df_error_t err;
    df_error_clear(&err);
    Dreamfleet__Heartbeat hb = DREAMFLEET__HEARTBEAT__INIT;
    CHECK_FAILS(df_sched_worker_message(s, (const uint8_t *)"zz", 2, DF_MSG_HEARTBEAT, &hb.base, 950, &err), &err,
                DF_E_STATE, "hello first");
    df_sched_destroy(&s);
    clear_sent();
}

static void test_readopt_from_queue(void)
{
    /* The worker was declared lost while busy, nobody else took the task,
     * and it comes back holding it: it keeps it, same attempt. */
    df_sched_opts o = opts();
    df_sched_t *s = df_sched_new(NULL, "c", &o, &k_io, 0, NULL);
    const df_job *job = submit_noop(s, 1, 0, 0);
    hello(s, "w1", 1, NULL, 0, 0);
    df_sched_dispatch(s, 0, NULL);
    df_sched_tick(s, 1000);
    CHECK_EQ(job->tasks[0].state, DREAMFLEET__TASK_STATE__TASK_QUEUED);
    const char *held[1] = {job->tasks[0].id};
    hello(s, "w1", 1, held, 1, 1100);
    CHECK_EQ(job->tasks[0].state, DREAMFLEET__TASK_STATE__TASK_RUNNING);
    CHECK_EQ(job->tasks[0].attempt, 1);
    CHECK_EQ(df_sched_queue_depth(s), 0);
    CHECK_EQ(df_sched_worker_at(s, 0)->running, 1);
    CHECK_EQ(count_sent("w1", DF_MSG_TASK_ASSIGN), 1);
    /* A hello that no longer lists a task it had: the task is requeued. */
    hello(s, "w1", 1, NULL, 0, 1200);
    CHECK_EQ(job->tasks[0].state, DREAMFLEET__TASK_STATE__TASK_QUEUED);
    CHECK_EQ(df_sched_worker_at(s, 0)->running, 0);
    df_sched_dispatch(s, 1300, NULL);
    CHECK_EQ(job->tasks[0].attempt, 2);
    df_sched_destroy(&s);
    clear_sent();
}

static void test_cancel(void)
{
    df_error_t err;
    df_error_clear(&err);
    df_sched_opts o = opts();
    df_sched_t *s = df_sched_new(NULL, "c", &o, &k_io, 0, NULL);
    const df_job *job = submit_noop(s, 5, 0, 0);
    hello(s, "w1", 2, NULL, 0, 0);
    df_sched_dispatch(s, 0, NULL);
    CHECK_OK(df_sched_cancel(s, job->id, 1, &err), &err);
    CHECK_EQ(job->state, DREAMFLEET__JOB_STATE__JOB_CANCELLED);
    CHECK_EQ(count_sent("w1", DF_MSG_TASK_CANCEL), 2);
    CHECK_EQ(df_sched_queue_depth(s), 0);
    CHECK_EQ(df_sched_worker_at(s, 0)->running, 0);
    for (uint32_t i = 0; i < job->ntasks; i++)
        CHECK_EQ(job->tasks[i].state, DREAMFLEET__TASK_STATE__TASK_CANCELLED);
    CHECK_FAILS(df_sched_cancel(s, job->id, 2, &err), &err, DF_E_STATE, "already cancelled");
    df_sched_destroy(&s);
    clear_sent();
}

static void test_worker_types_and_hello_checks(void)
{
    df_error_t err;
    df_error_clear(&err);
    df_sched_opts o = opts();
    df_sched_t *s = df_sched_new(NULL, "c", &o, &k_io, 0, NULL);
    /* A worker that only runs noop never gets bench tasks. */
    char *types[1] = {"noop"};
    Dreamfleet__WorkerHello h = DREAMFLEET__WORKER_HELLO__INIT;
    h.worker_id = "w1", h.n_job_types = 1, h.job_types = types;
    CHECK_OK(df_sched_hello(s, (const uint8_t *)"w1", 2, &h, 0, &err), &err);
    Dreamfleet__SubmitJob sj = DREAMFLEET__SUBMIT_JOB__INIT;
    sj.type = "bench";
    CHECK_OK(df_sched_submit(s, &sj, 0, NULL, &err), &err);
    df_sched_dispatch(s, 0, NULL);
    CHECK_EQ(count_sent("w1", DF_MSG_TASK_ASSIGN), 0);
    submit_noop(s, 1, 0, 0);
    df_sched_dispatch(s, 0, NULL);
    CHECK_EQ(count_sent("w1", DF_MSG_TASK_ASSIGN), 1); /* the noop behind the bench */
    CHECK_EQ(df_sched_queue_depth(s), 1);
    h.worker_id = "";
    CHECK_FAILS(df_sched_hello(s, (const uint8_t *)"w2", 2, &h, 0, &err), &err, DF_E_INVALID, "worker_id");
    h.worker_id = "w3", h.slots = 5000;
    CHECK_FAILS(df_sched_hello(s, (const uint8_t *)"w3", 2, &h, 0, &err), &err, DF_E_RANGE, "slots");
    h.slots = 1;
    CHECK_FAILS(df_sched_hello(s, (const uint8_t *)"", 0, &h, 0, &err), &err, DF_E_INVALID, "routing id");
    df_sched_destroy(&s);
    clear_sent();
}

static void hello_with_device(df_sched_t *s, const char *name, uint64_t memory)
{
    char *types[1] = {"bench"};
    Dreamfleet__DeviceInfo d = DREAMFLEET__DEVICE_INFO__INIT;
    d.name = "gpu";
    d.memory_bytes = memory;
    Dreamfleet__DeviceInfo *dp[1] = {&d};
    Dreamfleet__WorkerHello h = DREAMFLEET__WORKER_HELLO__INIT;
    h.worker_id = (char *)name, h.name = (char *)name, h.slots = 2;
    h.n_job_types = 1, h.job_types = types, h.n_devices = 1, h.devices = dp;
    df_sched_hello(s, (const uint8_t *)name, strlen(name), &h, 0, NULL);
}

static void test_placement_by_device_memory(void)
{
    df_error_t err;
    df_error_clear(&err);
    df_sched_opts o = opts();
    df_sched_t *s = df_sched_new(NULL, "c", &o, &k_io, 0, NULL);
    hello_with_device(s, "small", 1ull << 30);
    hello_with_device(s, "big", 16ull << 30);
    /* 16384^3 in f32: three 1 GiB operands, more than "small" has... */
    Dreamfleet__BenchParams bp = DREAMFLEET__BENCH_PARAMS__INIT;
    bp.m = bp.n = bp.k = 16384;
    uint8_t buf[32];
    Dreamfleet__SubmitJob sj = DREAMFLEET__SUBMIT_JOB__INIT;
    sj.type = "bench";
    sj.params.data = buf;
    sj.params.len = dreamfleet__bench_params__pack(&bp, buf);
    sj.shards = 4;
    const df_job *job = NULL;
    CHECK_OK(df_sched_submit(s, &sj, 0, &job, &err), &err);
    CHECK(job && job->device_bytes > (3ull << 30));
    df_sched_dispatch(s, 0, NULL);
    /* ...so only "big" runs them, two at a time, and the rest wait. */
    CHECK_EQ(count_sent("small", DF_MSG_TASK_ASSIGN), 0);
    CHECK_EQ(count_sent("big", DF_MSG_TASK_ASSIGN), 2);
    CHECK_EQ(df_sched_queue_depth(s), 2);
    /* A small job goes to "small" even though it queued behind the big ones. */
    bp.m = bp.n = bp.k = 256;
    sj.params.len = dreamfleet__bench_params__pack(&bp, buf);
    sj.shards = 1;
    CHECK_OK(df_sched_submit(s, &sj, 0, NULL, &err), &err);
    df_sched_dispatch(s, 1, NULL);
    CHECK_EQ(count_sent("small", DF_MSG_TASK_ASSIGN), 1);
    /* Without "big", nobody could run the large tasks: they say so. */
    df_sched_tick(s, 10000); /* both silent past the timeout: lost */
    hello_with_device(s, "small", 1ull << 30);
    df_sched_dispatch(s, 10001, NULL);
    CHECK(job->tasks[3].message && strstr(job->tasks[3].message, "with a device of 3.1 GiB or more"));
    df_sched_destroy(&s);
    clear_sent();
}

static void test_recovery_from_store(void)
{
    df_error_t err;
    df_error_clear(&err);
    char dir[] = "/tmp/df_sched_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[128];
    snprintf(path, sizeof path, "%s/coordinator.db", dir);
    df_sched_opts o = opts();

    df_store_t *st = df_store_open(path, &err);
    CHECK(st != NULL);
    df_sched_t *s = df_sched_new(st, "c", &o, &k_io, 0, &err);
    const df_job *job = submit_noop(s, 4, 0, 0);
    hello(s, "w1", 2, NULL, 0, 0);
    df_sched_dispatch(s, 0, NULL);
    char t0[DF_ID_MAX], t1[DF_ID_MAX];
    snprintf(t0, sizeof t0, "%s", assigned("w1", 0));
    snprintf(t1, sizeof t1, "%s", assigned("w1", 1));
    result(s, "w1", t0, 1);
    CHECK_OK(df_store_commit(st, &err), &err);
    /* Uncommitted work is lost in a crash, as it must be: nobody was told. */
    df_store_begin(st, &err);
    submit_noop(s, 1, 0, 2);
    df_sched_destroy(&s);
    df_store_close(&st); /* rolls back the open transaction */
    clear_sent();

    /* Restart: one job, one task done, one still with w1, two queued. */
    st = df_store_open(path, &err);
    s = df_sched_new(st, "c", &o, &k_io, 1000, &err);
    CHECK(s != NULL);
    CHECK_EQ(df_sched_job_count(s), 1);
    job = df_sched_job(s, "j-1");
    CHECK(job != NULL);
    CHECK_EQ(job->tasks[0].state, DREAMFLEET__TASK_STATE__TASK_SUCCEEDED);
    CHECK(job->tasks[0].output_len > 0);
    CHECK_EQ(job->tasks[1].state, DREAMFLEET__TASK_STATE__TASK_ASSIGNED);
    CHECK_EQ(df_sched_queue_depth(s), 2);
    /* New jobs continue the numbering. */
    const df_job *j2 = submit_noop(s, 1, 0, 1000);
    CHECK(j2 && strcmp(j2->id, "j-2") == 0);
    /* w1 reconnects holding t1: adopted; w2 takes the queued ones. */
    const char *held[1] = {t1};
    hello(s, "w1", 2, held, 1, 1100);
    hello(s, "w2", 4, NULL, 0, 1100);
    df_sched_dispatch(s, 1100, NULL);
    CHECK_EQ(job->tasks[1].state, DREAMFLEET__TASK_STATE__TASK_ASSIGNED);
    CHECK(strcmp(job->tasks[1].worker_id, "w1") == 0);
    CHECK_EQ(job->tasks[1].attempt, 1);
    CHECK_EQ(count_sent(NULL, DF_MSG_TASK_ASSIGN), 3);
    /* Results, including a duplicate of the first, finish it exactly once. */
    result(s, "w1", t0, 1200);
    result(s, "w1", t1, 1200);
    for (int k = 0; k < g_nsent; k++)
        if (g_sent[k].type == DF_MSG_TASK_ASSIGN)
            result(s, g_sent[k].peer, ((Dreamfleet__TaskAssign *)g_sent[k].msg)->task_id, 1300);
    CHECK_EQ(job->state, DREAMFLEET__JOB_STATE__JOB_SUCCEEDED);
    CHECK_EQ(j2->state, DREAMFLEET__JOB_STATE__JOB_SUCCEEDED);
    CHECK_OK(df_store_commit(st, &err), &err);
    CHECK_OK(df_sched_store_status(s, &err), &err);
    df_sched_destroy(&s);
    df_store_close(&st);
    clear_sent();

    /* A restart where the worker never comes back: after the grace period
     * its tasks are requeued (and counted as an attempt). */
    st = df_store_open(path, &err);
    s = df_sched_new(st, "c", &o, &k_io, 0, &err);
    const df_job *j3 = submit_noop(s, 1, 0, 0);
    hello(s, "w9", 1, NULL, 0, 0);
    df_sched_dispatch(s, 0, NULL);
    df_store_commit(st, &err);
    df_sched_destroy(&s);
    df_store_close(&st);
    clear_sent();
    st = df_store_open(path, &err);
    s = df_sched_new(st, "c", &o, &k_io, 5000, &err);
    j3 = df_sched_job(s, "j-3");
    df_sched_tick(s, 5100); /* within the grace period: still w9's */
    CHECK_EQ(j3->tasks[0].state, DREAMFLEET__TASK_STATE__TASK_ASSIGNED);
    df_sched_tick(s, 5600); /* past it: back in the queue */
    CHECK_EQ(j3->tasks[0].state, DREAMFLEET__TASK_STATE__TASK_QUEUED);
    df_sched_destroy(&s);
    df_store_close(&st);
    clear_sent();

    /* Store errors: a database from a newer version is refused. */
    st = df_store_open(path, &err);
    CHECK_OK(df_store_set_meta(st, "schema_version", "99", &err), &err);
    df_store_close(&st);
    CHECK(df_store_open(path, &err) == NULL);
    CHECK(err.code == DF_E_UNSUPPORTED && strstr(err.msg, "schema version 99"));
    df_error_clear(&err);
    CHECK(df_store_open("/proc/nope/db", &err) == NULL);
    CHECK_EQ(err.code, DF_E_IO);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

static int count_models(void *ctx, const char *name, const char *hash, uint64_t size, uint64_t added)
{
    (void)hash, (void)added;
    int *n = ctx;
    (*n)++;
    return !(strcmp(name, "sdxl") == 0 && size == 7);
}

static void test_store_models_meta(void)
{
    df_error_t err;
    df_error_clear(&err);
    char dir[] = "/tmp/df_store_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[128];
    snprintf(path, sizeof path, "%s/db", dir);
    df_store_t *st = df_store_open(path, &err);
    CHECK_OK(df_store_put_model(st, "sdxl", "abc", 7, 1, &err), &err);
    CHECK_OK(df_store_put_model(st, "sdxl", "abc", 7, 2, &err), &err); /* replace, not duplicate */
    int n = 0;
    CHECK_OK(df_store_list_models(st, count_models, &n, &err), &err);
    CHECK_EQ(n, 1);
    char *v = NULL;
    CHECK_OK(df_store_get_meta(st, "nothing", &v, &err), &err);
    CHECK(v == NULL);
    CHECK_OK(df_store_set_meta(st, "id", "coord-1", &err), &err);
    CHECK_OK(df_store_get_meta(st, "id", &v, &err), &err);
    CHECK(v && strcmp(v, "coord-1") == 0);
    free(v);
    uint64_t seq = 9;
    CHECK_OK(df_store_max_seq(st, &seq, &err), &err);
    CHECK_EQ(seq, 0);
    df_store_close(&st);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

/* ---- the result cache ---- */

static void rm_tree(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
}

static void key_of(int i, char key[65])
{
    uint8_t d[DF_SHA256_BYTES];
    df_sha256(&i, sizeof i, d);
    df_sha256_hex(d, key);
}

/*  Hits return the bytes stored; the least recently used go first when the
 *  limit is reached; the index survives a reopen; damage is a miss. */
static void test_result_cache(void)
{
    char dir[] = "/tmp/df-cache-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    df_error_t err;
    df_error_clear(&err);
    df_result_cache_t *c = df_result_cache_new(dir, 300, &err);
    CHECK(c != NULL);
    if (!c)
        return;
    char k[6][65];
    uint8_t val[6][100];
    for (int i = 0; i < 6; i++) {
        key_of(i, k[i]);
        memset(val[i], 'a' + i, sizeof val[i]);
    }
    uint8_t *got;
    size_t len;
    CHECK_FAILS(df_result_cache_get(c, k[0], &got, &len, &err), &err, DF_E_NOT_FOUND, "no entry");
    for (int i = 0; i < 3; i++)
        CHECK_OK(df_result_cache_put(c, k[i], val[i], 100, &err), &err);
    /* Use 0, so 1 is the least recently used when 3 arrives. */
    CHECK_OK(df_result_cache_get(c, k[0], &got, &len, &err), &err);
    CHECK(len == 100 && got && memcmp(got, val[0], 100) == 0);
    free(got);
    CHECK_OK(df_result_cache_put(c, k[3], val[3], 100, &err), &err);
    CHECK_FAILS(df_result_cache_get(c, k[1], &got, &len, &err), &err, DF_E_NOT_FOUND, "no entry");
    df_result_cache_stats st = df_result_cache_stats_get(c);
    CHECK(st.entries == 3 && st.bytes == 300 && st.evictions == 1 && st.hits == 1 && st.misses == 2);
    /* Larger than the whole cache: not kept, nothing else lost. */
    uint8_t big[400] = {0};
    CHECK_OK(df_result_cache_put(c, k[4], big, sizeof big, &err), &err);
    CHECK_FAILS(df_result_cache_get(c, k[4], &got, &len, &err), &err, DF_E_NOT_FOUND, "no entry");
    CHECK_EQ(df_result_cache_stats_get(c).entries, 3);
    CHECK_FAILS(df_result_cache_put(c, "not-a-key", val[0], 1, &err), &err, DF_E_FORMAT, "bad key");
    /* The same bytes under two keys: evicting one keeps the other's. */
    CHECK_OK(df_result_cache_put(c, k[5], val[3], 100, &err), &err);
    df_result_cache_destroy(&c);

    /* Reopened: the same entries, the same order of use. */
    c = df_result_cache_new(dir, 300, &err);
    CHECK(c != NULL);
    if (!c)
        return;
    CHECK_EQ(df_result_cache_stats_get(c).entries, 3);
    CHECK_OK(df_result_cache_get(c, k[3], &got, &len, &err), &err);
    CHECK(got && memcmp(got, val[3], 100) == 0);
    free(got);
    CHECK_OK(df_result_cache_get(c, k[5], &got, &len, &err), &err);
    CHECK(got && memcmp(got, val[3], 100) == 0);
    free(got);
    /* A damaged object: a miss and a warning, never the wrong bytes. */
    char hex[65], path[700];
    uint8_t d[DF_SHA256_BYTES];
    df_sha256(val[0], 100, d);
    df_sha256_hex(d, hex);
    snprintf(path, sizeof path, "%s/objects/%.2s/%s", dir, hex, hex);
    FILE *f = fopen(path, "r+b");
    CHECK(f != NULL);
    if (f) {
        fputc('z', f);
        fclose(f);
    }
    CHECK_FAILS(df_result_cache_get(c, k[0], &got, &len, &err), &err, DF_E_NOT_FOUND, "no entry");
    CHECK_EQ(df_result_cache_stats_get(c).entries, 2);
    df_result_cache_destroy(&c);

    /* A garbled index line is dropped; a smaller limit evicts at once. */
    snprintf(path, sizeof path, "%s/index", dir);
    f = fopen(path, "a");
    if (f) {
        fputs("garbage line\n", f);
        fclose(f);
    }
    c = df_result_cache_new(dir, 150, &err);
    CHECK(c != NULL);
    if (c) {
        CHECK_EQ(df_result_cache_stats_get(c).entries, 1);
        CHECK_OK(df_result_cache_get(c, k[5], &got, &len, &err), &err); /* the most recently used stays */
        free(got);
    }
    df_result_cache_destroy(&c);
    rm_tree(dir);
}

static int hello_generate(df_sched_t *s, const char *name, uint64_t now)
{
    char *types[1] = {"generate"};
    Dreamfleet__WorkerHello h = DREAMFLEET__WORKER_HELLO__INIT;
    h.worker_id = h.name = (char *)name;
    h.slots = 4;
    h.n_job_types = 1;
    h.job_types = types;
    return df_sched_hello(s, (const uint8_t *)name, strlen(name), &h, now, NULL);
}

static const df_job *submit_generate(df_sched_t *s, uint64_t seed, const char *identity, int no_cache, uint64_t now)
{
    Dreamfleet__GenerateParams p = DREAMFLEET__GENERATE_PARAMS__INIT;
    p.prompt = "a photo of TOK person";
    p.model = "/models/tiny";
    p.model_identity = (char *)identity;
    p.width = p.height = 64;
    p.steps = 2;
    p.guidance = 3;
    p.sampler = "euler";
    p.seed = seed;
    p.count = 2;
    p.no_cache = no_cache;
    uint8_t buf[256];
    Dreamfleet__SubmitJob sj = DREAMFLEET__SUBMIT_JOB__INIT;
    sj.type = "generate";
    sj.params.data = buf;
    sj.params.len = dreamfleet__generate_params__pack(&p, buf);
    const df_job *job = NULL;
    df_sched_submit(s, &sj, now, &job, NULL);
    return job;
}

/*  A worker's images for a task: the task id in the bytes, so a copy from
 *  another task would show. */
static int generate_result(df_sched_t *s, const char *peer, const char *task, uint64_t now)
{
    Dreamfleet__GeneratedImage im = DREAMFLEET__GENERATED_IMAGE__INIT;
    Dreamfleet__GeneratedImage *ims[1] = {&im};
    im.image.data = (uint8_t *)task;
    im.image.len = strlen(task);
    Dreamfleet__GenerateResult out = DREAMFLEET__GENERATE_RESULT__INIT;
    out.worker = (char *)peer;
    out.n_images = 1;
    out.images = ims;
    uint8_t buf[256];
    Dreamfleet__TaskResult r = DREAMFLEET__TASK_RESULT__INIT;
    r.task_id = (char *)task;
    r.output.data = buf;
    r.output.len = dreamfleet__generate_result__pack(&out, buf);
    return df_sched_worker_message(s, (const uint8_t *)peer, strlen(peer), DF_MSG_TASK_RESULT, &r.base, now, NULL);
}

/*  A repeated generation is answered from the cache, task by task, without
 *  a worker; --no-cache, another seed or an input without an identity is
 *  computed again. */
static void test_generate_from_cache(void)
{
    char dir[] = "/tmp/df-cache-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    df_result_cache_t *cache = df_result_cache_new(dir, 1 << 20, NULL);
    df_sched_opts o = opts();
    df_sched_t *s = df_sched_new(NULL, "c", &o, &k_io, 0, NULL);
    df_sched_set_cache(s, cache);
    const char *id = "5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef";
    const df_job *first = submit_generate(s, 7, id, 0, 0);
    CHECK(first && first->ntasks == 2);
    hello_generate(s, "w1", 0);
    df_sched_dispatch(s, 1, NULL);
    CHECK_EQ(count_sent("w1", DF_MSG_TASK_ASSIGN), 2);
    for (int i = 0; i < 2; i++)
        CHECK_EQ(generate_result(s, "w1", assigned("w1", i), 2), DF_OK);
    CHECK(first && first->state == DREAMFLEET__JOB_STATE__JOB_SUCCEEDED);
    clear_sent();

    const df_job *again = submit_generate(s, 7, id, 0, 3);
    CHECK(again && again->state == DREAMFLEET__JOB_STATE__JOB_SUCCEEDED);
    df_sched_dispatch(s, 4, NULL);
    CHECK_EQ(count_sent(NULL, DF_MSG_TASK_ASSIGN), 0);
    for (uint32_t i = 0; again && first && i < 2; i++) {
        const df_task *a = &again->tasks[i], *b = &first->tasks[i];
        CHECK(strcmp(a->worker_id, DF_CACHE_WORKER) == 0);
        CHECK(a->output_len == b->output_len && memcmp(a->output, b->output, a->output_len) == 0);
    }
    CHECK(again && again->summary && strstr(again->summary, "2 from the cache"));

    /* Progress may carry a preview, which the task keeps (the latest one). */
    const df_job *fresh = submit_generate(s, 7, id, 1, 5);   /* --no-cache */
    df_sched_dispatch(s, 5, NULL);
    const char *tid = assigned("w1", 0);
    CHECK(tid != NULL);
    if (tid && fresh) {
        Dreamfleet__TaskProgress pr = DREAMFLEET__TASK_PROGRESS__INIT;
        pr.task_id = (char *)tid;
        pr.fraction = 0.5f;
        pr.message = "image 1/1, step 1/2";
        pr.preview.data = (uint8_t *)"\x89PNG-one";
        pr.preview.len = 8;
        df_sched_worker_message(s, (const uint8_t *)"w1", 2, DF_MSG_TASK_PROGRESS, &pr.base, 6, NULL);
        pr.preview.data = (uint8_t *)"\x89PNG-two";
        df_sched_worker_message(s, (const uint8_t *)"w1", 2, DF_MSG_TASK_PROGRESS, &pr.base, 7, NULL);
        const df_task *t = &fresh->tasks[0];
        CHECK(t->preview_len == 8 && memcmp(t->preview, "\x89PNG-two", 8) == 0 && t->progress == 0.5f);
        CHECK_EQ(generate_result(s, "w1", tid, 8), DF_OK);
        clear_sent();
    }
    const df_job *other = submit_generate(s, 8, id, 0, 5);   /* another seed */
    const df_job *unnamed = submit_generate(s, 7, "", 0, 5); /* a model the client could not see */
    CHECK(fresh && other && unnamed);
    CHECK_EQ(df_sched_queue_depth(s), 4); /* another seed and the unnamed model: computed */
    df_sched_destroy(&s);
    df_result_cache_destroy(&cache);
    clear_sent();
    rm_tree(dir);
}

/*  Submits a train job of p: refused with needle in the message, or (needle
 *  NULL) planned as ntasks tasks. */
static void submit_train(df_sched_t *s, const Dreamfleet__TrainParams *p, const char *needle, uint32_t ntasks)
{
    uint8_t buf[512];
    Dreamfleet__SubmitJob sj = DREAMFLEET__SUBMIT_JOB__INIT;
    sj.type = "train";
    sj.params.data = buf;
    sj.params.len = dreamfleet__train_params__pack(p, buf);
    df_error_t err;
    df_error_clear(&err);
    const df_job *job = NULL;
    if (needle) {
        CHECK_FAILS(df_sched_submit(s, &sj, 0, &job, &err), &err, DF_E_INVALID, needle);
    } else {
        CHECK_OK(df_sched_submit(s, &sj, 0, &job, &err), &err);
        CHECK(job && job->ntasks == ntasks);
    }
}

/*  A train job's parameters are checked before it is accepted, by name. */
static void test_train_plan_checks(void)
{
    df_sched_opts o = opts();
    df_sched_t *s = df_sched_new(NULL, "c", &o, &k_io, 0, NULL);
    char *images[2] = {"/photos/a.png", "/photos/b.jpg"}, *captions[2] = {"a photo of TOK dog", "TOK dog"};
    struct {
        const char *model;
        size_t n, ncap;
        uint32_t steps, res;
        float lr;
        const char *needle;
    } cases[] = {
        {"", 2, 2, 10, 512, 1e-4f, "no model"},
        {"/m", 0, 0, 10, 512, 1e-4f, "0 photos"},
        {"/m", 2, 1, 10, 512, 1e-4f, "one caption each"},
        {"/m", 2, 2, 0, 512, 1e-4f, "steps 0"},
        {"/m", 2, 2, 10, 60, 1e-4f, "resolution 60"},
        {"/m", 2, 2, 10, 512, 3.0f, "learning rate 3"},
        {"/m", 2, 2, 10, 512, 1e-4f, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Dreamfleet__TrainParams p = DREAMFLEET__TRAIN_PARAMS__INIT;
        p.model = (char *)cases[i].model;
        p.n_images = cases[i].n, p.images = images;
        p.n_captions = cases[i].ncap, p.captions = captions;
        p.steps = cases[i].steps, p.resolution = cases[i].res, p.lr = cases[i].lr, p.rank = 4;
        submit_train(s, &p, cases[i].needle, 1);
    }
    /* The training-group, prior and validation fields, one bad at a time
     * on otherwise good parameters. */
    char *classes[1] = {"/photos/c.png"}, *prompts[2] = {"a photo of TOK dog", "TOK dog on a beach"};
    char *good_hash = "8f434346648f6b96df89dda901c5176b10a6d83961dd3c1ac88b59b2dc327aa4", *samples[2] = {good_hash, "x"};
    for (int c = 0; c < 11; c++) {
        Dreamfleet__TrainParams p = DREAMFLEET__TRAIN_PARAMS__INIT;
        p.model = "/m", p.n_images = p.n_captions = 2, p.images = images, p.captions = captions;
        p.steps = 10, p.resolution = 512, p.lr = 1e-4f, p.rank = 4;
        const char *needle = NULL;
        switch (c) {
        case 0: p.members = 65, needle = "65 workers: at most 64"; break;
        case 1: p.local_steps = 65, needle = "65 local steps"; break;
        case 2: p.delta_encoding = "int4", needle = "delta encoding 'int4'"; break;
        case 3: p.n_class_images = 1, p.class_images = classes, needle = "1 class images with 0 captions"; break;
        case 4:
            p.n_class_images = p.n_class_captions = 1, p.class_images = p.class_captions = classes;
            p.prior_weight = 101, needle = "prior weight 101";
            break;
        case 5: p.n_validation_prompts = 2, p.validation_prompts = prompts, p.validation_width = 100,
                needle = "validation size 100x0"; break;
        case 6: p.n_validation_prompts = 2, p.validation_prompts = prompts, p.steps = 1000, p.validate_every = 1,
                needle = "more than 1024 validation images"; break;
        case 7: p.optimizer = "sgd", needle = "optimizer 'sgd': adamw or adamw8bit"; break;
        case 8: p.n_samples = 1, p.samples = samples, needle = "1 sample caches for 2 photos"; break;
        case 9: p.n_samples = 2, p.samples = samples, needle = "sample cache 'x' is not an artifact's sha256"; break;
        default: p.members = 3; break; /* good: a group of three */
        }
        submit_train(s, &p, needle, 3);
    }
    df_sched_destroy(&s);
    clear_sent();
}

/*  An encode job is one task per photo, each with that photo alone; bad
 *  parameters are refused by name. */
static void test_encode_plan(void)
{
    df_sched_opts o = opts();
    df_sched_t *s = df_sched_new(NULL, "c", &o, &k_io, 0, NULL);
    char *images[3] = {"/p/a.png", "/p/b.png", "/p/c.png"}, *captions[3] = {"TOK dog", "a dog", "TOK"};
    char *ids[3] = {"1", "2", "3"};
    Dreamfleet__PhotoGeometry g[3], *geo[3] = {&g[0], &g[1], &g[2]};
    for (int i = 0; i < 3; i++) {
        dreamfleet__photo_geometry__init(&g[i]);
        g[i].original_width = 1000u + (uint32_t)i, g[i].original_height = 800;
    }
    for (int c = 0; c < 6; c++) {
        Dreamfleet__EncodeParams p = DREAMFLEET__ENCODE_PARAMS__INIT;
        p.model = "/m", p.n_images = p.n_captions = 3, p.images = images, p.captions = captions, p.resolution = 512;
        const char *needle = NULL;
        switch (c) {
        case 0: p.model = "", needle = "encode: no model"; break;
        case 1: p.n_captions = 2, needle = "3 photos with 2 captions"; break;
        case 2: p.n_image_identities = 2, p.image_identities = ids, needle = "2 photo identities for 3 photos"; break;
        case 3: p.resolution = 100, needle = "resolution 100"; break;
        case 4: p.n_geometry = 1, p.geometry = geo, needle = "1 photo geometries for 3 photos"; break;
        default: p.n_geometry = 3, p.geometry = geo; break;
        }
        uint8_t buf[512];
        Dreamfleet__SubmitJob sj = DREAMFLEET__SUBMIT_JOB__INIT;
        sj.type = "encode";
        sj.params.data = buf;
        sj.params.len = dreamfleet__encode_params__pack(&p, buf);
        df_error_t err;
        df_error_clear(&err);
        const df_job *job = NULL;
        if (needle) {
            CHECK_FAILS(df_sched_submit(s, &sj, 0, &job, &err), &err, DF_E_INVALID, needle);
            continue;
        }
        CHECK_OK(df_sched_submit(s, &sj, 0, &job, &err), &err);
        CHECK(job && job->ntasks == 3);
        for (uint32_t i = 0; job && i < job->ntasks; i++) {
            Dreamfleet__EncodeParams *t =
                dreamfleet__encode_params__unpack(NULL, job->tasks[i].params_len, job->tasks[i].params);
            CHECK(t && t->n_images == 1 && t->first == i && strcmp(t->images[0], images[i]) == 0 &&
                  strcmp(t->captions[0], captions[i]) == 0);
            CHECK(t && t->n_geometry == 1 && t->geometry[0]->original_width == 1000 + i); /* its own photo's */
            if (t)
                dreamfleet__encode_params__free_unpacked(t, NULL);
        }
    }
    df_sched_destroy(&s);
    clear_sent();
}

/*  A prep job is one task per photo; bad parameters are refused by name;
 *  its result is every photo's verdict in order, with near-duplicates
 *  chosen over the whole set (the better photo kept, whichever worker had
 *  it) and a task's output that is not one photo's verdict refused. */
static void test_prep_plan_and_set(void)
{
    df_sched_opts o = opts();
    df_sched_t *s = df_sched_new(NULL, "c", &o, &k_io, 0, NULL);
    char *images[3] = {"/p/a.png", "/p/b.png", "/p/c.png"}, *sidecars[3] = {"", "a dog", ""};
    char *ids[3] = {"1", "2", "3"};
    char *types[1] = {"prep"};
    Dreamfleet__WorkerHello h = DREAMFLEET__WORKER_HELLO__INIT;
    h.worker_id = h.name = "w1", h.slots = 4, h.n_job_types = 1, h.job_types = types;
    CHECK_EQ(df_sched_hello(s, (const uint8_t *)"w1", 2, &h, 0, NULL), DF_OK);
    const char *hash = "5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef";
    for (int c = 0; c < 9; c++) { /* 6: good; 7: a worker answers with no verdict; 8: an accepted photo without its image */
        Dreamfleet__PrepParams p = DREAMFLEET__PREP_PARAMS__INIT;
        p.n_images = p.n_sidecars = 3, p.images = images, p.sidecars = sidecars, p.resolution = 512;
        p.bucket_step = 32;
        const char *needle = NULL;
        switch (c) {
        case 0: p.n_images = 0, p.n_sidecars = 0, needle = "prep: 0 photos"; break;
        case 1: p.n_sidecars = 2, needle = "2 captions for 3 photos"; break;
        case 2: p.n_image_identities = 2, p.image_identities = ids, needle = "2 photo identities for 3 photos"; break;
        case 3: p.resolution = 500, needle = "resolution 500"; break;
        case 4: p.framing = 1, needle = "framing around a face goes with a person"; break;
        case 5: p.min_face_clarity = 2, needle = "a threshold out of range"; break;
        default: break;
        }
        uint8_t buf[512];
        Dreamfleet__SubmitJob sj = DREAMFLEET__SUBMIT_JOB__INIT;
        sj.type = "prep";
        sj.params.data = buf;
        sj.params.len = dreamfleet__prep_params__pack(&p, buf);
        df_error_t err;
        df_error_clear(&err);
        const df_job *job = NULL;
        if (needle) {
            CHECK_FAILS(df_sched_submit(s, &sj, 0, &job, &err), &err, DF_E_INVALID, needle);
            continue;
        }
        CHECK_OK(df_sched_submit(s, &sj, 0, &job, &err), &err);
        CHECK(job && job->ntasks == 3);
        clear_sent();
        df_sched_dispatch(s, 1, NULL);
        CHECK_EQ(count_sent("w1", DF_MSG_TASK_ASSIGN), 3);
        /* a and c are the same photo (hashes 1 bit apart), c the sharper;
         * b is a broken file. */
        for (int k = 0; k < g_nsent; k++) {
            if (g_sent[k].type != DF_MSG_TASK_ASSIGN)
                continue;
            const Dreamfleet__TaskAssign *a = (const Dreamfleet__TaskAssign *)g_sent[k].msg;
            Dreamfleet__PrepParams *t = dreamfleet__prep_params__unpack(NULL, a->params.len, a->params.data);
            CHECK(t && t->n_images == 1 && t->n_sidecars == 1);
            if (!t)
                continue;
            const uint32_t i = t->first;
            CHECK(i < 3 && strcmp(t->images[0], images[i]) == 0 && strcmp(t->sidecars[0], sidecars[i]) == 0);
            Dreamfleet__PrepItem it = DREAMFLEET__PREP_ITEM__INIT, *its[1] = {&it};
            it.name = t->images[0];
            it.scored = i != 1;
            it.quality = i == 2 ? 0.99 : 0.96;
            it.phash = i == 2 ? 0xF0F0F0F0F0F0F0F1ull : 0xF0F0F0F0F0F0F0F0ull;
            it.reason = i == 1 ? "/p/b.png: not a readable PNG" : "";
            it.image = i == 1 || (c == 8 && i == 2) ? "" : (char *)hash;
            it.caption = "a photo of TOK person";
            Dreamfleet__PrepResult out = DREAMFLEET__PREP_RESULT__INIT;
            out.n_items = c == 7 ? 0 : 1;
            out.items = its;
            uint8_t ob[1024];
            Dreamfleet__TaskResult r = DREAMFLEET__TASK_RESULT__INIT;
            r.task_id = a->task_id;
            r.output.data = ob;
            r.output.len = dreamfleet__prep_result__pack(&out, ob);
            CHECK_EQ(df_sched_worker_message(s, (const uint8_t *)"w1", 2, DF_MSG_TASK_RESULT, &r.base, 2, NULL), DF_OK);
            dreamfleet__prep_params__free_unpacked(t, NULL);
        }
        if (c == 8) {
            CHECK(job && job->state == DREAMFLEET__JOB_STATE__JOB_FAILED && job->error &&
                  strstr(job->error, "accepted /p/c.png without a training image"));
            continue;
        }
        if (c == 7) {
            CHECK(job && job->state == DREAMFLEET__JOB_STATE__JOB_FAILED && job->error &&
                  strstr(job->error, "not a PrepResult of one photo"));
            if (job && job->error && !strstr(job->error, "PrepResult"))
                fprintf(stderr, "  %s\n", job->error);
            continue;
        }
        CHECK(job && job->state == DREAMFLEET__JOB_STATE__JOB_SUCCEEDED);
        CHECK(job && job->summary && strcmp(job->summary, "1 of 3 photos accepted") == 0);
        Dreamfleet__PrepResult *r = job ? dreamfleet__prep_result__unpack(NULL, job->result_len, job->result) : NULL;
        CHECK(r && r->n_items == 3 && r->accepted == 1 && strstr(r->warning, "only 1 photo accepted"));
        if (r && r->n_items == 3) {
            CHECK(strstr(r->items[0]->reason, "near-duplicate of c.png (1 of 64 hash bits apart") &&
                  !r->items[0]->image[0]);
            CHECK(strstr(r->items[1]->reason, "not a readable PNG"));
            CHECK(!r->items[2]->reason[0] && strcmp(r->items[2]->image, hash) == 0);
        }
        if (r)
            dreamfleet__prep_result__free_unpacked(r, NULL);
    }
    df_sched_destroy(&s);
    clear_sent();
}

int main(int argc, char **argv)
{
    test_filter_ = argc > 1 ? argv[1] : NULL;
    df_log_set_level(DF_LOG_ERROR);
    RUN(test_submit_checks);
    RUN(test_spread_and_complete);
    RUN(test_retry_then_fail);
    RUN(test_lost_worker_and_late_result);
    RUN(test_readopt_from_queue);
    RUN(test_cancel);
    RUN(test_worker_types_and_hello_checks);
    RUN(test_placement_by_device_memory);
    RUN(test_recovery_from_store);
    RUN(test_store_models_meta);
    RUN(test_result_cache);
    RUN(test_generate_from_cache);
    RUN(test_train_plan_checks);
    RUN(test_encode_plan);
    RUN(test_prep_plan_and_set);
    return test_summary();
}
