/*  train_group.c - see train_group.h. */
#include "train_group.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "delta_codec.h"
#include "log.h"
#include "train_share.h"

#define MAX_MEMBERS 64
#define MAX_TENSORS 100000u
#define MAX_TENSOR_VALUES (1u << 28)
#define MAX_LOCAL_STEPS 64
/* Encoded bytes per reply part: well inside the wire's message limit. */
#define PART_BYTES (512u << 10)

typedef struct {
    uint32_t rows, cols;
    float *sum;      /* the round's contributions times their samples */
    double weight;   /* samples behind sum */
    float *residual; /* what encoding the reply lost, carried into the next (lossy encodings) */
    /* This tensor of the last reply. */
    Dreamfleet__DeltaTensor out;
} group_tensor;

struct _df_train_group_t {
    char job_id[64];
    uint32_t members;
    uint64_t samples_per_step;
    uint64_t live;          /* bit per member */
    uint32_t round;         /* in progress; 0 until the first part names it */
    uint32_t completed;     /* rounds completed */
    int encoding;           /* df_delta_encoding; -1 until the first part */
    int gradient;
    uint32_t ntensors;      /* 0 until the first part */
    group_tensor *tensors;
    uint8_t *got;           /* [member][tensor]: received this round */
    uint32_t got_count[MAX_MEMBERS];
    uint32_t n_steps;       /* losses per contribution (0 until a first part) */
    double loss_sum[MAX_LOCAL_STEPS], loss_weight;
    uint64_t bytes_in, raw_bytes, round_started_ms;
    /* The last reply, in parts over the tensors' `out`. */
    Dreamfleet__LoraDelta *parts;
    Dreamfleet__DeltaTensor **part_tensors;
    size_t nparts;
    float reply_losses[MAX_LOCAL_STEPS];
    uint32_t reply_round, reply_members, reply_steps;
    uint32_t share_first[MAX_MEMBERS], share_count[MAX_MEMBERS]; /* each member's next share, as the round ended */
    uint64_t reply_samples, reply_bytes_in, reply_raw;
    char reply_task_id[64];
};

df_train_group_t *df_train_group_new(const char *job_id, uint32_t members, uint64_t samples, df_error_t *err)
{
    if (members < 1 || members > MAX_MEMBERS) {
        df_error_set(err, DF_E_RANGE, "%s: %u training members: from 1 to %d", job_id, members, MAX_MEMBERS);
        return NULL;
    }
    df_train_group_t *self = calloc(1, sizeof *self);
    if (!self) {
        df_error_set(err, DF_E_NOMEM, "%s: out of memory", job_id);
        return NULL;
    }
    snprintf(self->job_id, sizeof self->job_id, "%s", job_id);
    self->members = members;
    self->samples_per_step = samples;
    self->live = members == 64 ? ~0ull : (1ull << members) - 1;
    self->encoding = -1;
    return self;
}

static void free_reply(df_train_group_t *self)
{
    for (uint32_t i = 0; i < self->ntensors; i++) {
        Dreamfleet__DeltaTensor *o = &self->tensors[i].out;
        free(o->data.data);
        free(o->row_scales);
        memset(o, 0, sizeof *o);
    }
    free(self->parts);
    free(self->part_tensors);
    self->parts = NULL;
    self->part_tensors = NULL;
    self->nparts = 0;
}

void df_train_group_destroy(df_train_group_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    df_train_group_t *self = *self_p;
    free_reply(self);
    for (uint32_t i = 0; i < self->ntensors; i++) {
        free(self->tensors[i].sum);
        free(self->tensors[i].residual);
    }
    free(self->tensors);
    free(self->got);
    free(self);
    *self_p = NULL;
}

int df_train_group_live(const df_train_group_t *self, uint32_t member)
{
    return member < self->members && (self->live >> member & 1);
}

uint32_t df_train_group_live_count(const df_train_group_t *self) { return (uint32_t)__builtin_popcountll(self->live); }

int df_train_group_contributed(const df_train_group_t *self, uint32_t member)
{
    return member < self->members && self->ntensors && self->got_count[member] == self->ntensors;
}

uint64_t df_train_group_round_started(const df_train_group_t *self) { return self->round_started_ms; }
uint32_t df_train_group_rounds(const df_train_group_t *self) { return self->completed; }
size_t df_train_group_reply_parts(const df_train_group_t *self) { return self->nparts; }

/*  The first part fixes what the round's contributions look like. */
static int adopt_layout(df_train_group_t *self, const Dreamfleet__LoraDelta *d, df_error_t *err)
{
    if (d->tensor_count == 0 || d->tensor_count > MAX_TENSORS)
        return df_error_set(err, DF_E_RANGE, "%s: %u LoRA tensors: from 1 to %u", self->job_id, d->tensor_count,
                            MAX_TENSORS);
    int enc = df_delta_encoding_parse(d->encoding && *d->encoding ? d->encoding : "f32");
    if (enc < 0)
        return df_error_set(err, DF_E_FORMAT, "%s: unknown delta encoding '%s'", self->job_id, d->encoding);
    self->tensors = calloc(d->tensor_count, sizeof *self->tensors);
    self->got = calloc((size_t)self->members * d->tensor_count, 1);
    if (!self->tensors || !self->got) {
        free(self->tensors), free(self->got);
        self->tensors = NULL, self->got = NULL;
        return df_error_set(err, DF_E_NOMEM, "%s: out of memory", self->job_id);
    }
    self->ntensors = d->tensor_count;
    self->encoding = enc;
    self->gradient = d->gradient;
    return DF_OK;
}

/*  Checks a part against the group before anything of it is counted. */
static int check_part(df_train_group_t *self, uint32_t member, const Dreamfleet__LoraDelta *d, df_error_t *err)
{
    int enc = df_delta_encoding_parse(d->encoding && *d->encoding ? d->encoding : "f32");
    if (enc != self->encoding)
        return df_error_set(err, DF_E_MISMATCH, "%s: member %u sent %s values, the group's are %s", self->job_id,
                            member, d->encoding, df_delta_encoding_name((df_delta_encoding)self->encoding));
    if (d->gradient != self->gradient)
        return df_error_set(err, DF_E_MISMATCH, "%s: member %u sent %s, the group exchanges %s", self->job_id, member,
                            d->gradient ? "gradients" : "factor changes",
                            self->gradient ? "gradients" : "factor changes");
    if (d->tensor_count != self->ntensors || d->n_tensors == 0 ||
        (uint64_t)d->first_tensor + d->n_tensors > self->ntensors)
        return df_error_set(err, DF_E_RANGE, "%s: member %u sent tensors %u..%u of %u, the group has %u", self->job_id,
                            member, d->first_tensor, d->first_tensor + (uint32_t)d->n_tensors, d->tensor_count,
                            self->ntensors);
    if (d->first_tensor == 0 && (d->n_losses == 0 || d->n_losses > MAX_LOCAL_STEPS ||
                                 (self->n_steps && d->n_losses != self->n_steps)))
        return df_error_set(err, DF_E_RANGE, "%s: member %u sent %zu step losses (from 1 to %d, the same for all)",
                            self->job_id, member, d->n_losses, MAX_LOCAL_STEPS);
    for (size_t k = 0; k < d->n_tensors; k++) {
        const Dreamfleet__DeltaTensor *t = d->tensors[k];
        const group_tensor *g = &self->tensors[d->first_tensor + k];
        if (t->rows == 0 || t->cols == 0 || (uint64_t)t->rows * t->cols > MAX_TENSOR_VALUES)
            return df_error_set(err, DF_E_RANGE, "%s: member %u's tensor %zu is %ux%u", self->job_id, member,
                                d->first_tensor + k, t->rows, t->cols);
        if (g->sum && (g->rows != t->rows || g->cols != t->cols))
            return df_error_set(err, DF_E_MISMATCH, "%s: member %u's tensor %zu is %ux%u, the group's %ux%u",
                                self->job_id, member, d->first_tensor + k, t->rows, t->cols, g->rows, g->cols);
        int scaled = self->encoding == DF_DELTA_INT8 || self->encoding == DF_DELTA_F16;
        if (scaled && t->n_row_scales != t->rows)
            return df_error_set(err, DF_E_FORMAT, "%s: member %u's tensor %zu has %zu row scales for %u rows",
                                self->job_id, member, d->first_tensor + k, t->n_row_scales, t->rows);
    }
    return DF_OK;
}

/*  Counts a checked part: decodes every new tensor first, so a part that
 *  does not decode counts for nothing. */
static int count_part(df_train_group_t *self, uint32_t member, const Dreamfleet__LoraDelta *d, df_error_t *err)
{
    uint8_t *got = self->got + (size_t)member * self->ntensors;
    const int fresh_losses = d->first_tensor == 0 && !got[0]; /* a repeated first part counts once */
    uint64_t total = 0;
    for (size_t k = 0; k < d->n_tensors; k++)
        if (!got[d->first_tensor + k])
            total += (uint64_t)d->tensors[k]->rows * d->tensors[k]->cols;
    float *vals = malloc((total ? total : 1) * sizeof *vals);
    if (!vals)
        return df_error_set(err, DF_E_NOMEM, "%s: out of memory", self->job_id);
    int rc = DF_OK;
    uint64_t at = 0;
    for (size_t k = 0; rc == DF_OK && k < d->n_tensors; k++) {
        const Dreamfleet__DeltaTensor *t = d->tensors[k];
        if (got[d->first_tensor + k])
            continue;
        rc = df_delta_decode((df_delta_encoding)self->encoding, t->data.data, t->data.len, t->row_scales, t->rows,
                             t->cols, vals + at, err);
        if (rc)
            df_error_prefix(err, "%s: member %u's tensor %zu", self->job_id, member, d->first_tensor + k);
        at += (uint64_t)t->rows * t->cols;
    }
    for (size_t k = 0; rc == DF_OK && k < d->n_tensors; k++) {
        const Dreamfleet__DeltaTensor *t = d->tensors[k];
        group_tensor *g = &self->tensors[d->first_tensor + k];
        uint64_t n = (uint64_t)t->rows * t->cols;
        if (!g->sum && !(g->sum = calloc(n, sizeof *g->sum)))
            rc = df_error_set(err, DF_E_NOMEM, "%s: out of memory", self->job_id);
        g->rows = t->rows, g->cols = t->cols;
    }
    at = 0;
    for (size_t k = 0; rc == DF_OK && k < d->n_tensors; k++) {
        const Dreamfleet__DeltaTensor *t = d->tensors[k];
        uint32_t idx = d->first_tensor + (uint32_t)k;
        if (got[idx])
            continue;
        group_tensor *g = &self->tensors[idx];
        uint64_t n = (uint64_t)t->rows * t->cols;
        const float w = (float)d->samples;
        for (uint64_t i = 0; i < n; i++)
            g->sum[i] += w * vals[at + i];
        g->weight += (double)d->samples;
        got[idx] = 1;
        self->got_count[member]++;
        self->bytes_in += t->data.len + 4 * t->n_row_scales;
        self->raw_bytes += 4 * n;
        at += n;
    }
    if (rc == DF_OK && fresh_losses) {
        self->n_steps = (uint32_t)d->n_losses;
        for (size_t i = 0; i < d->n_losses; i++)
            self->loss_sum[i] += (double)d->samples * d->losses[i];
        self->loss_weight += (double)d->samples;
    }
    free(vals);
    return rc;
}

/*  Forgets the contributions to the round in progress. */
static void clear_round(df_train_group_t *self)
{
    for (uint32_t i = 0; i < self->ntensors; i++) {
        group_tensor *g = &self->tensors[i];
        if (g->sum)
            memset(g->sum, 0, (size_t)g->rows * g->cols * sizeof *g->sum);
        g->weight = 0;
    }
    if (self->got)
        memset(self->got, 0, (size_t)self->members * self->ntensors);
    memset(self->got_count, 0, sizeof self->got_count);
    memset(self->loss_sum, 0, sizeof self->loss_sum);
    self->loss_weight = 0, self->n_steps = 0;
    self->bytes_in = self->raw_bytes = 0;
    self->round_started_ms = 0;
}

/*  The average, encoded once for everyone, in parts. */
static int complete_round(df_train_group_t *self, df_error_t *err)
{
    free_reply(self);
    int lossy = self->encoding != DF_DELTA_F32, rc = DF_OK;
    size_t part_cap = 16;
    self->parts = calloc(part_cap, sizeof *self->parts);
    self->part_tensors = calloc(self->ntensors, sizeof *self->part_tensors);
    if (!self->parts || !self->part_tensors)
        return df_error_set(err, DF_E_NOMEM, "%s: out of memory", self->job_id);
    size_t part_bytes = 0;
    for (uint32_t i = 0; rc == DF_OK && i < self->ntensors; i++) {
        group_tensor *g = &self->tensors[i];
        uint64_t n = (uint64_t)g->rows * g->cols;
        if (!g->sum) /* no live member sent it (all dropped mid-round): no change */
            n = 0;
        /* The average in a buffer of its own: a failure leaves the sums as
         * they were, for the next try to divide once. */
        float *avg = n ? malloc(n * sizeof *avg) : NULL;
        if (n && !avg)
            rc = df_error_set(err, DF_E_NOMEM, "%s: out of memory", self->job_id);
        for (uint64_t k = 0; avg && k < n; k++)
            avg[k] = g->weight > 0 ? (float)(g->sum[k] / g->weight) : 0.0f;
        if (rc == DF_OK && n && lossy && !g->residual && !(g->residual = calloc(n, sizeof *g->residual)))
            rc = df_error_set(err, DF_E_NOMEM, "%s: out of memory", self->job_id);
        Dreamfleet__DeltaTensor *o = &g->out;
        dreamfleet__delta_tensor__init(o);
        o->rows = g->rows, o->cols = g->cols;
        if (rc == DF_OK && n && (self->encoding == DF_DELTA_INT8 || self->encoding == DF_DELTA_F16)) {
            if (!(o->row_scales = malloc(g->rows * sizeof *o->row_scales)))
                rc = df_error_set(err, DF_E_NOMEM, "%s: out of memory", self->job_id);
            o->n_row_scales = g->rows;
        }
        size_t len = 0;
        if (rc == DF_OK && n)
            rc = df_delta_encode((df_delta_encoding)self->encoding, avg, g->rows, g->cols, g->residual,
                                 o->row_scales, &o->data.data, &len, err);
        free(avg);
        o->data.len = len;
        self->part_tensors[i] = o;
        /* A new part when this one is full. */
        if (rc == DF_OK && (self->nparts == 0 || part_bytes + len > PART_BYTES)) {
            if (self->nparts == part_cap) {
                Dreamfleet__LoraDelta *p = realloc(self->parts, 2 * part_cap * sizeof *p);
                if (!p) {
                    rc = df_error_set(err, DF_E_NOMEM, "%s: out of memory", self->job_id);
                    break;
                }
                self->parts = p, part_cap *= 2;
            }
            Dreamfleet__LoraDelta *p = &self->parts[self->nparts++];
            dreamfleet__lora_delta__init(p);
            p->first_tensor = i;
            p->tensors = &self->part_tensors[i];
            part_bytes = 0;
        }
        if (rc == DF_OK) {
            self->parts[self->nparts - 1].n_tensors++;
            part_bytes += len;
        }
    }
    if (rc)
        return rc;
    self->reply_round = self->round;
    self->reply_members = df_train_group_live_count(self);
    for (uint32_t m = 0, rank = 0; m < self->members; m++) {
        self->share_first[m] = self->share_count[m] = 0;
        if (self->live >> m & 1)
            df_train_share(rank++, self->reply_members, self->samples_per_step, &self->share_first[m],
                           &self->share_count[m]);
    }
    self->reply_samples = (uint64_t)self->loss_weight;
    self->reply_bytes_in = self->bytes_in, self->reply_raw = self->raw_bytes;
    self->reply_steps = self->n_steps;
    for (uint32_t i = 0; i < self->n_steps; i++)
        self->reply_losses[i] = self->loss_weight > 0 ? (float)(self->loss_sum[i] / self->loss_weight) : 0.0f;
    df_info("%s round %u: %u member%s, %llu samples, %.2f MB in (%.2fx smaller than f32), loss %.4f", self->job_id,
            self->round, self->reply_members, self->reply_members == 1 ? "" : "s",
            (unsigned long long)self->reply_samples, (double)self->bytes_in / 1e6,
            self->bytes_in ? (double)self->raw_bytes / (double)self->bytes_in : 0.0,
            self->n_steps ? self->reply_losses[self->n_steps - 1] : 0.0f);
    clear_round(self); /* the next round starts empty */
    self->completed++;
    self->round++;
    return DF_OK;
}

/*  Complete when every live member has sent everything (and someone has). */
static int round_ready(const df_train_group_t *self)
{
    if (!self->round_started_ms || !self->ntensors)
        return 0;
    for (uint32_t m = 0; m < self->members; m++)
        if ((self->live >> m & 1) && self->got_count[m] != self->ntensors)
            return 0;
    return 1;
}

int df_train_group_add(df_train_group_t *self, uint32_t member, const Dreamfleet__LoraDelta *d, uint64_t now_ms,
                       df_round_outcome *outcome, df_error_t *err)
{
    *outcome = DF_ROUND_STALE;
    if (!df_train_group_live(self, member))
        return DF_OK;
    if (d->round == 0)
        return df_error_set(err, DF_E_RANGE, "%s: member %u sent round 0 (rounds count from 1)", self->job_id, member);
    if (self->round == 0) /* a new group, or one the coordinator rebuilt after a restart */
        self->round = d->round;
    if (d->round + 1 == self->round && self->nparts) {
        *outcome = DF_ROUND_REPEAT;
        return DF_OK;
    }
    if (d->round < self->round) {
        /* Older than the last answered round, or one a rebuilt group never
         * answered: its average is gone, and the member with it. */
        if (d->round + 1 < self->round || !self->nparts)
            *outcome = DF_ROUND_LOST;
        return DF_OK;
    }
    if (d->round > self->round && self->completed == 0 && !self->nparts) {
        /* A group rebuilt after a restart met a member that is a round ahead
         * (it got the last average, others did not): the group goes with it,
         * and those behind are lost when they ask again. */
        df_info("%s: member %u is at round %u, the rebuilt group at %u: going on from %u", self->job_id, member,
                d->round, self->round, d->round);
        clear_round(self);
        self->round = d->round;
    }
    if (d->round > self->round)
        return df_error_set(err, DF_E_STATE, "%s: member %u sent round %u; the group is at round %u", self->job_id,
                            member, d->round, self->round);
    int rc = self->ntensors ? DF_OK : adopt_layout(self, d, err);
    if (rc == DF_OK)
        rc = check_part(self, member, d, err);
    if (rc == DF_OK)
        rc = count_part(self, member, d, err);
    if (rc)
        return rc;
    if (!self->round_started_ms)
        self->round_started_ms = now_ms ? now_ms : 1;
    *outcome = DF_ROUND_WAITING;
    if (round_ready(self)) {
        if ((rc = complete_round(self, err)) != DF_OK)
            return rc;
        *outcome = DF_ROUND_COMPLETE;
    }
    return DF_OK;
}

void df_train_group_drop(df_train_group_t *self, uint32_t member, int *complete)
{
    *complete = 0;
    if (!df_train_group_live(self, member))
        return;
    self->live &= ~(1ull << member);
    df_info("%s: member %u leaves the training group (%u left)", self->job_id, member,
            df_train_group_live_count(self));
    if (df_train_group_live_count(self) && round_ready(self)) {
        df_error_t err;
        df_error_clear(&err);
        if (complete_round(self, &err) == DF_OK)
            *complete = 1;
        else
            df_warn("%s: %s", self->job_id, err.msg);
    }
}

const Dreamfleet__LoraDelta *df_train_group_reply(df_train_group_t *self, uint32_t member, const char *task_id,
                                                  size_t part)
{
    if (part >= self->nparts)
        return NULL;
    Dreamfleet__LoraDelta *p = &self->parts[part];
    /* The split as the round ended: the same for every member asking, also
     * when one leaves between the first answer and a repeat. */
    p->share_first = member < self->members ? self->share_first[member] : 0;
    p->share_count = member < self->members ? self->share_count[member] : 0;
    snprintf(self->reply_task_id, sizeof self->reply_task_id, "%s", task_id ? task_id : "");
    p->task_id = self->reply_task_id;
    p->job_id = self->job_id;
    p->worker_id = "coordinator";
    p->round = self->reply_round;
    p->gradient = self->gradient;
    p->encoding = (char *)df_delta_encoding_name((df_delta_encoding)self->encoding);
    p->tensor_count = self->ntensors;
    p->samples = self->reply_samples;
    p->members = self->reply_members;
    p->bytes_in = self->reply_bytes_in;
    p->raw_bytes = self->reply_raw;
    p->keeper = self->live ? (uint32_t)__builtin_ctzll(self->live) : 0;
    if (part == 0) {
        p->n_losses = self->reply_steps;
        p->losses = self->reply_losses;
    }
    return p;
}
