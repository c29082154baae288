/*  test_cluster.c - the cluster as processes on loopback: a coordinator,
 *  three workers and the CLI, with CURVE keys.
 *
 *    test_cluster COORDINATOR WORKER CLIENT CORPUS_DIR
 *
 *  A bench job of 12 shards spreads over all workers; kill -9 of a worker
 *  mid-job still completes the job; kill -9 of the coordinator mid-job and a
 *  restart complete it with nothing lost or duplicated; unlisted keys are
 *  refused (and the client says so); malformed and oversized messages leave
 *  the coordinator serving; SIGTERM lets a worker finish its task; models
 *  reach workers through the artifact store; cancel and the embedded mode
 *  work. Logs stay in the test's directory for a failing run. */
#include <czmq.h>
#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "png_write.h"
#include "proc.h"
#include "safetensors.h"
#include "test.h"
#include "wire.h"

static const char *g_coord_bin, *g_worker_bin, *g_client_bin, *g_corpus;
static char g_dir[128], g_keys[256], g_state[256], g_endpoint[128];
static pid_t g_coord;
static pid_t g_workers[8];
static int g_nworkers;

#define OUT_CAP 65536
static char g_out[OUT_CAP], g_err[8192];

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

static void start_coordinator(const char *bind)
{
    char log[300];
    snprintf(log, sizeof log, "%s/coordinator.log", g_dir);
    char *argv[] = {(char *)g_coord_bin, "--bind", (char *)bind, "--state", g_state, "--keys", g_keys,
                    "--heartbeat", "200", "--timeout", "1000", "--max-message", "1048576", NULL};
    g_coord = proc_start(argv, log);
    char rest[128];
    /* A restart appends to the same log: wait for the newest "listening". */
    int seen = 0;
    for (int tries = 0; tries < 100; tries++) {
        FILE *f = fopen(log, "r");
        int n = 0;
        char line[1024];
        while (f && fgets(line, sizeof line, f))
            if (strstr(line, "listening "))
                n++, snprintf(rest, sizeof rest, "%s", strstr(line, "listening ") + 10);
        if (f)
            fclose(f);
        if (n > seen || (tries == 0 && n > 0 && strcmp(bind, g_endpoint) != 0 && g_endpoint[0] == '\0')) {
            rest[strcspn(rest, "\r\n")] = '\0';
            snprintf(g_endpoint, sizeof g_endpoint, "%s", rest);
            return;
        }
        if (tries == 0)
            seen = n;
        proc_sleep_ms(50);
    }
    fprintf(stderr, "coordinator did not start; see %s\n", log);
}

/* Every worker started, by name (the latest pid of each), for tests that
 * must kill the one holding a given task. */
static struct {
    char name[32];
    pid_t pid;
} g_started[32];
static int g_nstarted;

static pid_t start_worker(const char *name, const char *keys)
{
    char log[300], cache[300];
    snprintf(log, sizeof log, "%s/%s.log", g_dir, name);
    snprintf(cache, sizeof cache, "%s/cache-%s", g_dir, name);
    char *argv[] = {(char *)g_worker_bin, "--connect", g_endpoint, "--keys", (char *)keys, "--name", (char *)name,
                    "--cache", cache, NULL};
    pid_t pid = proc_start(argv, log);
    if (g_nstarted < 32) {
        snprintf(g_started[g_nstarted].name, sizeof g_started[g_nstarted].name, "%s", name);
        g_started[g_nstarted++].pid = pid;
    }
    return pid;
}

/* Runs the client with --coordinator/--keys/--json and the given words. */
static int client(const char *keys, int timeout_ms, ...)
{
    char *argv[64] = {(char *)g_client_bin, "--coordinator", g_endpoint, "--keys", (char *)keys, "--json"};
    int n = 6;
    va_list ap;
    va_start(ap, timeout_ms);
    const char *a;
    while ((a = va_arg(ap, const char *)) && n < 63)
        argv[n++] = (char *)a;
    va_end(ap);
    argv[n] = NULL;
    return proc_run(argv, g_out, OUT_CAP, g_err, sizeof g_err, timeout_ms);
}

static int alive_workers(void)
{
    if (client(g_keys, 5000, "workers", NULL) != 0)
        return -1;
    return count(g_out, "\"alive\":true");
}

static int wait_workers(int n)
{
    for (int i = 0; i < 100; i++) {
        if (alive_workers() == n)
            return 0;
        proc_sleep_ms(100);
    }
    return -1;
}

/* Job id from a --json submit answer. */
static void job_id(char *id, size_t cap)
{
    /* The last job named: a command's own (train watches its encode job first). */
    const char *p = NULL;
    for (const char *q = strstr(g_out, "\"job\":\""); q; q = strstr(q + 1, "\"job\":\""))
        p = q;
    id[0] = '\0';
    if (p) {
        p += 7;
        size_t n = strcspn(p, "\"");
        snprintf(id, cap, "%.*s", (int)(n < cap ? n : cap - 1), p);
    }
}

/* ------------------------------------------------------------------ tests */

static void test_bench_spreads_over_all_workers(void)
{
    CHECK_EQ(wait_workers(3), 0);
    CHECK_EQ(client(g_keys, 120000, "bench", "--shards", "12", "--size", "64", NULL), 0);
    /* Watch prints one JSON line per poll; the last is the final state. */
    const char *last = strrchr(g_out, '{') ? g_out : g_out;
    (void)last;
    CHECK(strstr(g_out, "\"state\":\"succeeded\",\"created_ms\"") != NULL);
    CHECK(strstr(g_out, "all results correct") != NULL);
    CHECK(strstr(g_out, "on 3 workers") != NULL);
    /* fetch writes the summary, the combined result and each task's output. */
    char id[64], dir[300], path[600];
    job_id(id, sizeof id);
    snprintf(dir, sizeof dir, "%s/fetched", g_dir);
    CHECK_EQ(client(g_keys, 30000, "fetch", id, "-o", dir, NULL), 0);
    CHECK(strstr(g_out, "\"files\":14") != NULL);
    snprintf(path, sizeof path, "%s/%s/summary.txt", dir, id);
    CHECK_EQ(proc_wait_line(path, "all results correct", NULL, 0, 100), 0);
    snprintf(path, sizeof path, "%s/%s/result.pb", dir, id);
    CHECK_EQ(access(path, F_OK), 0);
    snprintf(path, sizeof path, "%s/%s/%s.11.pb", dir, id, id);
    CHECK_EQ(access(path, F_OK), 0);
}

static void test_worker_killed_mid_job(void)
{
    CHECK_EQ(client(g_keys, 10000, "noop", "--shards", "9", "--duration", "1500", "--no-wait", NULL), 0);
    char id[64];
    job_id(id, sizeof id);
    proc_sleep_ms(700);
    proc_stop(g_workers[1], SIGKILL, 5000); /* in the middle of a task */
    CHECK_EQ(client(g_keys, 60000, "watch", id, NULL), 0);
    CHECK_EQ(client(g_keys, 10000, "status", id, NULL), 0);
    CHECK_EQ(count(g_out, "\"state\":\"succeeded\""), 10); /* the job and its 9 tasks */
    CHECK(count(g_out, "\"attempt\":2") >= 1);             /* the killed worker's task ran again */
    g_workers[1] = start_worker("w2-again", g_keys);
    CHECK_EQ(wait_workers(3), 0);
}

static void test_coordinator_killed_mid_job(void)
{
    CHECK_EQ(client(g_keys, 10000, "noop", "--shards", "9", "--duration", "1500", "--no-wait", NULL), 0);
    char id[64];
    job_id(id, sizeof id);
    proc_sleep_ms(700);
    proc_stop(g_coord, SIGKILL, 5000);
    proc_sleep_ms(500);
    start_coordinator(g_endpoint); /* same port, same state */
    CHECK_EQ(client(g_keys, 60000, "watch", id, NULL), 0);
    CHECK_EQ(client(g_keys, 10000, "status", id, NULL), 0);
    /* Every task succeeded exactly once: 9 tasks, no extra attempts needed
     * for the ones the workers still held. */
    CHECK_EQ(count(g_out, "\"state\":\"succeeded\""), 10);
    CHECK_EQ(count(g_out, "\"task\":"), 9);
    CHECK_EQ(client(g_keys, 10000, "jobs", NULL), 0);
    CHECK(strstr(g_out, id) != NULL); /* and the earlier jobs survived too */
    CHECK(count(g_out, "\"job\":") >= 3);
}

static void test_unlisted_keys_are_refused(void)
{
    char other[200];
    snprintf(other, sizeof other, "%s/other-keys", g_dir);
    char *argv[] = {(char *)g_client_bin, "keys", "--out", other, NULL};
    CHECK_EQ(proc_run(argv, g_out, OUT_CAP, g_err, sizeof g_err, 10000), 0);
    /* Only the foreign pairs; the coordinator's public key is the real one. */
    char src[400], dst[400], cmd[2000];
    snprintf(src, sizeof src, "%s/coordinator.cert", g_keys);
    snprintf(dst, sizeof dst, "%s/coordinator.cert", other);
    snprintf(cmd, sizeof cmd, "cp %s %s && rm -f %s/coordinator.cert_secret", src, dst, other);
    CHECK(system(cmd) == 0);
    CHECK_EQ(client(other, 10000, "stats", NULL), 3);
    CHECK(strstr(g_err, "refused this client's key") != NULL);
    /* A worker with an unlisted key never joins. */
    pid_t stranger = start_worker("stranger", other);
    proc_sleep_ms(1500);
    CHECK_EQ(alive_workers(), 3);
    CHECK_EQ(client(g_keys, 5000, "workers", NULL), 0);
    CHECK(strstr(g_out, "stranger") == NULL);
    proc_stop(stranger, SIGKILL, 5000);
    /* A client key cannot pose as a worker: same keys dir, but the client pair. */
    snprintf(cmd, sizeof cmd, "mkdir -p %s/as-worker && cp %s/client.cert_secret %s/as-worker/worker.cert_secret && cp %s "
             "%s/as-worker/", g_dir, g_keys, g_dir, src, g_dir);
    CHECK(system(cmd) == 0);
    snprintf(dst, sizeof dst, "%s/as-worker", g_dir);
    pid_t poser = start_worker("poser", dst);
    proc_sleep_ms(1500);
    CHECK_EQ(client(g_keys, 5000, "workers", NULL), 0);
    CHECK(strstr(g_out, "poser") == NULL);
    proc_stop(poser, SIGKILL, 5000);
    char log[300];
    snprintf(log, sizeof log, "%s/coordinator.log", g_dir);
    CHECK_EQ(proc_wait_line(log, "a client key cannot act as a worker", NULL, 0, 3000), 0);
}

/* Sends raw frames to the coordinator as an authenticated client. */
static void send_raw(zsock_t *s, const void *data, size_t n)
{
    zframe_t *f = zframe_new(data, n);
    zframe_send(&f, s, 0);
}

static void test_malformed_messages_leave_it_serving(void)
{
    CHECK_EQ(client(g_keys, 5000, "stats", NULL), 0);
    const char *p = strstr(g_out, "\"messages_rejected\":");
    long before = p ? atol(p + 20) : -1;

    zsock_t *s = zsock_new(ZMQ_DEALER);
    char path[300];
    snprintf(path, sizeof path, "%s/client.cert_secret", g_keys);
    zcert_t *cert = zcert_load(path);
    snprintf(path, sizeof path, "%s/coordinator.cert", g_keys);
    FILE *f = fopen(path, "r");
    char line[256], server[41] = "";
    while (f && fgets(line, sizeof line, f))
        if (strstr(line, "public-key") && strchr(line, '"'))
            snprintf(server, sizeof server, "%.40s", strchr(line, '"') + 1);
    if (f)
        fclose(f);
    zcert_apply(cert, s);
    zsock_set_curve_serverkey(s, server);
    CHECK_EQ(zsock_connect(s, "%s", g_endpoint), 0);
    /* Garbage, a truncated header, another protocol version, a payload that is
     * not protobuf, a frame claiming a gigantic decompressed size, two frames,
     * a message type the coordinator never accepts, and the fuzz corpus. */
    send_raw(s, "hello?", 6);
    send_raw(s, "DF\x01", 3);
    uint8_t hdr[16] = {'D', 'F', 9, 0, DF_MSG_REQUEST, 0, 0, 0};
    send_raw(s, hdr, 16);
    uint8_t bad[20] = {'D', 'F', 1, 0, DF_MSG_REQUEST, 0, 0, 0, 4, 0, 0, 0, 4, 0, 0, 0, 0xff, 0xff, 0xff, 0xff};
    send_raw(s, bad, 20);
    uint8_t bomb[24] = {'D', 'F', 1, 1, DF_MSG_REQUEST, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0x7f, 4, 0x22, 0x4d, 0x18};
    send_raw(s, bomb, 24);
    zstr_sendm(s, "two");
    zstr_send(s, "frames");
    Dreamfleet__TaskAssign ta = DREAMFLEET__TASK_ASSIGN__INIT;
    ta.task_id = "x";
    df_wire_limits lim = df_wire_default_limits();
    uint8_t *buf;
    size_t len;
    if (df_wire_encode(DF_MSG_TASK_ASSIGN, &ta.base, &lim, &buf, &len, NULL) == DF_OK) {
        send_raw(s, buf, len);
        free(buf);
    }
    int corpus = 0;
    DIR *d = opendir(g_corpus);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char fp[512];
        snprintf(fp, sizeof fp, "%s/%s", g_corpus, e->d_name);
        FILE *cf = fopen(fp, "rb");
        uint8_t data[65536];
        size_t n = cf ? fread(data, 1, sizeof data, cf) : 0;
        if (cf)
            fclose(cf);
        send_raw(s, data, n);
        corpus++;
    }
    if (d)
        closedir(d);
    CHECK(corpus >= 1);
    /* Oversized: above --max-message 1 MiB. libzmq drops the connection. */
    size_t big = 2u << 20;
    uint8_t *huge = calloc(1, big);
    huge[0] = 'D', huge[1] = 'F', huge[2] = 1;
    send_raw(s, huge, big);
    free(huge);
    proc_sleep_ms(500);
    zsock_destroy(&s);
    zcert_destroy(&cert);
    /* Still serving, and it counted what it refused. */
    CHECK_EQ(client(g_keys, 5000, "stats", NULL), 0);
    p = strstr(g_out, "\"messages_rejected\":");
    long after = p ? atol(p + 20) : -1;
    CHECK(after >= before + 6);
    CHECK_EQ(client(g_keys, 60000, "noop", "--shards", "3", NULL), 0);
    CHECK_EQ(kill(g_coord, 0), 0);
}

static void test_model_reaches_workers(void)
{
    char path[300];
    snprintf(path, sizeof path, "%s/model.bin", g_dir);
    FILE *f = fopen(path, "wb");
    for (int i = 0; i < 3000000; i++)
        fputc((int)(((unsigned)i * 7919u) >> 3) & 0xff, f);
    fclose(f);
    CHECK_EQ(client(g_keys, 30000, "model", "add", "tiny", path, NULL), 0);
    const char *p = strstr(g_out, "\"sha256\":\"");
    char hash[65] = "";
    if (p)
        snprintf(hash, sizeof hash, "%.64s", p + 10);
    CHECK_EQ(client(g_keys, 5000, "model", "list", NULL), 0);
    CHECK(strstr(g_out, "\"name\":\"tiny\"") && strstr(g_out, hash));
    /* Three tasks that each need it: every worker that ran one pulled it. */
    CHECK_EQ(client(g_keys, 60000, "noop", "--shards", "3", "--fetch", hash, NULL), 0);
    int cached = 0;
    for (int i = 0; i < 3; i++) {
        const char *names[] = {"w1", "w2-again", "w3"};
        char obj[600];
        snprintf(obj, sizeof obj, "%s/cache-%s/artifacts/objects/%.2s/%s", g_dir, names[i], hash, hash);
        cached += access(obj, F_OK) == 0;
    }
    CHECK(cached >= 1);
    /* A hash the store does not have fails the job, not the worker. */
    CHECK_EQ(client(g_keys, 60000, "noop", "--fetch",
                    "0000000000000000000000000000000000000000000000000000000000000000", NULL), 1);
    CHECK(strstr(g_out, "not in the store") != NULL);
    CHECK_EQ(wait_workers(3), 0);
}

static void test_cancel(void)
{
    CHECK_EQ(client(g_keys, 10000, "noop", "--shards", "6", "--duration", "5000", "--no-wait", NULL), 0);
    char id[64];
    job_id(id, sizeof id);
    proc_sleep_ms(300);
    CHECK_EQ(client(g_keys, 5000, "cancel", id, NULL), 0);
    CHECK_EQ(client(g_keys, 10000, "watch", id, NULL), 4);
    CHECK_EQ(client(g_keys, 5000, "cancel", id, NULL), 1);
    CHECK(strstr(g_err, "already cancelled") != NULL);
    CHECK_EQ(client(g_keys, 5000, "status", "j-999999", NULL), 1);
    CHECK(strstr(g_err, "no job 'j-999999'") != NULL);
}

static void test_sigterm_finishes_current_task(void)
{
    CHECK_EQ(wait_workers(3), 0);
    CHECK_EQ(client(g_keys, 10000, "noop", "--shards", "3", "--duration", "1500", "--no-wait", NULL), 0);
    char id[64];
    job_id(id, sizeof id);
    proc_sleep_ms(500);
    /* Every worker gets SIGTERM while busy: each finishes and exits 0. */
    for (int i = 0; i < g_nworkers; i++)
        CHECK_EQ(proc_stop(g_workers[i], SIGTERM, 20000), 0);
    g_nworkers = 0;
    CHECK_EQ(client(g_keys, 5000, "status", id, NULL), 0);
    CHECK_EQ(count(g_out, "\"state\":\"succeeded\""), 4);
}

/*  Reads a whole file (malloc'd); NULL when it cannot. */
static uint8_t *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    rewind(f);
    uint8_t *b = malloc(len > 0 ? (size_t)len + 1 : 1); /* NUL-terminated: text files are searched */
    *n = b ? fread(b, 1, (size_t)len, f) : 0;
    if (b)
        b[*n] = '\0';
    fclose(f);
    return b;
}

/*  The PNG of image `index` in dir (names end in -NNNN-seedS.png). */
static uint8_t *image_of(const char *dir, int index, size_t *n)
{
    char cmd[700], path[700] = "";
    snprintf(cmd, sizeof cmd, "ls %s/*-%04d-seed*.png 2>/dev/null", dir, index);
    FILE *p = popen(cmd, "r");
    if (p && fgets(path, sizeof path, p))
        path[strcspn(path, "\n")] = '\0';
    if (p)
        pclose(p);
    return path[0] ? slurp(path, n) : NULL;
}

/*  Images spread over the workers; the same request run again on one worker,
 *  and once more with a worker killed during the job, gives the same bytes
 *  for every image: an image depends on its seed, not on who drew it. */
static void test_generate_over_workers(void)
{
    CHECK_EQ(wait_workers(3), 0);
    char model[300], out[3][300];
    snprintf(model, sizeof model, "%s/tiny-model", g_dir);
    CHECK_EQ(client(g_keys, 60000, "model", "create-random", model, "--config", "tiny", NULL), 0);
    for (int r = 0; r < 3; r++)
        snprintf(out[r], sizeof out[r], "%s/images-%d", g_dir, r);
    CHECK_EQ(client(g_keys, 300000, "generate", "--prompt", "a photo of TOK person", "--model", model, "--size",
                    "64x64", "--steps", "3", "-n", "6", "--seed", "5", "--dtype", "f32", "-o", out[0], NULL),
             0);
    CHECK_EQ(client(g_keys, 300000, "generate", "--prompt", "a photo of TOK person", "--model", model, "--size",
                    "64x64", "--steps", "3", "-n", "6", "--seed", "5", "--dtype", "f32", "--shards", "1",
                    "--no-cache", "-o", out[1], NULL),
             0);
    /* The third run loses a worker part-way (computed again: the first
     * run's images are in the result cache). */
    char log[300];
    snprintf(log, sizeof log, "%s/generate-killed.log", g_dir);
    char *argv[] = {(char *)g_client_bin, "--coordinator", g_endpoint, "--keys", g_keys, "--json", "generate",
                    "--prompt", "a photo of TOK person", "--model", model, "--size", "64x64", "--steps", "3",
                    "-n", "6", "--seed", "5", "--dtype", "f32", "--no-cache", "-o", out[2], NULL};
    pid_t pid = proc_start(argv, log);
    CHECK_EQ(proc_wait_line(log, "\"state\":\"running\"", NULL, 0, 60000), 0);
    proc_sleep_ms(300);
    proc_stop(g_workers[0], SIGKILL, 5000);
    CHECK_EQ(proc_stop(pid, 0, 300000), 0);
    for (int i = 0; i < 6; i++) {
        size_t n0 = 0, n1 = 0, n2 = 0;
        uint8_t *a = image_of(out[0], i, &n0), *b = image_of(out[1], i, &n1), *c = image_of(out[2], i, &n2);
        CHECK(a && b && c && n0 > 100 && n0 == n1 && n0 == n2 && memcmp(a, b, n0) == 0 && memcmp(a, c, n0) == 0);
        free(a), free(b), free(c);
    }
    /* The first request once more: every image from the result cache, the
     * same bytes, no worker involved. */
    char cached_dir[300];
    snprintf(cached_dir, sizeof cached_dir, "%s/images-cached", g_dir);
    CHECK_EQ(client(g_keys, 60000, "generate", "--prompt", "a photo of TOK person", "--model", model, "--size",
                    "64x64", "--steps", "3", "-n", "6", "--seed", "5", "--dtype", "f32", "-o", cached_dir, NULL),
             0);
    CHECK_EQ(client(g_keys, 5000, "jobs", NULL), 0);
    CHECK(strstr(g_out, "6 images (6 from the cache)") != NULL);
    for (int i = 0; i < 6; i++) {
        size_t n0 = 0, n1 = 0;
        uint8_t *a = image_of(out[0], i, &n0), *b = image_of(cached_dir, i, &n1);
        CHECK(a && b && n0 == n1 && memcmp(a, b, n0) == 0);
        free(a), free(b);
    }
    g_workers[0] = start_worker("w1-again", g_keys);
    CHECK_EQ(wait_workers(3), 0);
    /* A LoRA changes the images; one for another model fails the job by name. */
    char lora[300], bad_lora[300], lout[300];
    snprintf(lora, sizeof lora, "%s/lora.safetensors", g_dir);
    snprintf(bad_lora, sizeof bad_lora, "%s/bad-lora.safetensors", g_dir);
    snprintf(lout, sizeof lout, "%s/images-lora", g_dir);
    static float down[2 * 32], up[32 * 2], alpha = 2;
    for (int i = 0; i < 64; i++)
        down[i] = (float)((i * 37) % 11) * 0.05f - 0.25f, up[i] = (float)((i * 13) % 7) * 0.1f - 0.3f;
    int64_t sd[2] = {2, 32}, su[2] = {32, 2};
    df_error_t err;
    df_error_clear(&err);
    for (int b = 0; b < 2; b++) {
        const char *mod = b ? "lora_unet_mid_block_attentions_5_proj_in" : "lora_te1_text_model_encoder_layers_0_self_attn_q_proj";
        char kd[200], ku[200], ka[200];
        snprintf(kd, sizeof kd, "%s.lora_down.weight", mod);
        snprintf(ku, sizeof ku, "%s.lora_up.weight", mod);
        snprintf(ka, sizeof ka, "%s.alpha", mod);
        df_st_writer_t *w = df_st_writer_new();
        df_st_writer_add(w, kd, DF_F32, 2, sd, down, &err);
        df_st_writer_add(w, ku, DF_F32, 2, su, up, &err);
        df_st_writer_add(w, ka, DF_F32, 0, NULL, &alpha, &err);
        CHECK_OK(df_st_writer_write(w, b ? bad_lora : lora, &err), &err);
        df_st_writer_destroy(&w);
    }
    char lora_arg[320];
    snprintf(lora_arg, sizeof lora_arg, "%s:0.7", lora);
    CHECK_EQ(client(g_keys, 300000, "generate", "--prompt", "a photo of TOK person", "--model", model, "--size",
                    "64x64", "--steps", "3", "-n", "1", "--seed", "5", "--dtype", "f32", "--lora", lora_arg, "-o",
                    lout, NULL),
             0);
    size_t nl = 0, nb = 0;
    uint8_t *with = image_of(lout, 0, &nl), *without = image_of(out[0], 0, &nb);
    CHECK(with && without && (nl != nb || memcmp(with, without, nl) != 0));
    free(with), free(without);
    /* Unmerged LoRAs are swapped on a resident model: requests with and
     * without the LoRA alternate over the workers, and every one without it
     * gives the bare model's image, byte for byte. */
    for (int round = 0; round < 3; round++) {
        CHECK_EQ(client(g_keys, 300000, "generate", "--prompt", "a photo of TOK person", "--model", model, "--size",
                        "64x64", "--steps", "3", "-n", "1", "--seed", "5", "--dtype", "f32", "--lora", lora_arg,
                        "--lora-mode", "unmerged", "--no-cache", "-o", lout, NULL),
                 0);
        CHECK_EQ(client(g_keys, 300000, "generate", "--prompt", "a photo of TOK person", "--model", model, "--size",
                        "64x64", "--steps", "3", "-n", "1", "--seed", "5", "--dtype", "f32", "--lora-mode",
                        "unmerged", "--no-cache", "-o", lout, NULL),
                 0);
        size_t nu = 0, n0 = 0;
        uint8_t *bare = image_of(out[0], 0, &n0), *got = NULL;
        /* The newest job's image (job ids count up; ls -v sorts them so). */
        char cmd[700], path[700] = "";
        snprintf(cmd, sizeof cmd, "ls -v %s/*.png | tail -1", lout);
        FILE *ls = popen(cmd, "r");
        if (ls && fgets(path, sizeof path, ls))
            path[strcspn(path, "\n")] = '\0';
        if (ls)
            pclose(ls);
        got = path[0] ? slurp(path, &nu) : NULL;
        CHECK(bare && got && nu == n0 && memcmp(bare, got, n0) == 0);
        free(bare), free(got);
    }
    CHECK_EQ(client(g_keys, 120000, "generate", "--prompt", "x", "--model", model, "--size", "64x64", "--lora",
                    bad_lora, "-o", lout, NULL),
             1);
    CHECK(strstr(g_out, "name no module of this model") != NULL);
    CHECK_EQ(client(g_keys, 30000, "generate", "--prompt", "x", "--model", model, "--lora", "/nonexistent.safetensors",
                    "-o", lout, NULL),
             2);
    CHECK(strstr(g_err, "--lora /nonexistent.safetensors") != NULL);
    /* Bad requests are refused before any work, naming the parameter. */
    CHECK_EQ(client(g_keys, 30000, "generate", "--prompt", "x", "--model", model, "--size", "100x64", "-o", out[0],
                    NULL),
             1);
    CHECK(strstr(g_err, "multiples of 8") || strstr(g_out, "multiples of 8"));
    CHECK_EQ(client(g_keys, 30000, "generate", "--prompt", "x", "--model", model, "--sampler", "plms", "-o", out[0],
                    NULL),
             2);
    CHECK(strstr(g_err, "unknown 'plms'") != NULL);
    CHECK_EQ(client(g_keys, 30000, "generate", "--prompt", "x", "--model", model, "--steps", "0", "-o", out[0], NULL),
             2);
    CHECK(strstr(g_err, "--steps wants") != NULL);
    /* A model path no worker can open fails the job with the reason. */
    CHECK_EQ(client(g_keys, 120000, "generate", "--prompt", "x", "--model", "/nonexistent/model", "--size", "64x64",
                    "-o", out[0], NULL),
             1);
    CHECK(strstr(g_out, "no such model") != NULL);
}

/*  Interop through the whole path: diffusers' initial noise in, the final
 *  latents out, compared with what diffusers computed from that noise. */
static void test_generate_init_noise(void)
{
    char golden[600], noise[300], lat[300], out[300], model[300];
    snprintf(golden, sizeof golden, "%s/../../data/golden/tiny_pipeline.safetensors", g_corpus);
    snprintf(noise, sizeof noise, "%s/noise.safetensors", g_dir);
    snprintf(lat, sizeof lat, "%s/latents.safetensors", g_dir);
    snprintf(out, sizeof out, "%s/images-noise", g_dir);
    snprintf(model, sizeof model, "%s/tiny-model", g_dir); /* made by test_generate_over_workers */
    df_error_t err;
    df_error_clear(&err);
    df_safetensors_t *g = df_safetensors_open(golden, &err);
    const df_st_tensor *init = g ? df_safetensors_find(g, "euler.init") : NULL;
    const df_st_tensor *want = g ? df_safetensors_find(g, "euler.final") : NULL;
    CHECK(init && want);
    if (!init || !want) {
        df_safetensors_destroy(&g);
        return;
    }
    df_st_writer_t *w = df_st_writer_new();
    CHECK_OK(df_st_writer_add(w, "noise", init->dtype, init->ndim, init->shape, init->data, &err), &err);
    CHECK_OK(df_st_writer_write(w, noise, &err), &err);
    df_st_writer_destroy(&w);
    CHECK_EQ(client(g_keys, 300000, "generate", "--prompt", df_safetensors_metadata(g, "prompt"), "--model", model,
                    "--size", "128x128", "--steps", df_safetensors_metadata(g, "steps"), "--cfg",
                    df_safetensors_metadata(g, "guidance"), "--sampler", "euler", "--dtype", "f32", "--init-noise",
                    noise, "--save-latents", lat, "-o", out, NULL),
             0);
    df_safetensors_t *got = df_safetensors_open(lat, &err);
    const df_st_tensor *l = got ? df_safetensors_find(got, "latents") : NULL;
    CHECK(l && l->nelem == want->nelem);
    if (l && l->nelem == want->nelem) {
        float *a = malloc(l->nelem * 4), *b = malloc(l->nelem * 4);
        df_st_tensor_to_f32(l, a, &err);
        df_st_tensor_to_f32(want, b, &err);
        double worst = 0, scale = 0;
        for (uint64_t i = 0; i < l->nelem; i++) {
            worst = fmax(worst, fabs((double)a[i] - b[i]));
            scale = fmax(scale, fabs((double)b[i]));
        }
        fprintf(stderr, "  --init-noise euler: final latents within %.2g of scale\n", worst / scale);
        CHECK(worst <= 1e-3 * scale);
        free(a), free(b);
    }
    /* Noise of the wrong shape is refused before any work. */
    CHECK_EQ(client(g_keys, 30000, "generate", "--prompt", "x", "--model", model, "--size", "64x64", "--init-noise",
                    noise, "-o", out, NULL),
             2);
    CHECK(strstr(g_err, "needs a tensor 'noise' of shape [1, 4, 8, 8]") != NULL);
    df_safetensors_destroy(&got);
    df_safetensors_destroy(&g);
}

static void test_embedded_mode(void)
{
    char data[300];
    snprintf(data, sizeof data, "%s/xdg-data", g_dir);
    setenv("XDG_DATA_HOME", data, 1);
    char *argv[] = {(char *)g_client_bin, "--json", "noop", "--shards", "2", NULL};
    CHECK_EQ(proc_run(argv, g_out, OUT_CAP, g_err, sizeof g_err, 60000), 0);
    CHECK(strstr(g_out, "\"state\":\"succeeded\"") != NULL);
    char *argv2[] = {(char *)g_client_bin, "--json", "jobs", NULL};
    CHECK_EQ(proc_run(argv2, g_out, OUT_CAP, g_err, sizeof g_err, 60000), 0);
    CHECK(strstr(g_out, "\"job\":\"j-1\"") != NULL); /* the history persists */
    char *argv4[] = {(char *)g_client_bin, "train", "--data", g_dir, "--model", g_dir, "--workers", "2", "-o", g_dir,
                     NULL};
    CHECK_EQ(proc_run(argv4, g_out, OUT_CAP, g_err, sizeof g_err, 60000), 2);
    CHECK(strstr(g_err, "--workers 2: with no coordinator configured") != NULL);
    char *argv3[] = {(char *)g_client_bin, "teleport", NULL};
    CHECK_EQ(proc_run(argv3, g_out, OUT_CAP, g_err, sizeof g_err, 10000), 2);
    CHECK(strstr(g_err, "unknown command 'teleport'") != NULL);
}

/*  Two small photos, one with a sidecar caption. */
static void make_photos(const char *data)
{
    char path[400];
    mkdir(data, 0755);
    df_error_t err;
    df_error_clear(&err);
    for (int i = 0; i < 2; i++) {
        const uint32_t w = 72 + 8 * i, h = 64;
        uint8_t *rgb = malloc(w * h * 3);
        for (uint32_t k = 0; k < w * h; k++)
            rgb[3 * k] = (uint8_t)(k % w * 3), rgb[3 * k + 1] = (uint8_t)(60 * i), rgb[3 * k + 2] = (uint8_t)(k / w * 4);
        snprintf(path, sizeof path, "%s/photo%d.png", data, i);
        CHECK_OK(df_png_write(path, rgb, w, h, NULL, 0, &err), &err);
        free(rgb);
    }
    snprintf(path, sizeof path, "%s/photo0.txt", data);
    FILE *f = fopen(path, "w");
    if (f) {
        fputs("a photo of TOK dog\n", f);
        fclose(f);
    }
}

/*  The tiny model, made once for the tests that need it. */
static void tiny_model(char *model, size_t cap)
{
    snprintf(model, cap, "%s/tiny-model", g_dir);
    struct stat sb;
    if (stat(model, &sb) != 0)
        CHECK_EQ(client(g_keys, 60000, "model", "create-random", model, "--config", "tiny", NULL), 0);
}

/*  Training through the cluster: photos (with a sidecar caption for one)
 *  in, LoRA files and a loss curve out, and generation takes the LoRA. */
static void test_train(void)
{
    char data[300], out[300], model[300], imgs[300], path[400];
    snprintf(data, sizeof data, "%s/photos", g_dir);
    snprintf(out, sizeof out, "%s/trained", g_dir);
    snprintf(imgs, sizeof imgs, "%s/images-trained", g_dir);
    tiny_model(model, sizeof model); /* made by test_generate_over_workers, if it ran */
    make_photos(data);
    size_t n = 0;
    df_error_t err;
    df_error_clear(&err);
    CHECK_EQ(client(g_keys, 600000, "train", "--data", data, "--model", model, "--class", "dog", "--resolution", "64",
                    "--steps", "3", "--rank", "4", "--lr", "1e-3", "--seed", "2", "--validation-prompt",
                    "a photo of TOK dog", "--validation-prompt", "TOK dog on a beach", "--validate-every", "2",
                    "--validation-steps", "2", "-o", out, NULL),
             0);
    /* Validation after steps 2 and 3, two prompts: a 2 x 2 grid of 256 px cells. */
    snprintf(path, sizeof path, "%s/validation.png", out);
    uint8_t *grid = slurp(path, &n);
    CHECK(grid && n > 24 && memcmp(grid, "\x89PNG", 4) == 0);
    if (grid && n > 24) {
        uint32_t gw = (uint32_t)grid[16] << 24 | (uint32_t)grid[17] << 16 | (uint32_t)grid[18] << 8 | grid[19];
        uint32_t gh = (uint32_t)grid[20] << 24 | (uint32_t)grid[21] << 16 | (uint32_t)grid[22] << 8 | grid[23];
        CHECK(gw == 512 && gh == 512);
    }
    free(grid);
    char lora[400];
    snprintf(lora, sizeof lora, "%s/lora.safetensors", out);
    df_safetensors_t *st = df_safetensors_open(lora, &err);
    CHECK(st && df_safetensors_count(st) > 10);
    CHECK(st && df_safetensors_metadata(st, "ss_network_dim") && strcmp(df_safetensors_metadata(st, "ss_network_dim"), "4") == 0);
    /* The run's facts: the base model by name and identity, the identifier and class. */
    const char *mv = st ? df_safetensors_metadata(st, "ss_sd_model_name") : NULL;
    CHECK(mv && strcmp(mv, "tiny-model") == 0);
    mv = st ? df_safetensors_metadata(st, "dreamfleet.base_model_identity") : NULL;
    CHECK(mv && strlen(mv) == 64);
    mv = st ? df_safetensors_metadata(st, "dreamfleet.token") : NULL;
    CHECK(mv && strcmp(mv, "TOK") == 0);
    mv = st ? df_safetensors_metadata(st, "dreamfleet.class") : NULL;
    CHECK(mv && strcmp(mv, "dog") == 0);
    df_safetensors_destroy(&st);
    snprintf(path, sizeof path, "%s/loss.csv", out);
    uint8_t *csv = slurp(path, &n);
    int lines = 0;
    for (size_t k = 0; csv && k < n; k++)
        lines += csv[k] == '\n';
    CHECK(csv && lines == 4 && strncmp((const char *)csv, "step,loss\n1,", 12) == 0); /* a header, 3 steps */
    free(csv);
    snprintf(path, sizeof path, "%s/loss.png", out);
    uint8_t *png = slurp(path, &n);
    CHECK(png && n > 100 && memcmp(png, "\x89PNG", 4) == 0);
    free(png);
    CHECK_EQ(client(g_keys, 300000, "generate", "--prompt", "a photo of TOK dog", "--model", model, "--size", "64x64",
                    "--steps", "2", "--lora", lora, "-o", imgs, NULL),
             0);
    /* 8-bit UNet weights on the workers: the LoRA runs beside them (a merge
     * is refused up front), and training takes them too, here with 8-bit
     * optimiser moments and the text encoders training as well. */
    char imgs8[300], out8[300];
    snprintf(imgs8, sizeof imgs8, "%s/images-int8", g_dir);
    snprintf(out8, sizeof out8, "%s/trained-int8", g_dir);
    CHECK_EQ(client(g_keys, 300000, "generate", "--prompt", "a photo of TOK dog", "--model", model, "--size", "64x64",
                    "--steps", "2", "--lora", lora, "--dtype", "int8", "-o", imgs8, NULL),
             0);
    CHECK(strstr(g_out, "1 image") != NULL);
    CHECK_EQ(client(g_keys, 30000, "generate", "--prompt", "a dog", "--model", model, "--dtype", "int8", "--lora-mode",
                    "merged", "-o", imgs8, NULL),
             2);
    CHECK(strstr(g_err, "cannot merge into 8-bit weights") != NULL);
    CHECK_EQ(client(g_keys, 30000, "generate", "--prompt", "a dog", "--model", model, "--dtype", "int4", "-o", imgs8,
                    NULL),
             2);
    CHECK(strstr(g_err, "--dtype wants f16, f32 or int8, not 'int4'") != NULL);
    CHECK_EQ(client(g_keys, 600000, "train", "--data", data, "--model", model, "--resolution", "64", "--steps", "2",
                    "--rank", "4", "--dtype", "int8", "--optimizer", "adamw8bit", "--train-text-encoder", "-o", out8,
                    NULL),
             0);
    snprintf(path, sizeof path, "%s/lora.safetensors", out8);
    df_safetensors_t *st8 = df_safetensors_open(path, &err);
    int te_keys = 0;
    for (size_t i = 0; st8 && i < df_safetensors_count(st8); i++)
        te_keys += strncmp(df_safetensors_at(st8, i)->name, "lora_te2_", 9) == 0;
    CHECK(te_keys > 0);
    df_safetensors_destroy(&st8);
    /* Full fine-tuning of the tiny model: the UNet comes back, every weight
     * under diffusers' names, in place of a LoRA. */
    char outf[300];
    snprintf(outf, sizeof outf, "%s/trained-full", g_dir);
    CHECK_EQ(client(g_keys, 600000, "train", "--data", data, "--model", model, "--resolution", "64", "--steps", "2",
                    "--lr", "1e-4", "--full", "-o", outf, NULL),
             0);
    snprintf(path, sizeof path, "%s/unet.safetensors", outf);
    df_safetensors_t *stf = df_safetensors_open(path, &err);
    const char *fsteps = stf ? df_safetensors_metadata(stf, "dreamfleet.steps") : NULL;
    CHECK(stf && df_safetensors_find(stf, "conv_in.weight") && df_safetensors_find(stf, "conv_out.bias") && fsteps &&
          strcmp(fsteps, "2") == 0);
    df_safetensors_destroy(&stf);
    snprintf(path, sizeof path, "%s/lora-peft.safetensors", outf);
    CHECK(access(path, F_OK) != 0);
    CHECK_EQ(client(g_keys, 30000, "train", "--data", data, "--model", model, "--full", "--dtype", "int8", "-o", outf,
                    NULL),
             2);
    CHECK(strstr(g_err, "--full fine-tunes the whole UNet") != NULL);
    /* Prior preservation with class images the cluster makes first; a
     * second run finds them and makes none. */
    char prior[300], classes[400];
    snprintf(prior, sizeof prior, "%s/trained-prior", g_dir);
    snprintf(classes, sizeof classes, "%s/class-images", prior);
    CHECK_EQ(client(g_keys, 600000, "train", "--data", data, "--model", model, "--class", "dog", "--resolution", "64",
                    "--steps", "2", "--rank", "4", "--class-images", "2", "--class-steps", "2", "-o", prior, NULL),
             0);
    CHECK_EQ(count(g_out, "\"type\":\"generate\"") > 0, 1);
    DIR *cd = opendir(classes);
    int pngs = 0;
    for (struct dirent *e; cd && (e = readdir(cd));)
        pngs += strstr(e->d_name, ".png") != NULL;
    if (cd)
        closedir(cd);
    CHECK_EQ(pngs, 2);
    CHECK_EQ(client(g_keys, 600000, "train", "--data", data, "--model", model, "--class", "dog", "--resolution", "64",
                    "--steps", "2", "--rank", "4", "--class-images", "2", "--prior-weight", "0.5", "-o", prior, NULL),
             0);
    CHECK_EQ(count(g_out, "\"type\":\"generate\""), 0);
    /* Refused before any work: no photos; a learning rate out of range. */
    char empty[300];
    snprintf(empty, sizeof empty, "%s/no-photos", g_dir);
    mkdir(empty, 0755);
    CHECK_EQ(client(g_keys, 30000, "train", "--data", empty, "--model", model, "-o", out, NULL), 2);
    CHECK(strstr(g_err, "no PNG, JPEG, WebP or HEIC photos") != NULL);
    CHECK_EQ(client(g_keys, 30000, "train", "--data", data, "--model", model, "--class-data", empty, "-o", out, NULL), 2);
    CHECK(strstr(g_err, "--class-data") != NULL && strstr(g_err, "no PNG, JPEG, WebP or HEIC photos") != NULL);
    CHECK_EQ(client(g_keys, 30000, "train", "--data", data, "--model", model, "--lr", "3", "-o", out, NULL), 2);
    CHECK(strstr(g_err, "--lr wants") != NULL);
    CHECK_EQ(client(g_keys, 30000, "train", "--data", data, "--model", model, "--delta", "int4", "-o", out, NULL), 2);
    CHECK(strstr(g_err, "--delta: f32, f16, bf16 or int8, not 'int4'") != NULL);
    CHECK_EQ(client(g_keys, 30000, "train", "--data", data, "--model", model, "--validation-size", "100x64", "-o", out,
                    NULL),
             2);
    CHECK(strstr(g_err, "--validation-size wants WxH") != NULL);
    CHECK_EQ(client(g_keys, 30000, "train", "--data", data, "--model", model, "--optimizer", "sgd", "-o", out, NULL), 2);
    CHECK(strstr(g_err, "--optimizer: adamw or adamw8bit, not 'sgd'") != NULL);
    CHECK_EQ(client(g_keys, 30000, "train", "--data", data, "--model", model, "--text-encoder-lr", "1e-5", "-o", out,
                    NULL),
             2);
    CHECK(strstr(g_err, "--text-encoder-lr goes with --train-text-encoder") != NULL);
    CHECK_EQ(client(g_keys, 30000, "train", "--data", data, "--model", model, "--train-text-encoder",
                    "--text-encoder-lr", "2", "-o", out, NULL),
             2);
    CHECK(strstr(g_err, "--text-encoder-lr wants a number above 0 and below 1") != NULL);
}

/*  The largest difference between two LoRA files' tensors (f32), or a
 *  negative number when they do not hold the same tensors. */
static double lora_difference(const char *a_path, const char *b_path)
{
    df_error_t err;
    df_safetensors_t *a = df_safetensors_open(a_path, &err), *b = df_safetensors_open(b_path, &err);
    double worst = a && b && df_safetensors_count(a) == df_safetensors_count(b) ? 0 : -1;
    for (size_t i = 0; worst >= 0 && i < df_safetensors_count(a); i++) {
        const df_st_tensor *ta = df_safetensors_at(a, i), *tb = df_safetensors_find(b, ta->name);
        if (!tb || tb->nelem != ta->nelem || ta->dtype != DF_F32 || tb->dtype != DF_F32) {
            worst = -1;
            break;
        }
        for (uint64_t k = 0; k < ta->nelem; k++) {
            double d = fabs((double)((const float *)ta->data)[k] - (double)((const float *)tb->data)[k]);
            worst = d > worst ? d : worst;
        }
    }
    df_safetensors_destroy(&a);
    df_safetensors_destroy(&b);
    return worst;
}

/*  The line of file holding needle, last of them. */
static int last_line_with(const char *file, const char *needle, char *line, size_t cap)
{
    FILE *f = fopen(file, "r");
    char buf[2048];
    int found = 0;
    while (f && fgets(buf, sizeof buf, f))
        if (strstr(buf, needle))
            snprintf(line, cap, "%s", buf), found = 1;
    if (f)
        fclose(f);
    return found;
}

/*  Whether started worker i is the first of its name: a restarted worker
 *  keeps its name, and its log, so a log is read once. */
static int first_of_its_name(int i)
{
    for (int j = 0; j < i; j++)
        if (strcmp(g_started[j].name, g_started[i].name) == 0)
            return 0;
    return 1;
}

/*  How many lines of file hold needle. */
static int count_lines_with(const char *file, const char *needle)
{
    FILE *f = fopen(file, "r");
    char buf[2048];
    int n = 0;
    while (f && fgets(buf, sizeof buf, f))
        n += strstr(buf, needle) != NULL;
    if (f)
        fclose(f);
    return n;
}

/*  The started worker (index in g_started) whose log says it took the task
 *  named in needle ("task j-3.1 (train"), or -1. */
static int worker_holding(const char *needle)
{
    char log[300], line[2048];
    for (int i = g_nstarted - 1; i >= 0; i--) {
        snprintf(log, sizeof log, "%s/%s.log", g_dir, g_started[i].name);
        if (last_line_with(log, needle, line, sizeof line))
            return i;
    }
    return -1;
}

/*  Starts a killed worker again under its name, where g_workers held it. */
static void restart_worker(int started)
{
    for (int i = 0; i < g_nworkers; i++)
        if (g_workers[i] == g_started[started].pid)
            g_workers[i] = start_worker(g_started[started].name, g_keys);
}

/*  Data-parallel training. Two workers, each with one of a step's two
 *  samples, exchanging gradients every step, train the LoRA that one worker
 *  with both trains; int8 changes every 2 steps train too, about 4x smaller
 *  on the wire; a worker killed mid-run leaves its group and the job
 *  finishes on the other, which takes over its samples. */
static void test_train_data_parallel(void)
{
    char data[300], model[300], one[300], two[300], q8[300], lost[300], a[400], b[400];
    snprintf(data, sizeof data, "%s/photos-dp", g_dir);
    snprintf(one, sizeof one, "%s/dp-one", g_dir);
    snprintf(two, sizeof two, "%s/dp-two", g_dir);
    snprintf(q8, sizeof q8, "%s/dp-int8", g_dir);
    snprintf(lost, sizeof lost, "%s/dp-lost", g_dir);
    tiny_model(model, sizeof model);
    make_photos(data);
    CHECK_EQ(wait_workers(3), 0);
    CHECK_EQ(client(g_keys, 600000, "train", "--data", data, "--model", model, "--resolution", "64", "--steps", "3",
                    "--rank", "4", "--lr", "1e-3", "--seed", "5", "--batch", "2", "-o", one, NULL),
             0);
    CHECK(strstr(g_out, "\"workers\":1,\"rounds\":0") != NULL);
    CHECK_EQ(client(g_keys, 600000, "train", "--data", data, "--model", model, "--resolution", "64", "--steps", "3",
                    "--rank", "4", "--lr", "1e-3", "--seed", "5", "--batch", "2", "--workers", "2", "-o", two, NULL),
             0);
    CHECK(strstr(g_out, "\"workers\":2,\"rounds\":3") != NULL);
    snprintf(a, sizeof a, "%s/lora.safetensors", one);
    snprintf(b, sizeof b, "%s/lora.safetensors", two);
    double diff = lora_difference(a, b);
    fprintf(stderr, "  2 workers x 1 sample vs 1 worker x 2: factors within %.2g (learning rate 1e-3)\n", diff);
    CHECK(diff >= 0 && diff < 5e-5);
    snprintf(a, sizeof a, "%s/loss.csv", one);
    snprintf(b, sizeof b, "%s/loss.csv", two);
    size_t na = 0, nb = 0;
    uint8_t *ca = slurp(a, &na), *cb = slurp(b, &nb);
    float la[3] = {0}, lb[3] = {-1};
    CHECK(ca && cb && sscanf((char *)ca, "step,loss\n1,%f\n2,%f\n3,%f", &la[0], &la[1], &la[2]) == 3 &&
          sscanf((char *)cb, "step,loss\n1,%f\n2,%f\n3,%f", &lb[0], &lb[1], &lb[2]) == 3);
    for (int i = 0; i < 3; i++)
        CHECK(fabsf(la[i] - lb[i]) <= 1e-4f * fabsf(la[i]));
    free(ca), free(cb);

    /* The same with the text encoders training: their factors' gradients
     * average over the group like the UNet's. */
    char te1[300], te2[300];
    snprintf(te1, sizeof te1, "%s/dp-one-te", g_dir);
    snprintf(te2, sizeof te2, "%s/dp-two-te", g_dir);
    CHECK_EQ(client(g_keys, 600000, "train", "--data", data, "--model", model, "--resolution", "64", "--steps", "3",
                    "--rank", "4", "--lr", "1e-3", "--seed", "5", "--batch", "2", "--train-text-encoder", "-o", te1,
                    NULL),
             0);
    CHECK_EQ(client(g_keys, 600000, "train", "--data", data, "--model", model, "--resolution", "64", "--steps", "3",
                    "--rank", "4", "--lr", "1e-3", "--seed", "5", "--batch", "2", "--workers", "2",
                    "--train-text-encoder", "-o", te2, NULL),
             0);
    snprintf(a, sizeof a, "%s/lora.safetensors", te1);
    snprintf(b, sizeof b, "%s/lora.safetensors", te2);
    diff = lora_difference(a, b);
    fprintf(stderr, "  with the text encoders: 2 workers x 1 vs 1 x 2 within %.2g\n", diff);
    CHECK(diff >= 0 && diff < 5e-5);

    /* int8 changes of the factors every 2 local steps. */
    CHECK_EQ(client(g_keys, 600000, "train", "--data", data, "--model", model, "--resolution", "64", "--steps", "4",
                    "--rank", "4", "--lr", "1e-3", "--seed", "5", "--batch", "2", "--workers", "2", "--local-steps",
                    "2", "--delta", "int8", "-o", q8, NULL),
             0);
    /* int8 is a quarter of f32 plus a scale per row: at rank 4 the up
     * factors' rows are 4 values long, so the whole comes to about 2.5x. */
    const char *c = strstr(g_out, "\"compression\":");
    CHECK(strstr(g_out, "\"workers\":2,\"rounds\":2") != NULL && c && atof(c + 14) > 2.2);
    snprintf(b, sizeof b, "%s/lora.safetensors", q8);
    snprintf(a, sizeof a, "%s/lora.safetensors", one);
    CHECK(lora_difference(a, b) >= 0);

    /* A member's worker killed mid-run: the other finishes alone. */
    char clog[300], log[300], line[2048];
    snprintf(clog, sizeof clog, "%s/coordinator.log", g_dir);
    snprintf(log, sizeof log, "%s/train-lost.log", g_dir);
    char *argv[] = {(char *)g_client_bin, "--coordinator", g_endpoint, "--keys", g_keys, "--json", "train", "--data",
                    data, "--model", model, "--resolution", "64", "--steps", "30", "--rank", "4", "--lr", "1e-3",
                    "--batch", "2", "--workers", "2", "-o", lost, NULL};
    pid_t trainer = proc_start(argv, log);
    CHECK_EQ(proc_wait_line(clog, "round 4: 2 members", NULL, 0, 300000), 0);
    char job[64] = "", task[80];
    if (last_line_with(clog, "round 4: 2 members", line, sizeof line)) {
        const char *j = strstr(line, "j-");
        if (j)
            snprintf(job, sizeof job, "%.*s", (int)strcspn(j, " "), j);
    }
    snprintf(task, sizeof task, "task %s.1 (train", job);
    int killed = worker_holding(task);
    CHECK(job[0] && killed >= 0);
    if (killed >= 0) {
        proc_stop(g_started[killed].pid, SIGKILL, 5000);
        CHECK_EQ(proc_stop(trainer, 0, 600000), 0); /* signal 0: just wait for it */
        snprintf(log, sizeof log, "%s/train-lost.log", g_dir);
        uint8_t *out = slurp(log, &na);
        CHECK(out && strstr((char *)out, "\"steps\":30") && strstr((char *)out, "\"workers\":1,\"rounds\":30"));
        free(out);
        restart_worker(killed);
        CHECK_EQ(wait_workers(3), 0);
    } else {
        proc_stop(trainer, SIGKILL, 5000);
    }
}

/*  Every photo is encoded once, by an encode job whose tasks spread over
 *  the workers; a group's members read the sample caches instead of each
 *  encoding every photo, and a later run with the same photos finds them in
 *  the result cache. A photo that is not one fails the run, by name. */
static void test_train_encode_job(void)
{
    char data[300], model[300], out[300], again[300], bad[300], path[400], log[1500];
    snprintf(data, sizeof data, "%s/photos-encode", g_dir);
    snprintf(out, sizeof out, "%s/encode-one", g_dir);
    snprintf(again, sizeof again, "%s/encode-again", g_dir);
    snprintf(bad, sizeof bad, "%s/photos-bad", g_dir);
    tiny_model(model, sizeof model);
    make_photos(data);
    CHECK_EQ(wait_workers(3), 0);
    int before[8] = {0};
    for (int i = 0; i < g_nstarted && i < 8; i++) {
        snprintf(log, sizeof log, "%s/%s.log", g_dir, g_started[i].name);
        before[i] = count_lines_with(log, "read from sample caches");
    }
    CHECK_EQ(client(g_keys, 600000, "train", "--data", data, "--model", model, "--resolution", "64", "--steps", "2",
                    "--rank", "4", "--lr", "1e-3", "--seed", "5", "--batch", "2", "--workers", "2", "--flip", "-o", out,
                    NULL),
             0);
    char train_job[64], encode_job[64];
    job_id(train_job, sizeof train_job);
    snprintf(encode_job, sizeof encode_job, "j-%d", atoi(train_job + 2) - 1);
    /* The encode job: one task per photo, each on some worker. */
    CHECK_EQ(client(g_keys, 10000, "status", encode_job, NULL), 0);
    CHECK(strstr(g_out, "\"type\":\"encode\"") && strstr(g_out, "2 photos encoded") &&
          !strstr(g_out, "from the cache"));
    /* Both members read the caches; none encoded a photo itself. */
    int readers = 0;
    for (int i = 0; i < g_nstarted && i < 8; i++) {
        if (!first_of_its_name(i))
            continue;
        snprintf(log, sizeof log, "%s/%s.log", g_dir, g_started[i].name);
        readers += count_lines_with(log, "read from sample caches") > before[i];
    }
    CHECK_EQ(readers, 2);
    /* Again with the same photos: their caches come from the result cache. */
    CHECK_EQ(client(g_keys, 600000, "train", "--data", data, "--model", model, "--resolution", "64", "--steps", "1",
                    "--rank", "4", "--lr", "1e-3", "--seed", "6", "--flip", "-o", again, NULL),
             0);
    job_id(train_job, sizeof train_job);
    snprintf(encode_job, sizeof encode_job, "j-%d", atoi(train_job + 2) - 1);
    CHECK_EQ(client(g_keys, 10000, "status", encode_job, NULL), 0);
    CHECK(strstr(g_out, "2 photos encoded (2 from the cache)") != NULL);
    /* A file that is not a photo: the run fails, naming it. */
    mkdir(bad, 0755);
    snprintf(path, sizeof path, "%s/photo0.png", bad);
    FILE *f = fopen(path, "wb");
    if (f) {
        fputs("\x89PNG\r\n\x1a\n but not really", f);
        fclose(f);
    }
    snprintf(out, sizeof out, "%s/encode-bad", g_dir);
    CHECK(client(g_keys, 600000, "train", "--data", bad, "--model", model, "--resolution", "64", "--steps", "1",
                 "--rank", "4", "-o", out, NULL) != 0);
    CHECK(strstr(g_out, "photo0.png") != NULL || strstr(g_err, "photo0.png") != NULL);
    /* A HEIC is taken as a photo (and this one refused as not one, by name). */
    snprintf(path, sizeof path, "%s/photo0.png", bad);
    unlink(path);
    snprintf(path, sizeof path, "%s/phone.heic", bad);
    if ((f = fopen(path, "wb")))
        fputs("....ftypheic but nothing else", f), fclose(f);
    CHECK(client(g_keys, 600000, "train", "--data", bad, "--model", model, "--resolution", "64", "--steps", "1",
                 "--rank", "4", "-o", out, NULL) != 0);
    CHECK(strstr(g_out, "phone.heic") != NULL || strstr(g_err, "phone.heic") != NULL);
}

/*  Whether the files of dir a and dir b (one level, plus images/) are the
 *  same, byte for byte; names the first difference in *why. */
static int same_tree(const char *a, const char *b, char *why, size_t cap)
{
    const char *subs[] = {"", "/images"};
    for (int k = 0; k < 2; k++) {
        char da[400];
        snprintf(da, sizeof da, "%s%s", a, subs[k]);
        DIR *d = opendir(da);
        if (!d) {
            snprintf(why, cap, "%s is not a folder", da);
            return 0;
        }
        int same = 1, files = 0;
        for (struct dirent *e; same && (e = readdir(d));) {
            char pa[700], pb[700];
            snprintf(pa, sizeof pa, "%s/%s", da, e->d_name);
            snprintf(pb, sizeof pb, "%s%s/%s", b, subs[k], e->d_name);
            struct stat st;
            if (e->d_name[0] == '.' || stat(pa, &st) != 0 || !S_ISREG(st.st_mode))
                continue;
            size_t na = 0, nb = 0;
            uint8_t *x = slurp(pa, &na), *y = slurp(pb, &nb);
            same = x && y && na == nb && memcmp(x, y, na) == 0;
            if (!same)
                snprintf(why, cap, "%s differs", pb);
            files++;
            free(x), free(y);
        }
        closedir(d);
        if (!same)
            return 0;
        if (!files) {
            snprintf(why, cap, "%s is empty", da);
            return 0;
        }
    }
    return 1;
}

/*  prep --cluster: one task per photo over the workers, the near-duplicates
 *  chosen over the whole set by the coordinator, and the same folder, byte
 *  for byte, as prep on one machine; a second run comes from the result
 *  cache. */
static void test_prep_on_cluster(void)
{
    char raw[300], local[300], on[300], path[400], log[1500];
    snprintf(raw, sizeof raw, "%s/photos-prep", g_dir);
    snprintf(local, sizeof local, "%s/prep-local", g_dir);
    snprintf(on, sizeof on, "%s/prep-cluster", g_dir);
    mkdir(raw, 0755);
    CHECK_EQ(wait_workers(3), 0);
    df_error_t err;
    df_error_clear(&err);
    for (int i = 0; i < 4; i++) { /* textured, so sharp enough to pass; each its own */
        const uint32_t w = 300 + 20 * i, h = 260;
        uint8_t *rgb = malloc(w * h * 3);
        for (uint32_t y = 0; y < h; y++)
            for (uint32_t x = 0; x < w * 3; x++)
                rgb[y * w * 3 + x] = (uint8_t)(((x / 3 + 7 * i) * 37 + (y / (3 + i)) * 91 + (x % 3) * 50) % 200 + 28);
        snprintf(path, sizeof path, "%s/photo%d.png", raw, i);
        CHECK_OK(df_png_write(path, rgb, w, h, NULL, 0, &err), &err);
        if (i == 0) { /* the same photo again: a near-duplicate */
            snprintf(path, sizeof path, "%s/photo0-copy.png", raw);
            CHECK_OK(df_png_write(path, rgb, w, h, NULL, 0, &err), &err);
        }
        free(rgb);
    }
    snprintf(path, sizeof path, "%s/photo1.txt", raw);
    FILE *f = fopen(path, "w");
    if (f)
        fputs("a photo of a dog on grass\n", f), fclose(f);
    snprintf(path, sizeof path, "%s/broken.png", raw);
    if ((f = fopen(path, "w")))
        fputs("not a png", f), fclose(f);
    int before[8] = {0}, fetched_before = 0;
    for (int i = 0; i < g_nstarted && i < 8; i++) {
        snprintf(log, sizeof log, "%s/%s.log", g_dir, g_started[i].name);
        before[i] = count_lines_with(log, "prep: photo");
        fetched_before += count_lines_with(log, "cached artifact");
    }
    /* The folder as typed, "/." and all: both ways name the photos so. */
    char typed[320];
    snprintf(typed, sizeof typed, "%s/.", raw);
    CHECK_EQ(client(g_keys, 20000, "prep", typed, "-o", local, "--class", "dog", "--resolution", "256", NULL), 0);
    CHECK_EQ(client(g_keys, 120000, "prep", typed, "-o", on, "--class", "dog", "--resolution", "256", "--cluster",
                    NULL),
             0);
    char why[800] = "", job[64], fetched_dir[600];
    job_id(job, sizeof job);
    CHECK(same_tree(local, on, why, sizeof why));
    if (why[0])
        fprintf(stderr, "  %s\n", why);
    /* The set stays in the coordinator: fetched later, it is the same folder. */
    snprintf(path, sizeof path, "%s/prep-fetched", g_dir);
    CHECK_EQ(client(g_keys, 60000, "fetch", job, "-o", path, NULL), 0);
    snprintf(fetched_dir, sizeof fetched_dir, "%s/%s/dataset", path, job);
    CHECK(same_tree(local, fetched_dir, why, sizeof why));
    snprintf(path, sizeof path, "%s/report.txt", on);
    size_t n = 0;
    uint8_t *report = slurp(path, &n);
    CHECK(report && strstr((char *)report, "4 of 6 photos accepted") && strstr((char *)report, "rejected broken.png") &&
          strstr((char *)report, "near-duplicate of photo0"));
    free(report);
    snprintf(path, sizeof path, "%s/.store", on);
    CHECK(access(path, F_OK) != 0);
    /* Spread over the workers, which read the photos from the coordinator's
     * store (uploaded by the client), not from the client's folder. */
    int busy = 0, fetched = 0;
    for (int i = 0; i < g_nstarted && i < 8; i++) {
        snprintf(log, sizeof log, "%s/%s.log", g_dir, g_started[i].name);
        busy += count_lines_with(log, "prep: photo") > before[i];
        fetched += count_lines_with(log, "cached artifact");
    }
    CHECK(busy >= 2);
    CHECK(fetched - fetched_before >= 6);
    /* Again: every photo's verdict from the result cache, the same folder. */
    CHECK_EQ(client(g_keys, 120000, "prep", typed, "-o", on, "--class", "dog", "--resolution", "256", "--cluster",
                    NULL),
             0);
    CHECK(strstr(g_out, "4 of 6 photos accepted (6 from the cache)") != NULL);
    CHECK(same_tree(local, on, why, sizeof why));
    /* Captions by the tiny BLIP model (tests/data/blip_tiny, beside the
     * corpus) for the photos without a caption file; the one with a file
     * keeps its own. The same again comes from the result cache. */
    char blip[600], capdir[300];
    snprintf(blip, sizeof blip, "%s/../../data/blip_tiny", g_corpus);
    snprintf(capdir, sizeof capdir, "%s/prep-captioned", g_dir);
    for (int run = 0; run < 2; run++) {
        CHECK_EQ(client(g_keys, 300000, "prep", typed, "-o", capdir, "--class", "dog", "--resolution", "256",
                        "--captioner", blip, "--caption-prompt", "a picture of", "--caption-beams", "2",
                        "--caption-min-length", "4", NULL),
                 0);
        CHECK(strstr(g_out, "4 of 6 photos accepted") != NULL);
        CHECK(run == 0 || strstr(g_out, "(6 from the cache)") != NULL);
        snprintf(path, sizeof path, "%s/metadata.jsonl", capdir);
        size_t mn = 0;
        uint8_t *m = slurp(path, &mn);
        CHECK(m && count((char *)m, "\"caption_from\":\"model\"") == 3 &&
              count((char *)m, "\"caption_from\":\"sidecar\"") == 1 &&
              count((char *)m, "\"caption\":\"TOK dog, a picture of ") == 3);
        free(m);
    }
    /* --no-cache: every photo prepared again, to the same result. */
    CHECK_EQ(client(g_keys, 120000, "prep", typed, "-o", on, "--class", "dog", "--resolution", "256", "--cluster",
                    "--no-cache", NULL),
             0);
    CHECK(strstr(g_out, "4 of 6 photos accepted") != NULL && strstr(g_out, "from the cache") == NULL);
    CHECK(same_tree(local, on, why, sizeof why));
}

/*  Whether a sample cache in the coordinator's artifact store carries the
 *  time ids want (SDXL's size conditioning). */
static int cache_with_time_ids(const float want[6])
{
    char objects[400];
    snprintf(objects, sizeof objects, "%s/artifacts/objects", g_state);
    DIR *d = opendir(objects);
    int found = 0;
    for (struct dirent *e; d && !found && (e = readdir(d));) {
        char sub[700];
        snprintf(sub, sizeof sub, "%s/%s", objects, e->d_name);
        DIR *d2 = e->d_name[0] == '.' ? NULL : opendir(sub);
        for (struct dirent *f; d2 && !found && (f = readdir(d2));) {
            char path[1000];
            snprintf(path, sizeof path, "%s/%s", sub, f->d_name);
            df_safetensors_t *st = f->d_name[0] == '.' ? NULL : df_safetensors_open(path, NULL);
            const df_st_tensor *t = st ? df_safetensors_find(st, "time_ids") : NULL;
            float ids[6];
            if (t && t->nelem == 6 && df_st_tensor_to_f32(t, ids, NULL) == DF_OK)
                found = memcmp(ids, want, sizeof ids) == 0;
            df_safetensors_destroy(&st);
        }
        if (d2)
            closedir(d2);
    }
    if (d)
        closedir(d);
    return found;
}

/*  train --prep: raw photos go through prep first (a broken file is
 *  rejected and reported, the rest trains), into OUT/dataset, which a
 *  later train takes as it is. */
static void test_train_prep(void)
{
    char raw[300], model[300], out[300], again[300], path[400];
    snprintf(raw, sizeof raw, "%s/photos-raw", g_dir);
    snprintf(out, sizeof out, "%s/prepped", g_dir);
    snprintf(again, sizeof again, "%s/prepped-again", g_dir);
    tiny_model(model, sizeof model);
    mkdir(raw, 0755);
    df_error_t err;
    df_error_clear(&err);
    for (int i = 0; i < 2; i++) { /* textured, so sharp enough to pass */
        const uint32_t w = 96 + 16 * i, h = 80;
        uint8_t *rgb = malloc(w * h * 3);
        for (uint32_t k = 0; k < w * h * 3; k++)
            rgb[k] = (uint8_t)(((k * 2654435761u) >> (13 + i)) % 200 + 28);
        snprintf(path, sizeof path, "%s/photo%d.png", raw, i);
        CHECK_OK(df_png_write(path, rgb, w, h, NULL, 0, &err), &err);
        free(rgb);
    }
    snprintf(path, sizeof path, "%s/photo0.txt", raw);
    FILE *f = fopen(path, "w");
    if (f)
        fputs("a photo of a dog on grass\n", f), fclose(f);
    snprintf(path, sizeof path, "%s/broken.png", raw);
    if ((f = fopen(path, "w")))
        fputs("not a png", f), fclose(f);
    CHECK_EQ(client(g_keys, 600000, "train", "--data", raw, "--prep", "--model", model, "--class", "dog",
                    "--resolution", "64", "--steps", "1", "--rank", "4", "-o", out, NULL),
             0);
    snprintf(path, sizeof path, "%s/dataset/report.txt", out);
    size_t n = 0;
    uint8_t *report = slurp(path, &n);
    CHECK(report && strstr((char *)report, "2 of 3 photos accepted") && strstr((char *)report, "rejected broken.png"));
    free(report);
    snprintf(path, sizeof path, "%s/dataset/images/000-photo0.txt", out);
    uint8_t *caption = slurp(path, &n);
    CHECK(caption && strcmp((char *)caption, "a photo of TOK dog on grass\n") == 0);
    free(caption);
    snprintf(path, sizeof path, "%s/lora.safetensors", out);
    CHECK(access(path, R_OK) == 0);
    /* Each photo conditions on what it was cut from (96x80 and 112x80, the
     * centre square's left edge at 8 and 16 px, 6 and 13 once scaled to
     * 64), not on the 64x64 image prep made of it. */
    const float ids0[6] = {80, 96, 0, 6, 64, 64}, ids1[6] = {80, 112, 0, 13, 64, 64};
    CHECK(cache_with_time_ids(ids0) && cache_with_time_ids(ids1));
    /* The prepared set, given as --data, trains as it is. */
    snprintf(path, sizeof path, "%s/dataset", out);
    CHECK_EQ(client(g_keys, 600000, "train", "--data", path, "--model", model, "--class", "dog", "--resolution", "64",
                    "--steps", "1", "--rank", "4", "-o", again, NULL),
             0);
}

/*  A training task whose worker is killed goes on elsewhere from its last
 *  checkpoint in the artifact store, and ends exactly where an uninterrupted
 *  run ends: the same loss curve, the same LoRA. */
static void test_train_resumes_after_worker_loss(void)
{
    char data[300], model[300], whole[300], cut[300], a[400], b[400], clog[300], log[1500], line[2048];
    snprintf(data, sizeof data, "%s/photos-ckpt", g_dir);
    snprintf(whole, sizeof whole, "%s/ckpt-whole", g_dir);
    snprintf(cut, sizeof cut, "%s/ckpt-cut", g_dir);
    snprintf(clog, sizeof clog, "%s/coordinator.log", g_dir);
    tiny_model(model, sizeof model);
    make_photos(data);
    CHECK_EQ(wait_workers(3), 0);
    CHECK_EQ(client(g_keys, 600000, "train", "--data", data, "--model", model, "--resolution", "64", "--steps", "24",
                    "--rank", "4", "--lr", "1e-3", "--seed", "9", "--checkpoint-every", "3", "-o", whole, NULL),
             0);
    char first_job[64] = "";
    job_id(first_job, sizeof first_job);
    snprintf(log, sizeof log, "%s/train-cut.log", g_dir);
    char *argv[] = {(char *)g_client_bin, "--coordinator", g_endpoint, "--keys", g_keys, "--json", "train", "--data",
                    data, "--model", model, "--resolution", "64", "--steps", "24", "--rank", "4", "--lr", "1e-3",
                    "--seed", "9", "--checkpoint-every", "3", "-o", cut, NULL};
    pid_t trainer = proc_start(argv, log);
    /* The next train job's task (after the run's encode job), once it has
     * stored a checkpoint. */
    char job[64], needle[96];
    snprintf(job, sizeof job, "j-%d", first_job[0] ? atoi(first_job + 2) + 2 : 0);
    snprintf(needle, sizeof needle, "%s.0 checkpoint", job);
    CHECK_EQ(proc_wait_line(clog, needle, NULL, 0, 300000), 0);
    snprintf(needle, sizeof needle, "task %s.0 (train", job);
    int killed = worker_holding(needle);
    CHECK(killed >= 0);
    if (killed < 0) {
        proc_stop(trainer, SIGKILL, 5000);
        return;
    }
    proc_stop(g_started[killed].pid, SIGKILL, 5000);
    CHECK_EQ(proc_stop(trainer, 0, 600000), 0); /* signal 0: just wait for it */
    CHECK_EQ(client(g_keys, 10000, "status", job, NULL), 0);
    CHECK(strstr(g_out, "\"attempt\":2") != NULL && strstr(g_out, "\"state\":\"succeeded\"") != NULL);
    int resumed = 0;
    for (int i = 0; i < g_nstarted; i++) {
        if (!first_of_its_name(i))
            continue;
        snprintf(log, sizeof log, "%s/%s.log", g_dir, g_started[i].name);
        resumed += last_line_with(log, "attempt 2 goes on from checkpoint", line, sizeof line);
    }
    CHECK_EQ(resumed, 1);
    snprintf(a, sizeof a, "%s/loss.csv", whole);
    snprintf(b, sizeof b, "%s/loss.csv", cut);
    size_t na = 0, nb = 0;
    uint8_t *ca = slurp(a, &na), *cb = slurp(b, &nb);
    CHECK(ca && cb && na == nb && na > 24 * 4 && memcmp(ca, cb, na) == 0);
    free(ca), free(cb);
    snprintf(a, sizeof a, "%s/lora.safetensors", whole);
    snprintf(b, sizeof b, "%s/lora.safetensors", cut);
    CHECK(lora_difference(a, b) == 0);
    restart_worker(killed);
    CHECK_EQ(wait_workers(3), 0);
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: test_cluster COORDINATOR WORKER CLIENT CORPUS_DIR [TEST]\n");
        return 2;
    }
    g_coord_bin = argv[1], g_worker_bin = argv[2], g_client_bin = argv[3], g_corpus = argv[4];
    test_filter_ = argc > 5 ? argv[5] : NULL;
    snprintf(g_dir, sizeof g_dir, "/tmp/df_cluster_XXXXXX");
    if (!mkdtemp(g_dir))
        return 1;
    fprintf(stderr, "logs in %s\n", g_dir);
    /* The daemons' sanitizer leak reports would only name the Vulkan driver. */
    setenv("ASAN_OPTIONS", "detect_leaks=0", 1);
    setenv("DF_LOG_LEVEL", "info", 1);
    char cache[300];
    snprintf(cache, sizeof cache, "%s/xdg-cache", g_dir);
    setenv("XDG_CACHE_HOME", cache, 1);
    zsys_handler_set(NULL);
    snprintf(g_keys, sizeof g_keys, "%s/keys", g_dir);
    snprintf(g_state, sizeof g_state, "%s/state", g_dir);
    char *kargv[] = {(char *)g_client_bin, "keys", "--out", g_keys, NULL};
    if (proc_run(kargv, g_out, OUT_CAP, g_err, sizeof g_err, 10000) != 0) {
        fprintf(stderr, "keys: %s\n", g_err);
        return 1;
    }
    start_coordinator("tcp://127.0.0.1:*");
    for (int i = 0; i < 3; i++) {
        char name[16];
        snprintf(name, sizeof name, "w%d", i + 1);
        g_workers[g_nworkers++] = start_worker(name, g_keys);
    }
    RUN(test_bench_spreads_over_all_workers);
    RUN(test_worker_killed_mid_job);
    RUN(test_coordinator_killed_mid_job);
    RUN(test_unlisted_keys_are_refused);
    RUN(test_malformed_messages_leave_it_serving);
    RUN(test_model_reaches_workers);
    RUN(test_generate_over_workers);
    RUN(test_generate_init_noise);
    RUN(test_train);
    RUN(test_train_data_parallel);
    RUN(test_train_encode_job);
    RUN(test_prep_on_cluster);
    RUN(test_train_prep);
    RUN(test_train_resumes_after_worker_loss);
    RUN(test_cancel);
    RUN(test_sigterm_finishes_current_task);
    RUN(test_embedded_mode);
    for (int i = 0; i < g_nworkers; i++)
        proc_stop(g_workers[i], SIGKILL, 5000);
    CHECK_EQ(proc_stop(g_coord, SIGTERM, 10000), 0);
    int rc = test_summary();
    if (rc == 0) {
        char cmd[200];
        snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", g_dir);
    }
    return rc;
}
