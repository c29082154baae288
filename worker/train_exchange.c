/*  train_exchange.c - see train_exchange.h. */
#include "train_exchange.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dreamfleet.pb-c.h"
#include "log.h"

/* Encoded bytes per part: well inside the wire's message limit. */
#define PART_BYTES (512u << 10)

struct _df_train_exchange_t {
    df_train_exchange_opts o;
    char job_id[64]; /* o.job_id's text, which the caller need not keep */
    df_train_sync sync;
    uint64_t n;
    float *residual; /* error feedback of lossy encodings */
    uint8_t **parts; /* this round's packed LoraDelta parts, for sending again */
    size_t *part_lens, nparts;
    df_train_exchange_stats st;
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void free_parts(df_train_exchange_t *self)
{
    for (size_t i = 0; i < self->nparts; i++)
        free(self->parts[i]);
    free(self->parts), free(self->part_lens);
    self->parts = NULL, self->part_lens = NULL, self->nparts = 0;
}

static int scaled(df_delta_encoding e) { return e == DF_DELTA_INT8 || e == DF_DELTA_F16; }

/*  Packs tensors [first, end) (already encoded in ts) as one part. */
static int add_part(df_train_exchange_t *self, Dreamfleet__LoraDelta *head, Dreamfleet__DeltaTensor **ts,
                    uint32_t first, uint32_t end, df_error_t *err)
{
    head->first_tensor = first;
    head->n_tensors = end - first;
    head->tensors = ts + first;
    head->n_losses = first == 0 ? head->n_losses : 0;
    size_t len = dreamfleet__lora_delta__get_packed_size(head);
    uint8_t *buf = malloc(len ? len : 1);
    uint8_t **parts = realloc(self->parts, (self->nparts + 1) * sizeof *parts);
    size_t *lens = parts ? realloc(self->part_lens, (self->nparts + 1) * sizeof *lens) : NULL;
    if (parts)
        self->parts = parts;
    if (lens)
        self->part_lens = lens;
    if (!buf || !parts || !lens) {
        free(buf);
        return df_error_set(err, DF_E_NOMEM, "train: out of memory");
    }
    dreamfleet__lora_delta__pack(head, buf);
    self->parts[self->nparts] = buf;
    self->part_lens[self->nparts++] = len;
    return DF_OK;
}

/*  Encodes values tensor by tensor and packs them in parts. */
static int encode_parts(df_train_exchange_t *self, const df_lora_trainer_t *tr, uint64_t round, int gradient,
                        const float *values, uint64_t samples, float *losses, uint32_t n_steps, df_error_t *err)
{
    const size_t nt = df_lora_trainer_tensor_count(tr);
    Dreamfleet__DeltaTensor *ts = calloc(nt, sizeof *ts);
    Dreamfleet__DeltaTensor **tp = calloc(nt, sizeof *tp);
    int rc = ts && tp ? DF_OK : df_error_set(err, DF_E_NOMEM, "train: out of memory");
    Dreamfleet__LoraDelta head = DREAMFLEET__LORA_DELTA__INIT;
    head.job_id = (char *)self->o.job_id;
    head.round = (uint32_t)round;
    head.worker_id = (char *)self->o.ctx->worker_name;
    head.task_id = (char *)self->o.ctx->task_id;
    head.samples = samples;
    head.gradient = gradient;
    head.encoding = (char *)df_delta_encoding_name(self->o.encoding);
    head.tensor_count = (uint32_t)nt;
    head.n_losses = n_steps;
    head.losses = losses;
    uint64_t at = 0;
    size_t part_bytes = 0;
    uint32_t part_first = 0;
    for (size_t i = 0; rc == DF_OK && i < nt; i++) {
        uint32_t rows, cols;
        df_lora_trainer_tensor_shape(tr, i, &rows, &cols);
        Dreamfleet__DeltaTensor *t = &ts[i];
        dreamfleet__delta_tensor__init(t);
        tp[i] = t;
        t->rows = rows, t->cols = cols;
        if (scaled(self->o.encoding)) {
            t->n_row_scales = rows;
            if (!(t->row_scales = malloc(rows * sizeof *t->row_scales)))
                rc = df_error_set(err, DF_E_NOMEM, "train: out of memory");
        }
        size_t len = 0;
        if (rc == DF_OK)
            rc = df_delta_encode(self->o.encoding, values + at, rows, cols, self->residual ? self->residual + at : NULL,
                                 t->row_scales, &t->data.data, &len, err);
        t->data.len = len;
        at += (uint64_t)rows * cols;
        self->st.bytes_sent += len + 4 * t->n_row_scales;
        self->st.raw_bytes += 4ull * rows * cols;
        if (rc == DF_OK && part_bytes && part_bytes + len > PART_BYTES) {
            rc = add_part(self, &head, tp, part_first, (uint32_t)i, err);
            part_first = (uint32_t)i, part_bytes = 0;
        }
        part_bytes += len;
    }
    if (rc == DF_OK)
        rc = add_part(self, &head, tp, part_first, (uint32_t)nt, err);
    for (size_t i = 0; ts && i < nt; i++)
        free(ts[i].data.data), free(ts[i].row_scales);
    free(ts), free(tp);
    return rc;
}

static int send_parts(df_train_exchange_t *self, df_error_t *err)
{
    for (size_t i = 0; i < self->nparts; i++) {
        int rc = self->o.ctx->send_delta(self->o.ctx, self->parts[i], self->part_lens[i], err);
        if (rc)
            return rc;
    }
    return DF_OK;
}

/*  Decodes one part of the group's reply into values; *got counts tensors. */
static int take_reply(df_train_exchange_t *self, const df_lora_trainer_t *tr, const Dreamfleet__LoraDelta *d,
                      const uint64_t *offsets, uint8_t *seen, uint32_t *got, float *values, float *losses,
                      uint32_t n_steps, df_error_t *err)
{
    const size_t nt = df_lora_trainer_tensor_count(tr);
    if (d->tensor_count != nt || (uint64_t)d->first_tensor + d->n_tensors > nt)
        return df_error_set(err, DF_E_FORMAT, "train: the group's average holds tensors %u..%zu of %u, this LoRA %zu",
                            d->first_tensor, d->first_tensor + d->n_tensors, d->tensor_count, nt);
    if (df_delta_encoding_parse(d->encoding ? d->encoding : "") != (int)self->o.encoding)
        return df_error_set(err, DF_E_FORMAT, "train: the group's average is in '%s', not %s", d->encoding,
                            df_delta_encoding_name(self->o.encoding));
    for (size_t k = 0; k < d->n_tensors; k++) {
        const uint32_t i = d->first_tensor + (uint32_t)k;
        const Dreamfleet__DeltaTensor *t = d->tensors[k];
        uint32_t rows, cols;
        df_lora_trainer_tensor_shape(tr, i, &rows, &cols);
        if (seen[i])
            continue;
        if (t->rows != rows || t->cols != cols)
            return df_error_set(err, DF_E_FORMAT, "train: the group's tensor %u is %ux%u, this LoRA's %ux%u", i, t->rows,
                                t->cols, rows, cols);
        if (t->data.len == 0) { /* nobody sent it this round: no change */
            memset(values + offsets[i], 0, (size_t)rows * cols * sizeof *values);
        } else {
            if (scaled(self->o.encoding) && t->n_row_scales != rows)
                return df_error_set(err, DF_E_FORMAT, "train: the group's tensor %u has %zu row scales for %u rows", i,
                                    t->n_row_scales, rows);
            int rc = df_delta_decode(self->o.encoding, t->data.data, t->data.len, t->row_scales, rows, cols,
                                     values + offsets[i], err);
            if (rc)
                return df_error_prefix(err, "train: the group's tensor %u", i);
        }
        seen[i] = 1;
        (*got)++;
    }
    if (d->first_tensor == 0) {
        if (d->n_losses == n_steps)
            memcpy(losses, d->losses, n_steps * sizeof *losses);
        self->st.group_bytes += d->bytes_in;
        self->st.group_raw += d->raw_bytes;
    }
    self->sync.first = d->share_first;
    self->sync.count = d->share_count;
    self->st.members = d->members;
    self->st.keeper = d->keeper;
    return DF_OK;
}

static int exchange_round(df_train_sync *sync, const df_lora_trainer_t *tr, uint64_t round, int gradient,
                          float *values, uint64_t n, uint64_t samples, float *losses, uint32_t n_steps,
                          df_error_t *err)
{
    df_train_exchange_t *self = sync->ctx;
    if (self->n && n != self->n)
        return df_error_set(err, DF_E_INVALID, "train: %llu values to exchange, the last round had %llu",
                            (unsigned long long)n, (unsigned long long)self->n);
    self->n = n;
    if (self->o.encoding != DF_DELTA_F32 && !self->residual &&
        !(self->residual = calloc(n ? n : 1, sizeof *self->residual)))
        return df_error_set(err, DF_E_NOMEM, "train: out of memory");
    const size_t nt = df_lora_trainer_tensor_count(tr);
    uint64_t *offsets = calloc(nt + 1, sizeof *offsets);
    uint8_t *seen = calloc(nt ? nt : 1, 1);
    int rc = offsets && seen ? DF_OK : df_error_set(err, DF_E_NOMEM, "train: out of memory");
    for (size_t i = 0; rc == DF_OK && i < nt; i++) {
        uint32_t rows, cols;
        df_lora_trainer_tensor_shape(tr, i, &rows, &cols);
        offsets[i + 1] = offsets[i] + (uint64_t)rows * cols;
    }
    free_parts(self);
    if (rc == DF_OK)
        rc = encode_parts(self, tr, round, gradient, values, samples, losses, n_steps, err);
    if (rc == DF_OK)
        rc = send_parts(self, err);
    const uint32_t resend = self->o.resend_ms ? self->o.resend_ms : 5000;
    const uint64_t give_up = self->o.give_up_ms ? self->o.give_up_ms : 30u * 60 * 1000, t0 = now_ms();
    uint32_t got = 0;
    while (rc == DF_OK && got < nt) {
        uint8_t *msg = NULL;
        size_t len = 0;
        df_error_t werr;
        df_error_clear(&werr);
        int w = self->o.ctx->recv_delta(self->o.ctx, (int)resend, &msg, &len, &werr);
        if (w == DF_E_IO) { /* nothing came: the coordinator may have missed a part */
            if (now_ms() - t0 > give_up)
                rc = df_error_set(err, DF_E_IO, "train: no average from the coordinator for round %llu in %llu s",
                                  (unsigned long long)round, (unsigned long long)(give_up / 1000));
            else
                rc = send_parts(self, err);
            continue;
        }
        if (w) {
            rc = df_error_set(err, w, "train: %s in round %llu", werr.msg, (unsigned long long)round);
            break;
        }
        Dreamfleet__LoraDelta *d = dreamfleet__lora_delta__unpack(NULL, len, msg);
        free(msg);
        if (!d) {
            df_warn("train: ignored a reply that is not a LoraDelta");
            continue;
        }
        /* Only this task's average of this round: anything else is late. */
        if (d->round == round && d->task_id && strcmp(d->task_id, self->o.ctx->task_id) == 0)
            rc = take_reply(self, tr, d, offsets, seen, &got, values, losses, n_steps, err);
        dreamfleet__lora_delta__free_unpacked(d, NULL);
    }
    if (rc == DF_OK)
        self->st.rounds++;
    free(offsets), free(seen);
    return rc;
}

df_train_exchange_t *df_train_exchange_new(const df_train_exchange_opts *opts, df_error_t *err)
{
    if (!opts->ctx || !opts->ctx->send_delta || !opts->ctx->recv_delta) {
        df_error_set(err, DF_E_UNSUPPORTED, "train: this worker has no coordinator to train with others through");
        return NULL;
    }
    df_train_exchange_t *self = calloc(1, sizeof *self);
    if (!self) {
        df_error_set(err, DF_E_NOMEM, "train: out of memory");
        return NULL;
    }
    self->o = *opts;
    snprintf(self->job_id, sizeof self->job_id, "%s", opts->job_id ? opts->job_id : "");
    self->o.job_id = self->job_id;
    self->sync.exchange = exchange_round;
    self->sync.ctx = self;
    return self;
}

void df_train_exchange_destroy(df_train_exchange_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    df_train_exchange_t *self = *self_p;
    free_parts(self);
    free(self->residual);
    free(self);
    *self_p = NULL;
}

df_train_sync *df_train_exchange_sync(df_train_exchange_t *self) { return &self->sync; }

df_train_exchange_stats df_train_exchange_stats_get(const df_train_exchange_t *self) { return self->st; }
