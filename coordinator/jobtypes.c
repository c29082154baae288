/*  jobtypes.c - see jobtypes.h. */
#include "jobtypes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dreamfleet.pb-c.h"
#include "scheduler.h"
#include "delta_codec.h"
#include "artifact_store.h"
#include "image_encode.h"
#include "prep.h"
#include "sha256.h"

static uint32_t shards_or(uint32_t shards, uint32_t dflt) { return shards ? shards : dflt; }

/* Every task gets the job's parameters unchanged. */
static int same_params(const df_job *job, uint32_t i, uint8_t **params, size_t *len, df_error_t *err)
{
    (void)i;
    if (df_set_bytes(params, len, job->params, job->params_len))
        return df_error_set(err, DF_E_NOMEM, "%s: out of memory", job->id);
    return DF_OK;
}

static int set_summary(df_job *job, df_error_t *err, const char *text)
{
    if (df_set_str(&job->summary, text))
        return df_error_set(err, DF_E_NOMEM, "%s: out of memory", job->id);
    return DF_OK;
}

/* ---- noop ---- */

static int noop_plan(const uint8_t *params, size_t len, uint32_t shards, uint32_t *ntasks, df_error_t *err)
{
    Dreamfleet__NoopParams *p = dreamfleet__noop_params__unpack(NULL, len, params);
    if (!p)
        return df_error_set(err, DF_E_FORMAT, "noop: parameters are not a NoopParams message");
    int rc = p->duration_ms > 3600000
                 ? df_error_set(err, DF_E_RANGE, "noop: duration_ms %u is over an hour", p->duration_ms)
                 : DF_OK;
    dreamfleet__noop_params__free_unpacked(p, NULL);
    *ntasks = shards_or(shards, 1);
    return rc;
}

static int noop_finish(df_job *job, df_error_t *err)
{
    char line[128];
    snprintf(line, sizeof line, "%u no-op task%s done", job->ntasks, job->ntasks == 1 ? "" : "s");
    return set_summary(job, err, line);
}

/* ---- bench ---- */

static int bench_plan(const uint8_t *params, size_t len, uint32_t shards, uint32_t *ntasks, df_error_t *err)
{
    Dreamfleet__BenchParams *p = dreamfleet__bench_params__unpack(NULL, len, params);
    if (!p)
        return df_error_set(err, DF_E_FORMAT, "bench: parameters are not a BenchParams message");
    int rc = DF_OK;
    if (p->m > 16384 || p->n > 16384 || p->k > 16384)
        rc = df_error_set(err, DF_E_RANGE, "bench: %ux%ux%u is larger than 16384 in some dimension", p->m, p->n, p->k);
    else if (p->reps > 100)
        rc = df_error_set(err, DF_E_RANGE, "bench: %u repetitions is more than 100", p->reps);
    dreamfleet__bench_params__free_unpacked(p, NULL);
    *ntasks = shards_or(shards, 1);
    return rc;
}

static int bench_finish(df_job *job, df_error_t *err)
{
    Dreamfleet__BenchResult **shards = calloc(job->ntasks, sizeof *shards);
    if (!shards)
        return df_error_set(err, DF_E_NOMEM, "bench: out of memory");
    Dreamfleet__BenchSummary sum = DREAMFLEET__BENCH_SUMMARY__INIT;
    int rc = DF_OK;
    uint32_t wrong = 0, workers = 0;
    for (uint32_t i = 0; i < job->ntasks && !rc; i++) {
        const df_task *t = &job->tasks[i];
        shards[i] = dreamfleet__bench_result__unpack(NULL, t->output_len, t->output);
        if (!shards[i]) {
            rc = df_error_set(err, DF_E_FORMAT, "bench: %s returned something that is not a BenchResult", t->id);
            break;
        }
        sum.total_gflops_f32 += shards[i]->gflops_f32;
        wrong += !shards[i]->correct;
        int seen = 0;
        for (uint32_t j = 0; j < i && !seen; j++)
            seen = strcmp(job->tasks[j].worker_name, t->worker_name) == 0;
        workers += !seen;
    }
    if (!rc) {
        sum.n_shards = job->ntasks;
        sum.shards = shards;
        size_t n = dreamfleet__bench_summary__get_packed_size(&sum);
        uint8_t *buf = malloc(n ? n : 1);
        if (!buf) {
            rc = df_error_set(err, DF_E_NOMEM, "bench: out of memory");
        } else {
            dreamfleet__bench_summary__pack(&sum, buf);
            free(job->result);
            job->result = buf;
            job->result_len = n;
            char line[160];
            snprintf(line, sizeof line, "%u shard%s on %u worker%s: %.1f GFLOPS f32 in total%s", job->ntasks,
                     job->ntasks == 1 ? "" : "s", workers, workers == 1 ? "" : "s", sum.total_gflops_f32,
                     wrong ? ", SOME RESULTS WRONG" : ", all results correct");
            rc = set_summary(job, err, line);
        }
    }
    for (uint32_t i = 0; i < job->ntasks; i++)
        if (shards[i])
            dreamfleet__bench_result__free_unpacked(shards[i], NULL);
    free(shards);
    return rc;
}

/* A, B and C in f32 (the f16 pass needs half that), plus room for the
 * runtime's blocks and staging. */
static uint64_t bench_device_bytes(const uint8_t *params, size_t len)
{
    Dreamfleet__BenchParams *p = dreamfleet__bench_params__unpack(NULL, len, params);
    if (!p)
        return 0;
    uint64_t m = p->m ? p->m : 1024, n = p->n ? p->n : m, k = p->k ? p->k : m;
    dreamfleet__bench_params__free_unpacked(p, NULL);
    return 4 * (m * k + k * n + m * n) + (64u << 20);
}

/* ---- generate ---- */

/*  Checks what the coordinator can without the model (the worker checks the
 *  size against the model it loads); one task per image unless the client
 *  asks for fewer tasks. */
static int generate_plan(const uint8_t *params, size_t len, uint32_t shards, uint32_t *ntasks, df_error_t *err)
{
    Dreamfleet__GenerateParams *p = dreamfleet__generate_params__unpack(NULL, len, params);
    if (!p)
        return df_error_set(err, DF_E_FORMAT, "generate: parameters are not a GenerateParams message");
    int rc = DF_OK;
    if (!p->model || !*p->model)
        rc = df_error_set(err, DF_E_INVALID, "generate: no model");
    else if (p->width < 64 || p->height < 64 || p->width > 4096 || p->height > 4096 || p->width % 8 || p->height % 8)
        rc = df_error_set(err, DF_E_INVALID, "generate: size %ux%u: multiples of 8 from 64 to 4096", p->width,
                          p->height);
    else if (p->steps < 1 || p->steps > 500)
        rc = df_error_set(err, DF_E_INVALID, "generate: steps %u: from 1 to 500", p->steps);
    else if (df_sampler_parse(p->sampler) < 0)
        rc = df_error_set(err, DF_E_INVALID, "generate: unknown sampler '%s' (euler, euler_karras, euler_a, dpmpp_2m, "
                          "dpmpp_2m_karras, ddim)", p->sampler ? p->sampler : "");
    else if (p->count < 1 || p->count > 10000)
        rc = df_error_set(err, DF_E_INVALID, "generate: %u images: from 1 to 10000", p->count);
    else if (!(p->guidance >= 0 && p->guidance <= 50))
        rc = df_error_set(err, DF_E_INVALID, "generate: guidance %g: from 0 to 50", p->guidance);
    else if (p->init_noise &&
             (p->init_noise->dtype != DREAMFLEET__DTYPE__F32 || p->init_noise->n_shape != 4 ||
              p->init_noise->shape[0] != p->count || p->init_noise->shape[1] != 4 ||
              p->init_noise->shape[2] != p->height / 8 || p->init_noise->shape[3] != p->width / 8 ||
              p->init_noise->data.len != 4ull * p->count * 4 * (p->height / 8) * (p->width / 8)))
        rc = df_error_set(err, DF_E_INVALID, "generate: init_noise must be f32 [%u, 4, %u, %u]", p->count,
                          p->height / 8, p->width / 8);
    df_image_format format;
    if (rc == DF_OK && df_image_format_parse(p->format, &format, err) != DF_OK)
        rc = df_error_prefix(err, "generate");
    else if (rc == DF_OK && p->quality > 100)
        rc = df_error_set(err, DF_E_INVALID, "generate: quality %u: from 1 to 100", p->quality);
    uint32_t count = p->count;
    dreamfleet__generate_params__free_unpacked(p, NULL);
    *ntasks = shards && shards < count ? shards : count;
    return rc;
}

/*  Task i: its share of the images, as first and count. */
static int generate_task_params(const df_job *job, uint32_t i, uint8_t **params, size_t *len, df_error_t *err)
{
    Dreamfleet__GenerateParams *p = dreamfleet__generate_params__unpack(NULL, job->params_len, job->params);
    if (!p)
        return df_error_set(err, DF_E_FORMAT, "%s: parameters are not a GenerateParams message", job->id);
    uint32_t total = p->count, per = (total + job->ntasks - 1) / job->ntasks;
    p->first = i * per;
    p->count = p->first >= total ? 0 : (total - p->first < per ? total - p->first : per);
    /* Only this task's images' share of the initial noise travels with it
     * (the message's own pointers are put back before it is freed). */
    uint8_t *noise_data = NULL;
    size_t noise_len = 0;
    uint64_t noise_n = 0;
    if (p->init_noise && p->init_noise->n_shape == 4) {
        noise_data = p->init_noise->data.data, noise_len = p->init_noise->data.len, noise_n = p->init_noise->shape[0];
        uint64_t image = noise_len / total;
        p->init_noise->data.data += (uint64_t)p->first * image;
        p->init_noise->data.len = (uint64_t)p->count * image;
        p->init_noise->shape[0] = p->count;
    }
    *len = dreamfleet__generate_params__get_packed_size(p);
    *params = malloc(*len ? *len : 1);
    int rc = *params ? DF_OK : df_error_set(err, DF_E_NOMEM, "%s: out of memory", job->id);
    if (rc == DF_OK)
        dreamfleet__generate_params__pack(p, *params);
    if (noise_data) {
        p->init_noise->data.data = noise_data, p->init_noise->data.len = noise_len;
        p->init_noise->shape[0] = noise_n;
    }
    dreamfleet__generate_params__free_unpacked(p, NULL);
    return rc;
}

/*  key gets the SHA-256 of prefix followed by m packed (protobuf-c packs a
 *  message the same way every time): a result-cache key. 0 when out of
 *  memory. */
static int message_key(const char *prefix, const ProtobufCMessage *m, char key[65])
{
    const size_t pl = strlen(prefix), len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(pl + len + 1);
    if (!buf)
        return 0;
    memcpy(buf, prefix, pl);
    protobuf_c_message_pack(m, buf + pl);
    uint8_t d[DF_SHA256_BYTES];
    df_sha256(buf, pl + len, d);
    df_sha256_hex(d, key);
    free(buf);
    return 1;
}

/*  A generation's output depends on its model and LoRAs (by identity),
 *  prompts, every parameter, seeds and initial noise: all in the task's
 *  parameters, which protobuf-c packs the same way every time. */
static int generate_cache_key(const df_job *job, uint32_t i, char key[65], int *lookup)
{
    const df_task *t = &job->tasks[i];
    Dreamfleet__GenerateParams *p = dreamfleet__generate_params__unpack(NULL, t->params_len, t->params);
    if (!p)
        return 0;
    int ok = p->model_identity && p->model_identity[0];
    for (size_t k = 0; ok && k < p->n_loras; k++)
        ok = p->loras[k]->identity && p->loras[k]->identity[0];
    *lookup = !p->no_cache;
    p->no_cache = 0;
    ok = ok && message_key("generate 1\n", &p->base, key);
    dreamfleet__generate_params__free_unpacked(p, NULL);
    return ok;
}

static int generate_finish(df_job *job, df_error_t *err)
{
    uint32_t images = 0, cached = 0;
    for (uint32_t i = 0; i < job->ntasks; i++) {
        const df_task *t = &job->tasks[i];
        Dreamfleet__GenerateResult *r = dreamfleet__generate_result__unpack(NULL, t->output_len, t->output);
        if (!r)
            return df_error_set(err, DF_E_FORMAT, "generate: %s returned something that is not a GenerateResult", t->id);
        images += (uint32_t)r->n_images;
        if (strcmp(t->worker_id, DF_CACHE_WORKER) == 0)
            cached += (uint32_t)r->n_images;
        dreamfleet__generate_result__free_unpacked(r, NULL);
    }
    char line[128];
    snprintf(line, sizeof line, "%u image%s", images, images == 1 ? "" : "s");
    if (cached)
        snprintf(line + strlen(line), sizeof line - strlen(line), " (%u from the cache)", cached);
    return set_summary(job, err, line);
}

/* ---- encode ---- */

/*  One task per photo: photos spread over the workers, and each one's
 *  cache is a result of its own (the same photo in a later job with other
 *  companions is still found in the result cache). */
static int encode_plan(const uint8_t *params, size_t len, uint32_t shards, uint32_t *ntasks, df_error_t *err)
{
    (void)shards;
    Dreamfleet__EncodeParams *p = dreamfleet__encode_params__unpack(NULL, len, params);
    if (!p)
        return df_error_set(err, DF_E_FORMAT, "encode: parameters are not an EncodeParams message");
    int rc = DF_OK;
    if (!p->model || !*p->model)
        rc = df_error_set(err, DF_E_INVALID, "encode: no model");
    else if (p->n_images == 0 || p->n_images > 20000 || p->n_captions != p->n_images)
        rc = df_error_set(err, DF_E_INVALID, "encode: %zu photos with %zu captions (1 to 20000, one caption each)",
                          p->n_images, p->n_captions);
    else if (p->n_image_identities && p->n_image_identities != p->n_images)
        rc = df_error_set(err, DF_E_INVALID, "encode: %zu photo identities for %zu photos", p->n_image_identities,
                          p->n_images);
    else if (p->resolution < 64 || p->resolution > 2048 || p->resolution % 8)
        rc = df_error_set(err, DF_E_INVALID, "encode: resolution %u: multiples of 8 from 64 to 2048", p->resolution);
    else if (p->n_geometry && p->n_geometry != p->n_images)
        rc = df_error_set(err, DF_E_INVALID, "encode: %zu photo geometries for %zu photos", p->n_geometry,
                          p->n_images);
    else if (p->n_names && p->n_names != p->n_images)
        rc = df_error_set(err, DF_E_INVALID, "encode: %zu names for %zu photos", p->n_names, p->n_images);
    *ntasks = p->n_images ? (uint32_t)p->n_images : 1;
    dreamfleet__encode_params__free_unpacked(p, NULL);
    return rc;
}

/*  Task i: photo i alone. */
static int encode_task_params(const df_job *job, uint32_t i, uint8_t **params, size_t *len, df_error_t *err)
{
    Dreamfleet__EncodeParams *p = dreamfleet__encode_params__unpack(NULL, job->params_len, job->params);
    if (!p)
        return df_error_set(err, DF_E_FORMAT, "encode: parameters are not an EncodeParams message");
    Dreamfleet__EncodeParams one = *p;
    one.n_images = one.n_captions = 1;
    one.images = p->images + i, one.captions = p->captions + i;
    one.n_image_identities = p->n_image_identities ? 1 : 0;
    one.image_identities = p->n_image_identities ? p->image_identities + i : NULL;
    one.n_geometry = p->n_geometry ? 1 : 0;
    one.geometry = p->n_geometry ? p->geometry + i : NULL;
    one.n_names = p->n_names ? 1 : 0;
    one.names = p->n_names ? p->names + i : NULL;
    one.first = i;
    *len = dreamfleet__encode_params__get_packed_size(&one);
    *params = malloc(*len ? *len : 1);
    if (*params)
        dreamfleet__encode_params__pack(&one, *params);
    dreamfleet__encode_params__free_unpacked(p, NULL);
    return *params ? DF_OK : df_error_set(err, DF_E_NOMEM, "%s: out of memory", job->id);
}

/*  A photo's cache depends on the model and the photo (by identity), the
 *  caption and how it is encoded: all in the task's parameters but its
 *  index and path, which name the same photo in any job. */
static int encode_cache_key(const df_job *job, uint32_t i, char key[65], int *lookup)
{
    const df_task *t = &job->tasks[i];
    Dreamfleet__EncodeParams *p = dreamfleet__encode_params__unpack(NULL, t->params_len, t->params);
    if (!p)
        return 0;
    int ok = p->model_identity && p->model_identity[0] && p->n_image_identities == p->n_images;
    for (size_t k = 0; ok && k < p->n_image_identities; k++)
        ok = p->image_identities[k] && p->image_identities[k][0];
    *lookup = !p->no_cache;
    p->no_cache = 0, p->first = 0;
    size_t nimages = p->n_images, nnames = p->n_names;
    p->n_images = p->n_names = 0; /* named by identity, not path or name */
    ok = ok && message_key("encode 1\n", &p->base, key);
    p->n_images = nimages, p->n_names = nnames;
    dreamfleet__encode_params__free_unpacked(p, NULL);
    return ok;
}

/*  The job's result: every task's caches in the photos' order. */
static int encode_finish(df_job *job, df_error_t *err)
{
    Dreamfleet__EncodeResult **parts = calloc(job->ntasks, sizeof *parts);
    char **all = calloc(job->ntasks + 1ull, sizeof *all);
    Dreamfleet__EncodeResult sum = DREAMFLEET__ENCODE_RESULT__INIT;
    int rc = parts && all ? DF_OK : df_error_set(err, DF_E_NOMEM, "encode: out of memory");
    uint32_t cached = 0;
    double seconds = 0;
    for (uint32_t i = 0; rc == DF_OK && i < job->ntasks; i++) {
        const df_task *t = &job->tasks[i];
        parts[i] = dreamfleet__encode_result__unpack(NULL, t->output_len, t->output);
        if (!parts[i] || parts[i]->n_samples != 1 || !df_artifacts_valid_hash(parts[i]->samples[0]))
            rc = df_error_set(err, DF_E_FORMAT, "encode: %s returned something that is not an EncodeResult of one "
                              "sample cache", t->id);
        else
            all[sum.n_samples++] = parts[i]->samples[0];
        cached += strcmp(t->worker_id, DF_CACHE_WORKER) == 0;
        seconds += parts[i] ? parts[i]->seconds : 0;
    }
    sum.samples = all;
    sum.seconds = seconds;
    size_t n = rc == DF_OK ? dreamfleet__encode_result__get_packed_size(&sum) : 0;
    uint8_t *buf = rc == DF_OK ? malloc(n ? n : 1) : NULL;
    if (rc == DF_OK && !buf)
        rc = df_error_set(err, DF_E_NOMEM, "encode: out of memory");
    if (rc == DF_OK) {
        dreamfleet__encode_result__pack(&sum, buf);
        free(job->result);
        job->result = buf;
        job->result_len = n;
        char line[160];
        int k = snprintf(line, sizeof line, "%u photo%s encoded", job->ntasks, job->ntasks == 1 ? "" : "s");
        if (cached && k > 0 && (size_t)k < sizeof line)
            snprintf(line + k, sizeof line - (size_t)k, " (%u from the cache)", cached);
        rc = set_summary(job, err, line);
    }
    for (uint32_t i = 0; parts && i < job->ntasks; i++)
        if (parts[i])
            dreamfleet__encode_result__free_unpacked(parts[i], NULL);
    free(parts), free(all);
    return rc;
}

/* ---- prep ---- */

/*  One task per photo, as for encode: each photo's verdict is a result of
 *  its own, found again in the result cache by a later job. */
static int prep_plan(const uint8_t *params, size_t len, uint32_t shards, uint32_t *ntasks, df_error_t *err)
{
    (void)shards;
    Dreamfleet__PrepParams *p = dreamfleet__prep_params__unpack(NULL, len, params);
    if (!p)
        return df_error_set(err, DF_E_FORMAT, "prep: parameters are not a PrepParams message");
    const df_prep_opts o = {.resolution = p->resolution, .bucket_step = p->bucket_step,
                            .max_upscale = p->max_upscale, .min_quality = p->min_quality,
                            .person = p->person, .framing = (df_framing)p->framing,
                            .min_face_clarity = p->min_face_clarity, .min_face_size = p->min_face_size};
    int rc = df_prep_check_opts(&o, err);
    if (rc == DF_OK && (p->n_images == 0 || p->n_images > 20000))
        rc = df_error_set(err, DF_E_INVALID, "prep: %zu photos (1 to 20000)", p->n_images);
    else if (rc == DF_OK && p->n_sidecars && p->n_sidecars != p->n_images)
        rc = df_error_set(err, DF_E_INVALID, "prep: %zu captions for %zu photos", p->n_sidecars, p->n_images);
    else if (rc == DF_OK && p->n_image_identities && p->n_image_identities != p->n_images)
        rc = df_error_set(err, DF_E_INVALID, "prep: %zu photo identities for %zu photos", p->n_image_identities,
                          p->n_images);
    else if (rc == DF_OK && p->n_names && p->n_names != p->n_images)
        rc = df_error_set(err, DF_E_INVALID, "prep: %zu names for %zu photos", p->n_names, p->n_images);
    *ntasks = p->n_images ? (uint32_t)p->n_images : 1;
    dreamfleet__prep_params__free_unpacked(p, NULL);
    return rc;
}

/*  Task i: photo i alone. */
static int prep_task_params(const df_job *job, uint32_t i, uint8_t **params, size_t *len, df_error_t *err)
{
    Dreamfleet__PrepParams *p = dreamfleet__prep_params__unpack(NULL, job->params_len, job->params);
    if (!p)
        return df_error_set(err, DF_E_FORMAT, "prep: parameters are not a PrepParams message");
    Dreamfleet__PrepParams one = *p;
    one.n_images = 1, one.images = p->images + i;
    one.n_sidecars = p->n_sidecars ? 1 : 0, one.sidecars = p->n_sidecars ? p->sidecars + i : NULL;
    one.n_image_identities = p->n_image_identities ? 1 : 0;
    one.image_identities = p->n_image_identities ? p->image_identities + i : NULL;
    one.n_names = p->n_names ? 1 : 0;
    one.names = p->n_names ? p->names + i : NULL;
    one.first = i;
    *len = dreamfleet__prep_params__get_packed_size(&one);
    *params = malloc(*len ? *len : 1);
    if (*params)
        dreamfleet__prep_params__pack(&one, *params);
    dreamfleet__prep_params__free_unpacked(p, NULL);
    return *params ? DF_OK : df_error_set(err, DF_E_NOMEM, "%s: out of memory", job->id);
}

/*  A photo's verdict depends on its content (by identity), its caption
 *  file, the captioning model (by identity) and the options, and its
 *  reasons quote its name (so the same photo under another path is
 *  prepared again): everything in the task's parameters but its index, the
 *  model's path and the near-duplicate distance, which only the choice
 *  over the set (prep_finish) uses. */
static int prep_cache_key(const df_job *job, uint32_t i, char key[65], int *lookup)
{
    const df_task *t = &job->tasks[i];
    Dreamfleet__PrepParams *p = dreamfleet__prep_params__unpack(NULL, t->params_len, t->params);
    if (!p)
        return 0;
    int ok = p->n_image_identities == p->n_images;
    for (size_t k = 0; ok && k < p->n_image_identities; k++)
        ok = p->image_identities[k] && p->image_identities[k][0];
    /* A captioning model is known by its identity, not its path. */
    ok = ok && (!p->captioner[0] || p->captioner_identity[0]);
    *lookup = !p->no_cache;
    p->no_cache = 0, p->first = 0, p->dup_bits = 0;
    char *captioner = p->captioner;
    p->captioner = (char *)protobuf_c_empty_string;
    ok = ok && message_key("prep 1\n", &p->base, key);
    p->captioner = captioner;
    dreamfleet__prep_params__free_unpacked(p, NULL);
    return ok;
}

/*  The set: every task's photo in order, then the near-duplicates thinned
 *  over all of them (prep_select.c), as one machine would. */
static int prep_finish(df_job *job, df_error_t *err)
{
    Dreamfleet__PrepParams *p = dreamfleet__prep_params__unpack(NULL, job->params_len, job->params);
    if (!p)
        return df_error_set(err, DF_E_FORMAT, "prep: parameters are not a PrepParams message");
    const int bits = p->dup_bits < 0 ? -1 : p->dup_bits ? p->dup_bits : 6;
    dreamfleet__prep_params__free_unpacked(p, NULL);
    Dreamfleet__PrepResult **parts = calloc(job->ntasks, sizeof *parts);
    Dreamfleet__PrepItem **all = calloc(job->ntasks + 1ull, sizeof *all);
    df_prep_item *items = calloc(job->ntasks + 1ull, sizeof *items);
    char **reasons = calloc(job->ntasks + 1ull, sizeof *reasons);
    /* What a near-duplicate's message held before (the unpacker frees those, not ours). */
    char **was_reason = calloc(job->ntasks + 1ull, sizeof *was_reason), **was_image = calloc(job->ntasks + 1ull,
                                                                                              sizeof *was_image);
    Dreamfleet__PrepResult sum = DREAMFLEET__PREP_RESULT__INIT;
    int rc = parts && all && items && reasons && was_reason && was_image ? DF_OK : df_error_set(err, DF_E_NOMEM, "prep: out of memory");
    uint32_t cached = 0;
    for (uint32_t i = 0; rc == DF_OK && i < job->ntasks; i++) {
        const df_task *t = &job->tasks[i];
        parts[i] = dreamfleet__prep_result__unpack(NULL, t->output_len, t->output);
        if (!parts[i] || parts[i]->n_items != 1) {
            rc = df_error_set(err, DF_E_FORMAT, "prep: %s returned something that is not a PrepResult of one photo",
                              t->id);
            break;
        }
        Dreamfleet__PrepItem *m = parts[i]->items[0];
        if (!m->reason[0] && !df_artifacts_valid_hash(m->image)) {
            rc = df_error_set(err, DF_E_FORMAT, "prep: %s accepted %s without a training image", t->id, m->name);
            break;
        }
        all[sum.n_items++] = m;
        items[i].source = m->name; /* borrowed for the choice's messages */
        items[i].reason = m->reason[0] ? m->reason : NULL;
        items[i].scored = m->scored, items[i].scores.quality = m->quality, items[i].phash = m->phash;
        cached += strcmp(t->worker_id, DF_CACHE_WORKER) == 0;
        sum.seconds += parts[i]->seconds;
    }
    if (rc == DF_OK && bits >= 0 && df_prep_thin_duplicates(items, job->ntasks, bits) != DF_OK)
        rc = df_error_set(err, DF_E_NOMEM, "prep: out of memory");
    char warning[256] = "";
    for (uint32_t i = 0; items && i < sum.n_items; i++) { /* even after a failure: what the choice made is ours */
        if (items[i].reason && items[i].reason != all[i]->reason) { /* newly a near-duplicate */
            reasons[i] = items[i].reason;
            was_reason[i] = all[i]->reason, was_image[i] = all[i]->image;
            all[i]->reason = reasons[i];
            all[i]->image = (char *)protobuf_c_empty_string; /* the set does not use it */
        }
        sum.accepted += !items[i].reason;
    }
    if (rc == DF_OK) {
        df_prep_set_warning(sum.accepted, warning, sizeof warning);
        sum.warning = warning;
        sum.items = all;
        size_t n = dreamfleet__prep_result__get_packed_size(&sum);
        uint8_t *buf = malloc(n ? n : 1);
        if (!buf)
            rc = df_error_set(err, DF_E_NOMEM, "prep: out of memory");
        if (rc == DF_OK) {
            dreamfleet__prep_result__pack(&sum, buf);
            free(job->result);
            job->result = buf;
            job->result_len = n;
            char line[160];
            int k = snprintf(line, sizeof line, "%u of %u photo%s accepted", sum.accepted, job->ntasks,
                             job->ntasks == 1 ? "" : "s");
            if (cached && k > 0 && (size_t)k < sizeof line)
                snprintf(line + k, sizeof line - (size_t)k, " (%u from the cache)", cached);
            rc = set_summary(job, err, line);
        }
    }
    for (uint32_t i = 0; parts && i < job->ntasks; i++) {
        if (reasons && reasons[i]) {
            free(reasons[i]);
            all[i]->reason = was_reason[i], all[i]->image = was_image[i];
        }
        if (parts[i])
            dreamfleet__prep_result__free_unpacked(parts[i], NULL);
    }
    free(parts), free(all), free(items), free(reasons), free(was_reason), free(was_image);
    return rc;
}

/* ---- train ---- */

/*  One task per member of the training group (train_group.h): one alone,
 *  or `members` splitting every step's samples. */
static int train_plan(const uint8_t *params, size_t len, uint32_t shards, uint32_t *ntasks, df_error_t *err)
{
    (void)shards;
    Dreamfleet__TrainParams *p = dreamfleet__train_params__unpack(NULL, len, params);
    if (!p)
        return df_error_set(err, DF_E_FORMAT, "train: parameters are not a TrainParams message");
    int rc = DF_OK;
    if (!p->model || !*p->model)
        rc = df_error_set(err, DF_E_INVALID, "train: no model");
    else if (p->n_images == 0 || p->n_images > 10000 || p->n_captions != p->n_images)
        rc = df_error_set(err, DF_E_INVALID, "train: %zu photos with %zu captions (1 to 10000, one caption each)",
                          p->n_images, p->n_captions);
    else if (p->steps < 1 || p->steps > 1000000)
        rc = df_error_set(err, DF_E_INVALID, "train: steps %u: from 1 to 1000000", p->steps);
    else if (p->rank > 1024 || p->batch > 64 || p->accumulate > 1024)
        rc = df_error_set(err, DF_E_INVALID, "train: rank %u (at most 1024), batch %u (at most 64) or %u micro-batches "
                          "(at most 1024)", p->rank, p->batch, p->accumulate);
    else if (!(p->lr > 0 && p->lr < 1))
        rc = df_error_set(err, DF_E_INVALID, "train: learning rate %g: above 0 and below 1", p->lr);
    else if (p->resolution < 64 || p->resolution > 2048 || p->resolution % 8)
        rc = df_error_set(err, DF_E_INVALID, "train: resolution %u: multiples of 8 from 64 to 2048", p->resolution);
    else if (p->n_class_images > 10000 || p->n_class_captions != p->n_class_images)
        rc = df_error_set(err, DF_E_INVALID, "train: %zu class images with %zu captions (at most 10000, one caption "
                          "each)", p->n_class_images, p->n_class_captions);
    else if (!(p->prior_weight >= 0 && p->prior_weight <= 100))
        rc = df_error_set(err, DF_E_INVALID, "train: prior weight %g: from 0 to 100", p->prior_weight);
    else if (p->n_validation_prompts > 16)
        rc = df_error_set(err, DF_E_INVALID, "train: %zu validation prompts: at most 16", p->n_validation_prompts);
    else if (p->n_validation_prompts &&
             ((p->validate_every ? p->steps / p->validate_every : 0) + 1) * p->n_validation_prompts > 1024)
        rc = df_error_set(err, DF_E_INVALID, "train: %u steps with validation every %u steps and %zu prompts make "
                          "more than 1024 validation images; validate less often", p->steps, p->validate_every,
                          p->n_validation_prompts);
    else if (p->n_validation_prompts && (p->validation_width % 8 || p->validation_height % 8 ||
                                         p->validation_width > 4096 || p->validation_height > 4096 ||
                                         p->validation_steps > 500))
        rc = df_error_set(err, DF_E_INVALID, "train: validation size %ux%u (multiples of 8 up to 4096) or %u steps "
                          "(at most 500)", p->validation_width, p->validation_height, p->validation_steps);
    else if (p->members > 64)
        rc = df_error_set(err, DF_E_INVALID, "train: %u workers: at most 64", p->members);
    else if (p->local_steps > 64)
        rc = df_error_set(err, DF_E_INVALID, "train: %u local steps per round: at most 64", p->local_steps);
    else if (p->delta_encoding && *p->delta_encoding && df_delta_encoding_parse(p->delta_encoding) < 0)
        rc = df_error_set(err, DF_E_INVALID, "train: delta encoding '%s': f32, f16, bf16 or int8", p->delta_encoding);
    else if (p->optimizer && *p->optimizer && strcmp(p->optimizer, "adamw") && strcmp(p->optimizer, "adamw8bit"))
        rc = df_error_set(err, DF_E_INVALID, "train: optimizer '%s': adamw or adamw8bit", p->optimizer);
    else if ((p->n_samples && p->n_samples != p->n_images) || (p->n_class_samples != (p->n_samples ? p->n_class_images : 0)))
        rc = df_error_set(err, DF_E_INVALID, "train: %zu sample caches for %zu photos and %zu for %zu class images (one "
                          "each, or none)", p->n_samples, p->n_images, p->n_class_samples, p->n_class_images);
    for (size_t k = 0; rc == DF_OK && k < p->n_samples + p->n_class_samples; k++) {
        const char *h = k < p->n_samples ? p->samples[k] : p->class_samples[k - p->n_samples];
        if (!df_artifacts_valid_hash(h))
            rc = df_error_set(err, DF_E_INVALID, "train: sample cache '%.80s' is not an artifact's sha256", h);
    }
    *ntasks = p->members > 1 ? p->members : 1;
    dreamfleet__train_params__free_unpacked(p, NULL);
    return rc;
}

/*  Member i of the group learns its place. */
static int train_task_params(const df_job *job, uint32_t i, uint8_t **params, size_t *len, df_error_t *err)
{
    Dreamfleet__TrainParams *p = dreamfleet__train_params__unpack(NULL, job->params_len, job->params);
    if (!p)
        return df_error_set(err, DF_E_FORMAT, "%s: parameters are not a TrainParams message", job->id);
    p->member = i;
    p->members = job->ntasks;
    *len = dreamfleet__train_params__get_packed_size(p);
    *params = malloc(*len ? *len : 1);
    int rc = *params ? DF_OK : df_error_set(err, DF_E_NOMEM, "%s: out of memory", job->id);
    if (rc == DF_OK)
        dreamfleet__train_params__pack(p, *params);
    dreamfleet__train_params__free_unpacked(p, NULL);
    return rc;
}

/*  Every member that finished holds the same LoRA; one of them (the
 *  group's keeper) returns the files, and speaks for the job. */
static int train_finish(df_job *job, df_error_t *err)
{
    Dreamfleet__TrainResult *r = NULL;
    for (uint32_t i = 0; i < job->ntasks && !r; i++) {
        const df_task *t = &job->tasks[i];
        if (t->state != DREAMFLEET__TASK_STATE__TASK_SUCCEEDED)
            continue;
        r = dreamfleet__train_result__unpack(NULL, t->output_len, t->output);
        if (!r || r->n_losses == 0) {
            if (r)
                dreamfleet__train_result__free_unpacked(r, NULL);
            return df_error_set(err, DF_E_FORMAT, "train: %s returned something that is not a TrainResult", t->id);
        }
        if (r->lora_kohya.len == 0 && !(r->lora_kohya_sha256 && *r->lora_kohya_sha256)) {
            dreamfleet__train_result__free_unpacked(r, NULL);
            r = NULL;
        }
    }
    if (!r)
        return df_error_set(err, DF_E_STATE, "train: no member returned the LoRA (the one keeping it was lost at the "
                            "end)");
    char line[256];
    int n = snprintf(line, sizeof line, "%zu steps in %.0f s, loss %.4f at the first, %.4f at the last", r->n_losses,
                     r->seconds, r->losses[0], r->losses[r->n_losses - 1]);
    if (r->rounds && n > 0 && (size_t)n < sizeof line)
        snprintf(line + n, sizeof line - (size_t)n, "; %u worker%s at the end, %u rounds, %.2f MB to the "
                 "coordinator a round (%.2fx smaller than f32)", r->members, r->members == 1 ? "" : "s", r->rounds,
                 (double)r->bytes_exchanged / r->rounds / 1e6,
                 r->bytes_exchanged ? (double)r->raw_bytes / (double)r->bytes_exchanged : 0.0);
    dreamfleet__train_result__free_unpacked(r, NULL);
    return set_summary(job, err, line);
}

static const df_jobtype k_types[] = {
    {"generate", generate_plan, generate_task_params, generate_finish, NULL, generate_cache_key},
    {"bench", bench_plan, same_params, bench_finish, bench_device_bytes, NULL},
    {"noop", noop_plan, same_params, noop_finish, NULL, NULL},
    {"train", train_plan, train_task_params, train_finish, NULL, NULL},
    {"encode", encode_plan, encode_task_params, encode_finish, NULL, encode_cache_key},
    {"prep", prep_plan, prep_task_params, prep_finish, NULL, prep_cache_key},
};

const df_jobtype *df_jobtype_find(const char *name)
{
    for (size_t i = 0; i < sizeof k_types / sizeof k_types[0]; i++)
        if (name && strcmp(name, k_types[i].name) == 0)
            return &k_types[i];
    return NULL;
}

const char *df_jobtype_names(void) { return "bench, encode, generate, noop, prep, train"; }
