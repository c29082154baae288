/*  test_train_group.c - the coordinator's training rounds: averages weighted
 *  by samples, parts counted once, members leaving mid-round, shares of the
 *  next round, and every malformed contribution refused without counting.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "delta_codec.h"
#include "test.h"
#include "train_group.h"

/*  A contribution of member values: ntensors tensors of 2x3, value
 *  base + tensor + k / 8, encoded in enc; first..end in this part. */
typedef struct {
    Dreamfleet__LoraDelta d;
    Dreamfleet__DeltaTensor t[4], *tp[4];
    float scales[4][2];
    float losses[1];
} part;

static void make_part(part *p, const char *task, uint32_t round, uint64_t samples, float base, uint32_t first,
                      uint32_t end, uint32_t ntensors, df_delta_encoding enc)
{
    memset(p, 0, sizeof *p);
    dreamfleet__lora_delta__init(&p->d);
    p->d.job_id = "j-1", p->d.task_id = (char *)task, p->d.round = round, p->d.samples = samples;
    p->d.encoding = (char *)df_delta_encoding_name(enc), p->d.gradient = 1;
    p->d.tensor_count = ntensors, p->d.first_tensor = first, p->d.n_tensors = end - first;
    p->d.tensors = p->tp;
    p->losses[0] = base;
    if (first == 0)
        p->d.n_losses = 1, p->d.losses = p->losses;
    for (uint32_t i = first; i < end; i++) {
        Dreamfleet__DeltaTensor *t = &p->t[i - first];
        dreamfleet__delta_tensor__init(t);
        p->tp[i - first] = t;
        float v[6];
        for (int k = 0; k < 6; k++)
            v[k] = base + (float)i + (float)k / 8.0f;
        t->rows = 2, t->cols = 3;
        if (enc == DF_DELTA_INT8 || enc == DF_DELTA_F16)
            t->n_row_scales = 2, t->row_scales = p->scales[i - first];
        size_t len = 0;
        df_delta_encode(enc, v, 2, 3, NULL, t->row_scales, &t->data.data, &len, NULL);
        t->data.len = len;
    }
}

static void free_part(part *p)
{
    for (size_t i = 0; i < p->d.n_tensors; i++)
        free(p->t[i].data.data);
}

/*  Decodes tensor i of the reply to member m. */
static int reply_tensor(df_train_group_t *g, uint32_t m, uint32_t i, float out[6], uint32_t *first, uint32_t *count)
{
    for (size_t k = 0; k < df_train_group_reply_parts(g); k++) {
        const Dreamfleet__LoraDelta *d = df_train_group_reply(g, m, "t", k);
        *first = d->share_first, *count = d->share_count;
        if (i >= d->first_tensor && i < d->first_tensor + d->n_tensors) {
            const Dreamfleet__DeltaTensor *t = d->tensors[i - d->first_tensor];
            return df_delta_decode((df_delta_encoding)df_delta_encoding_parse(d->encoding), t->data.data, t->data.len,
                                   t->row_scales, t->rows, t->cols, out, NULL);
        }
    }
    return DF_E_NOT_FOUND;
}

static void test_average_weighted_by_samples(void)
{
    df_error_t err;
    df_train_group_t *g = df_train_group_new("j-1", 2, 4, &err);
    CHECK(g != NULL);
    part a, b1, b2;
    make_part(&a, "j-1.0", 1, 1, 1.0f, 0, 2, 2, DF_DELTA_F32);  /* member 0: one sample, both tensors */
    make_part(&b1, "j-1.1", 1, 3, 5.0f, 0, 1, 2, DF_DELTA_F32); /* member 1: three samples, in two parts */
    make_part(&b2, "j-1.1", 1, 3, 5.0f, 1, 2, 2, DF_DELTA_F32);
    df_round_outcome o;
    CHECK_OK(df_train_group_add(g, 0, &a.d, 10, &o, &err), &err);
    CHECK_EQ(o, DF_ROUND_WAITING);
    CHECK_EQ(df_train_group_round_started(g), 10);
    CHECK_OK(df_train_group_add(g, 0, &a.d, 11, &o, &err), &err); /* a repeat counts once */
    CHECK_EQ(o, DF_ROUND_WAITING);
    CHECK_OK(df_train_group_add(g, 1, &b1.d, 12, &o, &err), &err);
    CHECK_EQ(o, DF_ROUND_WAITING);
    CHECK(df_train_group_contributed(g, 0) && !df_train_group_contributed(g, 1));
    CHECK_OK(df_train_group_add(g, 1, &b2.d, 13, &o, &err), &err);
    CHECK_EQ(o, DF_ROUND_COMPLETE);
    CHECK_EQ(df_train_group_rounds(g), 1);
    /* (1 x (1 + i + k/8) + 3 x (5 + i + k/8)) / 4 = 4 + i + k/8, exactly. */
    float v[6];
    uint32_t first, count;
    int exact = 1;
    for (uint32_t i = 0; i < 2; i++) {
        CHECK_OK(reply_tensor(g, 1, i, v, &first, &count), NULL);
        for (int k = 0; k < 6; k++)
            exact &= v[k] == 4.0f + (float)i + (float)k / 8.0f;
    }
    CHECK(exact);
    CHECK_EQ(first, 2); /* member 1 of 2, 4 samples a step */
    CHECK_EQ(count, 2);
    const Dreamfleet__LoraDelta *r0 = df_train_group_reply(g, 0, "j-1.0", 0);
    CHECK(r0 && r0->n_losses == 1 && r0->losses[0] == 4.0f && r0->members == 2 && r0->round == 1);
    CHECK(r0 && r0->raw_bytes == 4 * 4 * 6 && r0->bytes_in > 0);
    /* Asking again for round 1 gets its average again; older rounds are stale. */
    CHECK_OK(df_train_group_add(g, 0, &a.d, 20, &o, &err), &err);
    CHECK_EQ(o, DF_ROUND_REPEAT);
    /* A member leaving after the round ended changes nothing of its answer:
     * a repeat carries the split every member got. */
    int complete = 1;
    df_train_group_drop(g, 1, &complete);
    CHECK_EQ(complete, 0);
    CHECK_OK(reply_tensor(g, 0, 0, v, &first, &count), NULL);
    CHECK_EQ(first, 0);
    CHECK_EQ(count, 2);
    free_part(&a), free_part(&b1), free_part(&b2);
    make_part(&a, "j-1.0", 3, 1, 1.0f, 0, 2, 2, DF_DELTA_F32);
    CHECK_FAILS(df_train_group_add(g, 0, &a.d, 21, &o, &err), &err, DF_E_STATE, "sent round 3; the group is at round 2");
    free_part(&a);
    df_train_group_destroy(&g);
    CHECK(g == NULL);
}

static void test_member_leaves_mid_round(void)
{
    df_error_t err;
    df_train_group_t *g = df_train_group_new("j-2", 3, 6, &err);
    part a, c;
    make_part(&a, "j-2.0", 1, 2, 1.0f, 0, 1, 1, DF_DELTA_F32);
    make_part(&c, "j-2.2", 1, 2, 3.0f, 0, 1, 1, DF_DELTA_F32);
    df_round_outcome o;
    int complete = 0;
    CHECK_OK(df_train_group_add(g, 0, &a.d, 1, &o, &err), &err);
    CHECK_OK(df_train_group_add(g, 2, &c.d, 2, &o, &err), &err);
    CHECK_EQ(o, DF_ROUND_WAITING); /* member 1 has sent nothing */
    df_train_group_drop(g, 1, &complete);
    CHECK_EQ(complete, 1);
    CHECK_EQ(df_train_group_live_count(g), 2);
    CHECK(!df_train_group_live(g, 1));
    float v[6];
    uint32_t first, count;
    CHECK_OK(reply_tensor(g, 2, 0, v, &first, &count), NULL);
    CHECK(v[0] == 2.0f && v[5] == 2.0f + 5.0f / 8.0f);
    /* The two left take member 1's samples: 3 each of 6. */
    CHECK_EQ(first, 3);
    CHECK_EQ(count, 3);
    CHECK_OK(reply_tensor(g, 0, 0, v, &first, &count), NULL);
    CHECK_EQ(first, 0);
    CHECK_EQ(count, 3);
    /* What a dropped member sends later counts for nothing. */
    part b;
    make_part(&b, "j-2.1", 2, 2, 9.0f, 0, 1, 1, DF_DELTA_F32);
    CHECK_OK(df_train_group_add(g, 1, &b.d, 3, &o, &err), &err);
    CHECK_EQ(o, DF_ROUND_STALE);
    /* Dropping the same member twice, or one that sent everything, completes nothing new. */
    df_train_group_drop(g, 1, &complete);
    CHECK_EQ(complete, 0);
    free_part(&a), free_part(&b), free_part(&c);
    df_train_group_destroy(&g);
}

static void test_lossy_encodings_round_trip(void)
{
    const df_delta_encoding encs[3] = {DF_DELTA_F16, DF_DELTA_BF16, DF_DELTA_INT8};
    for (int e = 0; e < 3; e++) {
        df_error_t err;
        df_train_group_t *g = df_train_group_new("j-3", 2, 2, &err);
        part a, b;
        make_part(&a, "j-3.0", 1, 1, 1.0f, 0, 1, 1, encs[e]);
        make_part(&b, "j-3.1", 1, 1, 3.0f, 0, 1, 1, encs[e]);
        df_round_outcome o;
        CHECK_OK(df_train_group_add(g, 0, &a.d, 1, &o, &err), &err);
        CHECK_OK(df_train_group_add(g, 1, &b.d, 1, &o, &err), &err);
        CHECK_EQ(o, DF_ROUND_COMPLETE);
        float v[6];
        uint32_t first, count;
        CHECK_OK(reply_tensor(g, 0, 0, v, &first, &count), NULL);
        float worst = 0;
        for (int k = 0; k < 6; k++)
            worst = fmaxf(worst, fabsf(v[k] - (2.0f + (float)k / 8.0f)));
        CHECK(worst < 0.03f); /* int8 of values up to 2.6: steps of 0.02 */
        free_part(&a), free_part(&b);
        df_train_group_destroy(&g);
    }
}

/*  Each malformed part is refused by name, and counts for nothing: the
 *  group then completes on good parts as if it had never come. */
static void test_malformed_parts_refused(void)
{
    df_error_t err;
    df_train_group_t *g = df_train_group_new("j-4", 2, 2, &err);
    part good0, good1, bad;
    make_part(&good0, "j-4.0", 1, 1, 1.0f, 0, 1, 1, DF_DELTA_F32);
    make_part(&good1, "j-4.1", 1, 1, 3.0f, 0, 1, 1, DF_DELTA_F32);
    df_round_outcome o;
    CHECK_OK(df_train_group_add(g, 0, &good0.d, 1, &o, &err), &err);

    make_part(&bad, "j-4.1", 1, 1, 3.0f, 0, 1, 1, DF_DELTA_BF16);
    CHECK_FAILS(df_train_group_add(g, 1, &bad.d, 1, &o, &err), &err, DF_E_MISMATCH, "sent bf16 values, the group's are f32");
    free_part(&bad);
    make_part(&bad, "j-4.1", 1, 1, 3.0f, 0, 1, 1, DF_DELTA_F32);
    bad.t[0].rows = 3, bad.t[0].cols = 2;
    CHECK_FAILS(df_train_group_add(g, 1, &bad.d, 1, &o, &err), &err, DF_E_MISMATCH, "tensor 0 is 3x2, the group's 2x3");
    bad.t[0].rows = 2, bad.t[0].cols = 3;
    bad.d.tensor_count = 5;
    CHECK_FAILS(df_train_group_add(g, 1, &bad.d, 1, &o, &err), &err, DF_E_RANGE, "the group has 1");
    bad.d.tensor_count = 1;
    bad.d.gradient = 0;
    CHECK_FAILS(df_train_group_add(g, 1, &bad.d, 1, &o, &err), &err, DF_E_MISMATCH, "the group exchanges gradients");
    bad.d.gradient = 1;
    bad.d.n_losses = 0;
    CHECK_FAILS(df_train_group_add(g, 1, &bad.d, 1, &o, &err), &err, DF_E_RANGE, "step losses");
    bad.d.n_losses = 1;
    bad.t[0].data.len = 7; /* a cut frame */
    CHECK_FAILS(df_train_group_add(g, 1, &bad.d, 1, &o, &err), &err, DF_E_FORMAT, "member 1's tensor 0");
    bad.d.round = 0;
    CHECK_FAILS(df_train_group_add(g, 1, &bad.d, 1, &o, &err), &err, DF_E_RANGE, "round 0");
    free_part(&bad);
    CHECK(!df_train_group_contributed(g, 1));
    CHECK_OK(df_train_group_add(g, 1, &good1.d, 2, &o, &err), &err);
    CHECK_EQ(o, DF_ROUND_COMPLETE);
    float v[6];
    uint32_t first, count;
    CHECK_OK(reply_tensor(g, 0, 0, v, &first, &count), NULL);
    CHECK(v[0] == 2.0f);
    free_part(&good0), free_part(&good1);
    df_train_group_destroy(&g);
    CHECK(df_train_group_new("j-5", 0, 1, &err) == NULL && strstr(err.msg, "0 training members"));
    CHECK(df_train_group_new("j-5", 65, 1, &err) == NULL && strstr(err.msg, "from 1 to 64"));
}

/*  A coordinator that restarted meets its members at the round they are in. */
static void test_rebuilt_group_joins_the_members_round(void)
{
    df_error_t err;
    df_train_group_t *g = df_train_group_new("j-6", 2, 2, &err);
    part a, b;
    make_part(&a, "j-6.0", 7, 1, 1.0f, 0, 1, 1, DF_DELTA_F32);
    make_part(&b, "j-6.1", 7, 1, 3.0f, 0, 1, 1, DF_DELTA_F32);
    df_round_outcome o;
    CHECK_OK(df_train_group_add(g, 0, &a.d, 1, &o, &err), &err);
    CHECK_OK(df_train_group_add(g, 1, &b.d, 1, &o, &err), &err);
    CHECK_EQ(o, DF_ROUND_COMPLETE);
    CHECK(df_train_group_reply(g, 0, "j-6.0", 0)->round == 7);
    free_part(&a), free_part(&b);
    df_train_group_destroy(&g);
    /* One member got round 7's average before the restart, the other did
     * not: the rebuilt group goes on with the one ahead, and the one behind
     * is lost (the scheduler drops it) rather than waiting for ever. */
    g = df_train_group_new("j-7", 3, 3, &err);
    make_part(&b, "j-7.1", 7, 1, 3.0f, 0, 1, 1, DF_DELTA_F32);
    make_part(&a, "j-7.0", 8, 1, 1.0f, 0, 1, 1, DF_DELTA_F32);
    CHECK_OK(df_train_group_add(g, 1, &b.d, 1, &o, &err), &err);
    CHECK_EQ(o, DF_ROUND_WAITING);
    CHECK_OK(df_train_group_add(g, 0, &a.d, 2, &o, &err), &err);
    CHECK_EQ(o, DF_ROUND_WAITING);
    CHECK_OK(df_train_group_add(g, 1, &b.d, 3, &o, &err), &err);
    CHECK_EQ(o, DF_ROUND_LOST);
    int complete = 0;
    df_train_group_drop(g, 1, &complete);
    CHECK_EQ(complete, 0); /* member 2 has not sent round 8 yet */
    part c;
    make_part(&c, "j-7.2", 8, 1, 5.0f, 0, 1, 1, DF_DELTA_F32);
    CHECK_OK(df_train_group_add(g, 2, &c.d, 4, &o, &err), &err);
    CHECK_EQ(o, DF_ROUND_COMPLETE);
    float v[6];
    uint32_t first, count;
    CHECK_OK(reply_tensor(g, 0, 0, v, &first, &count), NULL);
    CHECK(v[0] == 3.0f && df_train_group_reply(g, 0, "j-7.0", 0)->round == 8); /* members 0 and 2 only */
    free_part(&a), free_part(&b), free_part(&c);
    df_train_group_destroy(&g);
}

int main(int argc, char **argv)
{
    test_filter_ = argc > 1 ? argv[1] : NULL;
    RUN(test_average_weighted_by_samples);
    RUN(test_member_leaves_mid_round);
    RUN(test_lossy_encodings_round_trip);
    RUN(test_malformed_parts_refused);
    RUN(test_rebuilt_group_joins_the_members_round);
    return test_summary();
}
