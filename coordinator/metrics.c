/*  metrics.c - see metrics.h. */
#include "metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define MAX_REQUEST 8192
#define REQUEST_TIMEOUT_MS 5000

struct _df_metrics_t {
    uv_tcp_t server;
    const df_api *api;
    int port;
    int closing;
};

typedef struct {
    uv_tcp_t tcp;
    uv_timer_t timer;
    df_metrics_t *owner;
    char buf[MAX_REQUEST];
    size_t len;
    int handles;
    int responded;
} conn_t;

typedef struct {
    char *s;
    size_t len, cap;
} strbuf;

static void add(strbuf *b, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0)
            return;
        if (b->s && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->len + (size_t)n + 1)
            cap *= 2;
        char *s = realloc(b->s, cap);
        if (!s)
            return;
        b->s = s;
        b->cap = cap;
    }
}

char *df_metrics_render(const df_api *api, uint64_t now_ms)
{
    Dreamfleet__Stats st;
    double bounds[11];
    uint64_t counts[12];
    df_api_stats(api, now_ms, &st, bounds, counts);
    strbuf b = {0};
    add(&b, "# HELP dreamfleet_queue_depth Tasks waiting for a worker.\n# TYPE dreamfleet_queue_depth gauge\n");
    add(&b, "dreamfleet_queue_depth %llu\n", (unsigned long long)st.queue_depth);
    add(&b, "# HELP dreamfleet_tasks Tasks by state.\n# TYPE dreamfleet_tasks gauge\n");
    static const char *names[] = {"queued", "assigned", "running", "succeeded", "failed", "cancelled"};
    uint64_t by_state[6] = {st.queue_depth, st.tasks_assigned, st.tasks_running, st.tasks_succeeded, st.tasks_failed,
                            st.tasks_cancelled};
    for (int i = 0; i < 6; i++)
        add(&b, "dreamfleet_tasks{state=\"%s\"} %llu\n", names[i], (unsigned long long)by_state[i]);
    add(&b, "# HELP dreamfleet_jobs_total Jobs accepted.\n# TYPE dreamfleet_jobs_total counter\n");
    add(&b, "dreamfleet_jobs_total %llu\n", (unsigned long long)st.jobs_total);
    add(&b, "# HELP dreamfleet_workers Workers known, and alive (heard from within the timeout).\n");
    add(&b, "# TYPE dreamfleet_workers gauge\n");
    add(&b, "dreamfleet_workers{liveness=\"alive\"} %u\n", st.workers_alive);
    add(&b, "dreamfleet_workers{liveness=\"lost\"} %u\n", st.workers_known - st.workers_alive);
    add(&b, "# HELP dreamfleet_bytes_total Bytes moved through the coordinator's socket.\n");
    add(&b, "# TYPE dreamfleet_bytes_total counter\n");
    add(&b, "dreamfleet_bytes_total{direction=\"in\"} %llu\n", (unsigned long long)st.bytes_in);
    add(&b, "dreamfleet_bytes_total{direction=\"out\"} %llu\n", (unsigned long long)st.bytes_out);
    add(&b, "# HELP dreamfleet_messages_total Messages through the coordinator's socket.\n");
    add(&b, "# TYPE dreamfleet_messages_total counter\n");
    add(&b, "dreamfleet_messages_total{direction=\"in\"} %llu\n", (unsigned long long)st.messages_in);
    add(&b, "dreamfleet_messages_total{direction=\"out\"} %llu\n", (unsigned long long)st.messages_out);
    add(&b, "dreamfleet_messages_total{direction=\"rejected\"} %llu\n", (unsigned long long)st.messages_rejected);
    add(&b, "# HELP dreamfleet_task_latency_seconds Time from queued to finished, per succeeded task.\n");
    add(&b, "# TYPE dreamfleet_task_latency_seconds histogram\n");
    for (int i = 0; i < 11; i++)
        add(&b, "dreamfleet_task_latency_seconds_bucket{le=\"%g\"} %llu\n", bounds[i] / 1000.0,
            (unsigned long long)counts[i]);
    add(&b, "dreamfleet_task_latency_seconds_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)counts[11]);
    add(&b, "dreamfleet_task_latency_seconds_sum %g\n", st.latency_sum_ms / 1000.0);
    add(&b, "dreamfleet_task_latency_seconds_count %llu\n", (unsigned long long)counts[11]);
    add(&b, "# HELP dreamfleet_uptime_seconds Since the coordinator started.\n# TYPE dreamfleet_uptime_seconds gauge\n");
    add(&b, "dreamfleet_uptime_seconds %g\n", st.uptime_ms / 1000.0);
    return b.s;
}

static void conn_closed(uv_handle_t *h)
{
    conn_t *c = h->data;
    if (--c->handles == 0)
        free(c);
}

static void conn_close(conn_t *c)
{
    if (!uv_is_closing((uv_handle_t *)&c->tcp))
        uv_close((uv_handle_t *)&c->tcp, conn_closed);
    if (!uv_is_closing((uv_handle_t *)&c->timer))
        uv_close((uv_handle_t *)&c->timer, conn_closed);
}

typedef struct {
    uv_write_t req;
    conn_t *conn;
    char *data;
} write_t;

static void on_written(uv_write_t *w, int status)
{
    (void)status;
    write_t *wr = (write_t *)w;
    conn_close(wr->conn);
    free(wr->data);
    free(wr);
}

static void respond(conn_t *c, int code, const char *reason, const char *body)
{
    if (c->responded)
        return;
    c->responded = 1;
    size_t blen = strlen(body);
    size_t cap = blen + 256;
    write_t *wr = calloc(1, sizeof *wr);
    char *data = malloc(cap);
    if (!wr || !data) {
        free(wr), free(data);
        conn_close(c);
        return;
    }
    int n = snprintf(data, cap,
                     "HTTP/1.0 %d %s\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n%s",
                     code, reason, blen, body);
    wr->conn = c;
    wr->data = data;
    uv_buf_t buf = uv_buf_init(data, (unsigned)n);
    if (uv_write(&wr->req, (uv_stream_t *)&c->tcp, &buf, 1, on_written)) {
        free(data), free(wr);
        conn_close(c);
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    conn_t *c = h->data;
    buf->base = c->buf + c->len;
    buf->len = MAX_REQUEST - 1 - c->len;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    (void)buf;
    conn_t *c = s->data;
    if (n < 0) {
        conn_close(c);
        return;
    }
    c->len += (size_t)n;
    c->buf[c->len] = '\0';
    if (!strstr(c->buf, "\r\n\r\n") && !strstr(c->buf, "\n\n")) {
        if (c->len >= MAX_REQUEST - 1)
            respond(c, 413, "Request Entity Too Large", "request too large\n");
        return;
    }
    uv_read_stop(s);
    if (strncmp(c->buf, "GET /metrics ", 13) == 0 || strncmp(c->buf, "GET /metrics?", 13) == 0) {
        char *text = df_metrics_render(c->owner->api, uv_hrtime() / 1000000);
        respond(c, 200, "OK", text ? text : "");
        free(text);
    } else {
        respond(c, 404, "Not Found", "try GET /metrics\n");
    }
}

static void on_timeout(uv_timer_t *t)
{
    conn_close(t->data);
}

static void on_connection(uv_stream_t *server, int status)
{
    df_metrics_t *self = server->data;
    if (status < 0 || self->closing)
        return;
    conn_t *c = calloc(1, sizeof *c);
    if (!c)
        return;
    c->owner = self;
    uv_tcp_init(server->loop, &c->tcp);
    uv_timer_init(server->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->handles = 2;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    uv_timer_start(&c->timer, on_timeout, REQUEST_TIMEOUT_MS, 0);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

df_metrics_t *df_metrics_new(uv_loop_t *loop, const char *host_port, const df_api *api, df_error_t *err)
{
    char host[256];
    const char *colon = strrchr(host_port, ':');
    if (!colon || colon == host_port || (size_t)(colon - host_port) >= sizeof host) {
        df_error_set(err, DF_E_INVALID, "--metrics '%s': expected HOST:PORT", host_port);
        return NULL;
    }
    memcpy(host, host_port, (size_t)(colon - host_port));
    host[colon - host_port] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 0 || port > 65535) {
        df_error_set(err, DF_E_INVALID, "--metrics '%s': bad port", host_port);
        return NULL;
    }
    struct sockaddr_in addr;
    if (uv_ip4_addr(host, (int)port, &addr)) {
        df_error_set(err, DF_E_INVALID, "--metrics '%s': '%s' is not an IPv4 address", host_port, host);
        return NULL;
    }
    df_metrics_t *self = calloc(1, sizeof *self);
    if (!self) {
        df_error_set(err, DF_E_NOMEM, "metrics: out of memory");
        return NULL;
    }
    self->api = api;
    uv_tcp_init(loop, &self->server);
    self->server.data = self;
    int r = uv_tcp_bind(&self->server, (const struct sockaddr *)&addr, 0);
    if (!r)
        r = uv_listen((uv_stream_t *)&self->server, 64, on_connection);
    if (r) {
        df_error_set(err, DF_E_IO, "--metrics %s: %s", host_port, uv_strerror(r));
        df_metrics_close(&self);
        return NULL;
    }
    struct sockaddr_storage bound;
    int len = sizeof bound;
    uv_tcp_getsockname(&self->server, (struct sockaddr *)&bound, &len);
    self->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
    return self;
}

static void server_closed(uv_handle_t *h) { free(h->data); }

void df_metrics_close(df_metrics_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    df_metrics_t *self = *self_p;
    self->closing = 1;
    uv_close((uv_handle_t *)&self->server, server_closed);
    *self_p = NULL;
}

int df_metrics_port(const df_metrics_t *self) { return self->port; }
