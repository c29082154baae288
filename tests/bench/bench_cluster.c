/*  bench_cluster.c - how fast one coordinator schedules, on loopback.
 *
 *    bench_cluster [--tasks N] [--workers LIST] [--sim-workers W] [--sim-duration MS] [--curve]
 *
 *  Baseline (same run, same transport): bare ZeroMQ request/reply between a
 *  ROUTER and DEALERs, with no scheduling, storage or protobuf: the floor.
 *  Then, for each worker count in LIST (default 1,8,64): a real coordinator
 *  (in-process, durable SQLite store, the daemon's own event loop) schedules
 *  one job of N empty tasks to simulated workers that answer at once:
 *  tasks/s end to end, and dispatch latency (a worker's result leaving to
 *  its next assignment arriving, p50/p99). Last, a simulated cluster of W
 *  workers (default 1000) running tasks of a given duration: how far the
 *  makespan stays from the ideal as the cluster grows.
 *
 *  Simulated workers are DEALER sockets driven by one thread with zmq_poll:
 *  the protocol is the real one (hello, heartbeats, results, acks). Not a
 *  test: figures go to docs/performance.md.
 */
#include <czmq.h>
#include <getopt.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "coordinator_daemon.h"
#include "keys.h"
#include "log.h"
#include "netmsg.h"
#include "rpc.h"

static int64_t now_us(void) { return zclock_usecs(); }

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct(int64_t *v, size_t n, double p)
{
    if (!n)
        return 0;
    qsort(v, n, sizeof *v, cmp_i64);
    size_t i = (size_t)(p * (double)(n - 1));
    return (double)v[i] / 1000.0;
}

/* ---------------------------------------------------------- baseline */

typedef struct {
    const char *endpoint;
    int clients, calls;
    int64_t *lat;
    size_t nlat;
    double per_s;
} baseline_t;

static void *echo_server(void *arg)
{
    zsock_t *router = arg;
    for (;;) {
        zmsg_t *m = zmsg_recv(router);
        if (!m)
            break;
        zframe_t *last = zmsg_last(m);
        if (zframe_size(last) == 4 && memcmp(zframe_data(last), "quit", 4) == 0) {
            zmsg_destroy(&m);
            break;
        }
        zmsg_send(&m, router);
    }
    return NULL;
}

static void run_baseline(baseline_t *b)
{
    zsock_t *router = zsock_new(ZMQ_ROUTER);
    zsock_bind(router, "tcp://127.0.0.1:*");
    char *ep = zsock_last_endpoint(router);
    pthread_t th;
    pthread_create(&th, NULL, echo_server, router);
    zsock_t **c = calloc((size_t)b->clients, sizeof *c);
    for (int i = 0; i < b->clients; i++) {
        c[i] = zsock_new(ZMQ_DEALER);
        zsock_connect(c[i], "%s", ep);
    }
    /* A 60-byte payload, about a TaskResult's size. */
    char payload[60];
    memset(payload, 'x', sizeof payload);
    b->lat = calloc((size_t)b->calls, sizeof *b->lat);
    zpoller_t *poller = zpoller_new(NULL);
    for (int i = 0; i < b->clients; i++)
        zpoller_add(poller, c[i]);
    int64_t *sent = calloc((size_t)b->clients, sizeof *sent);
    int64_t t0 = now_us();
    int issued = 0, done = 0;
    for (int i = 0; i < b->clients && issued < b->calls; i++, issued++) {
        sent[i] = now_us();
        zframe_t *f = zframe_new(payload, sizeof payload);
        zframe_send(&f, c[i], 0);
    }
    while (done < b->calls) {
        zsock_t *s = zpoller_wait(poller, 5000);
        if (!s)
            break;
        zframe_t *f = zframe_recv(s);
        zframe_destroy(&f);
        int i = 0;
        while (c[i] != s)
            i++;
        b->lat[b->nlat++] = now_us() - sent[i];
        done++;
        if (issued < b->calls) {
            sent[i] = now_us();
            f = zframe_new(payload, sizeof payload);
            zframe_send(&f, s, 0);
            issued++;
        }
    }
    b->per_s = done / ((now_us() - t0) / 1e6);
    zstr_send(c[0], "quit");
    pthread_join(th, NULL);
    zpoller_destroy(&poller);
    for (int i = 0; i < b->clients; i++)
        zsock_destroy(&c[i]);
    free(c), free(sent);
    zsock_destroy(&router);
    free(ep);
}

/* ----------------------------------------------------- simulated workers */

typedef struct {
    zsock_t *sock;
    int64_t due_us;        /* when the current task finishes (0: idle) */
    char task[64];
    int64_t result_sent_us; /* for dispatch latency */
    int64_t last_hb_us;
    int ready;
} sim_worker;

typedef struct {
    const char *endpoint;
    int n;
    uint32_t duration_ms;
    volatile int stop;
    sim_worker *w;
    int64_t *lat;
    size_t nlat, cap;
    uint64_t tasks_done;
    df_wire_limits limits;
    pthread_t thread;
} sim_t;

static void sim_send(sim_t *s, sim_worker *w, df_msg_type type, const ProtobufCMessage *m)
{
    df_netmsg_send_sock(w->sock, type, m, &s->limits, NULL);
}

static void sim_finish(sim_t *s, sim_worker *w)
{
    Dreamfleet__TaskResult r = DREAMFLEET__TASK_RESULT__INIT;
    r.task_id = w->task;
    sim_send(s, w, DF_MSG_TASK_RESULT, &r.base);
    w->result_sent_us = now_us();
    w->due_us = 0;
    s->tasks_done++;
}

static void *sim_main(void *arg)
{
    sim_t *s = arg;
    zmq_pollitem_t *items = calloc((size_t)s->n, sizeof *items);
    for (int i = 0; i < s->n; i++) {
        sim_worker *w = &s->w[i];
        items[i].socket = zsock_resolve(w->sock);
        items[i].events = ZMQ_POLLIN;
        char id[32], name[32];
        snprintf(id, sizeof id, "sim-%d-%d", (int)getpid(), i);
        snprintf(name, sizeof name, "sim%d", i);
        char *types[1] = {"noop"};
        Dreamfleet__WorkerHello h = DREAMFLEET__WORKER_HELLO__INIT;
        h.worker_id = id, h.name = name, h.slots = 1, h.n_job_types = 1, h.job_types = types;
        sim_send(s, w, DF_MSG_HELLO, &h.base);
        w->last_hb_us = now_us();
    }
    while (!s->stop) {
        int64_t t = now_us(), next = t + 100000;
        for (int i = 0; i < s->n; i++)
            if (s->w[i].due_us && s->w[i].due_us < next)
                next = s->w[i].due_us;
        long wait_ms = (long)((next - t) / 1000);
        zmq_poll(items, s->n, wait_ms > 0 ? wait_ms : 0);
        t = now_us();
        for (int i = 0; i < s->n; i++) {
            sim_worker *w = &s->w[i];
            while (items[i].revents & ZMQ_POLLIN) {
                df_msg_type type;
                ProtobufCMessage *m;
                if (df_netmsg_recv_sock(w->sock, 0, &s->limits, &type, &m, NULL))
                    break;
                if (type == DF_MSG_HELLO_ACK) {
                    w->ready = 1;
                } else if (type == DF_MSG_TASK_ASSIGN) {
                    Dreamfleet__TaskAssign *a = (Dreamfleet__TaskAssign *)m;
                    snprintf(w->task, sizeof w->task, "%s", a->task_id);
                    if (w->result_sent_us && s->nlat < s->cap)
                        s->lat[s->nlat++] = now_us() - w->result_sent_us;
                    w->result_sent_us = 0;
                    if (s->duration_ms == 0)
                        sim_finish(s, w);
                    else
                        w->due_us = now_us() + (int64_t)s->duration_ms * 1000;
                }
                df_wire_free(m);
                if (!(zsock_events(w->sock) & ZMQ_POLLIN))
                    break;
            }
            if (w->due_us && t >= w->due_us)
                sim_finish(s, w);
            if (t - w->last_hb_us > 1000000) {
                Dreamfleet__Heartbeat hb = DREAMFLEET__HEARTBEAT__INIT;
                sim_send(s, w, DF_MSG_HEARTBEAT, &hb.base);
                w->last_hb_us = t;
            }
        }
    }
    free(items);
    return NULL;
}

static sim_t *sim_start(const char *endpoint, const char *keys, int n, uint32_t duration_ms, size_t lat_cap)
{
    sim_t *s = calloc(1, sizeof *s);
    s->endpoint = endpoint;
    s->n = n;
    s->duration_ms = duration_ms;
    s->w = calloc((size_t)n, sizeof *s->w);
    s->cap = lat_cap;
    s->lat = calloc(lat_cap, sizeof *s->lat);
    s->limits = df_wire_default_limits();
    for (int i = 0; i < n; i++) {
        s->w[i].sock = zsock_new(ZMQ_DEALER);
        zsock_set_rcvhwm(s->w[i].sock, 0);
        zsock_set_sndhwm(s->w[i].sock, 0);
        df_rpc_secure_socket(s->w[i].sock, endpoint, keys, DF_ROLE_WORKER, 1, NULL);
        zsock_connect(s->w[i].sock, "%s", endpoint);
    }
    pthread_create(&s->thread, NULL, sim_main, s);
    return s;
}

static void sim_stop(sim_t **sp)
{
    sim_t *s = *sp;
    s->stop = 1;
    pthread_join(s->thread, NULL);
    for (int i = 0; i < s->n; i++)
        zsock_destroy(&s->w[i].sock);
    free(s->w), free(s->lat), free(s);
    *sp = NULL;
}

/* --------------------------------------------------------- coordinator */

typedef struct {
    df_coordinator_t *c;
    pthread_t thread;
    char state[64];
} coord_t;

static void *coord_main(void *arg)
{
    coord_t *c = arg;
    df_coordinator_run(c->c, NULL);
    return NULL;
}

static coord_t *coord_start(const char *keys)
{
    coord_t *c = calloc(1, sizeof *c);
    snprintf(c->state, sizeof c->state, "/tmp/df_bench_XXXXXX");
    if (!mkdtemp(c->state))
        return NULL;
    df_coordinator_opts o = {.bind = "tcp://127.0.0.1:*", .state_dir = c->state, .keys_dir = keys, .insecure = !keys};
    o.sched = df_sched_default_opts();
    o.sched.timeout_ms = 20000; /* a loaded 2-core machine must not declare simulated workers lost */
    o.limits = df_wire_default_limits();
    df_error_t err;
    df_error_clear(&err);
    c->c = df_coordinator_new(&o, &err);
    if (!c->c) {
        fprintf(stderr, "bench_cluster: %s\n", err.msg);
        exit(1);
    }
    pthread_create(&c->thread, NULL, coord_main, c);
    return c;
}

static void coord_stop(coord_t **cp)
{
    coord_t *c = *cp;
    df_coordinator_stop(c->c);
    pthread_join(c->thread, NULL);
    df_coordinator_destroy(&c->c);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", c->state);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", c->state);
    free(c);
    *cp = NULL;
}

/* Submits a noop job of n tasks and waits for it; returns seconds. */
static double run_job(df_rpc_t *rpc, uint32_t n)
{
    Dreamfleet__NoopParams p = DREAMFLEET__NOOP_PARAMS__INIT;
    uint8_t buf[16];
    Dreamfleet__SubmitJob sj = DREAMFLEET__SUBMIT_JOB__INIT;
    sj.type = "noop";
    sj.params.data = buf;
    sj.params.len = dreamfleet__noop_params__pack(&p, buf);
    sj.shards = n;
    Dreamfleet__Request req = DREAMFLEET__REQUEST__INIT;
    req.body_case = DREAMFLEET__REQUEST__BODY_SUBMIT;
    req.submit = &sj;
    Dreamfleet__Reply *rep = NULL;
    df_error_t err;
    df_error_clear(&err);
    int64_t t0 = now_us();
    if (df_rpc_call(rpc, &req, &rep, &err) || rep->status) {
        fprintf(stderr, "bench_cluster: submit: %s\n", rep ? rep->error : err.msg);
        exit(1);
    }
    char id[64];
    snprintf(id, sizeof id, "%s", rep->job->job_id);
    df_wire_free(&rep->base);
    for (;;) {
        Dreamfleet__JobQuery q = DREAMFLEET__JOB_QUERY__INIT;
        q.job_id = id;
        Dreamfleet__Request sr = DREAMFLEET__REQUEST__INIT;
        sr.body_case = DREAMFLEET__REQUEST__BODY_STATUS;
        sr.status = &q;
        if (df_rpc_call(rpc, &sr, &rep, &err) || rep->status) {
            fprintf(stderr, "bench_cluster: status: %s\n", err.msg);
            exit(1);
        }
        int state = rep->job->state;
        df_wire_free(&rep->base);
        if (state == DREAMFLEET__JOB_STATE__JOB_SUCCEEDED)
            break;
        if (state >= DREAMFLEET__JOB_STATE__JOB_FAILED) {
            fprintf(stderr, "bench_cluster: job %s ended in state %d\n", id, state);
            exit(1);
        }
        zclock_sleep(5);
    }
    return (now_us() - t0) / 1e6;
}

static void wait_ready(sim_t *s)
{
    for (int tries = 0; tries < 600; tries++) {
        int ready = 0;
        for (int i = 0; i < s->n; i++)
            ready += s->w[i].ready;
        if (ready == s->n)
            return;
        zclock_sleep(50);
    }
    fprintf(stderr, "bench_cluster: simulated workers did not all connect\n");
}

int main(int argc, char **argv)
{
    uint32_t tasks = 20000, sim_workers = 1000, sim_duration = 200;
    const char *list = "1,8,64";
    int curve = 0, c;
    static const struct option o[] = {{"tasks", required_argument, NULL, 't'},
                                      {"workers", required_argument, NULL, 'w'},
                                      {"sim-workers", required_argument, NULL, 's'},
                                      {"sim-duration", required_argument, NULL, 'd'},
                                      {"curve", no_argument, NULL, 'c'},
                                      {NULL, 0, NULL, 0}};
    while ((c = getopt_long(argc, argv, "", o, NULL)) != -1) {
        if (c == 't')
            tasks = (uint32_t)atoi(optarg);
        else if (c == 'w')
            list = optarg;
        else if (c == 's')
            sim_workers = (uint32_t)atoi(optarg);
        else if (c == 'd')
            sim_duration = (uint32_t)atoi(optarg);
        else if (c == 'c')
            curve = 1;
        else {
            fprintf(stderr, "usage: bench_cluster [--tasks N] [--workers 1,8,64] [--sim-workers W] "
                            "[--sim-duration MS] [--curve]\n");
            return 2;
        }
    }
    df_log_set_level(DF_LOG_ERROR);
    zsys_handler_set(NULL);
    zsys_set_max_sockets(0);
    char keys[64] = "";
    if (curve) {
        snprintf(keys, sizeof keys, "/tmp/df_bench_keys_XXXXXX");
        if (!mkdtemp(keys) || df_keys_generate(keys, NULL))
            return 1;
    }
    printf("one coordinator on tcp loopback, %s, 2 cores shared by everything\n\n",
           curve ? "CURVE encryption and authentication" : "no encryption (--curve to add it)");

    baseline_t base = {.clients = 8, .calls = 50000};
    run_baseline(&base);
    printf("baseline: bare ZeroMQ request/reply, 8 DEALERs to a ROUTER echo: %.0f calls/s, p50 %.3f ms, p99 %.3f ms\n\n",
           base.per_s, pct(base.lat, base.nlat, 0.5), pct(base.lat, base.nlat, 0.99));
    free(base.lat);

    printf("%-10s %8s %12s %14s %14s\n", "workers", "tasks", "tasks/s", "dispatch p50", "dispatch p99");
    char buf[256];
    snprintf(buf, sizeof buf, "%s", list);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        int n = atoi(tok);
        if (n <= 0)
            continue;
        coord_t *co = coord_start(curve ? keys : NULL);
        const char *ep = df_coordinator_endpoint(co->c);
        sim_t *s = sim_start(ep, curve ? keys : NULL, n, 0, tasks + 16);
        wait_ready(s);
        df_rpc_opts ro = {.endpoint = ep, .keys_dir = curve ? keys : NULL, .role = DF_ROLE_CLIENT, .insecure = 1,
                          .timeout_ms = 60000};
        df_rpc_t *rpc = df_rpc_new(&ro, NULL);
        double secs = run_job(rpc, tasks);
        printf("%-10d %8u %12.0f %11.3f ms %11.3f ms\n", n, tasks, tasks / secs, pct(s->lat, s->nlat, 0.5),
               pct(s->lat, s->nlat, 0.99));
        fflush(stdout);
        df_rpc_destroy(&rpc);
        sim_stop(&s);
        coord_stop(&co);
    }

    /* A large simulated cluster with real task durations. */
    uint32_t sim_tasks = sim_workers * 5;
    coord_t *co = coord_start(curve ? keys : NULL);
    const char *ep = df_coordinator_endpoint(co->c);
    sim_t *s = sim_start(ep, curve ? keys : NULL, (int)sim_workers, sim_duration, sim_tasks + 16);
    wait_ready(s);
    df_rpc_opts ro = {.endpoint = ep, .keys_dir = curve ? keys : NULL, .role = DF_ROLE_CLIENT, .insecure = 1,
                      .timeout_ms = 120000};
    df_rpc_t *rpc = df_rpc_new(&ro, NULL);
    double secs = run_job(rpc, sim_tasks);
    double ideal = 5.0 * sim_duration / 1000.0;
    printf("\nsimulated cluster: %u workers, %u tasks of %u ms: makespan %.2f s against an ideal %.2f s "
           "(scheduling overhead %.1f%%), dispatch p50 %.3f ms, p99 %.3f ms\n",
           sim_workers, sim_tasks, sim_duration, secs, ideal, 100.0 * (secs - ideal) / ideal, pct(s->lat, s->nlat, 0.5),
           pct(s->lat, s->nlat, 0.99));
    df_rpc_destroy(&rpc);
    sim_stop(&s);
    coord_stop(&co);
    if (curve) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf %s", keys);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", keys);
    }
    return 0;
}
