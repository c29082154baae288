/*  test_task_prep.c - the worker's half of a prep job (worker/task_prep.c)
 *  in-process, on a context of its own: a photo named by its artifact hash
 *  is fetched and prepared, its training image and thumbnail uploaded, and
 *  the verdict names the photo as the client knows it; a broken photo is a
 *  verdict, not a failure; parameters that do not fit together, a message
 *  that is not PrepParams and a worker without an artifact store are
 *  refused by name; a photo that cannot be fetched is a failure another
 *  attempt may mend. No device is opened. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "artifact_store.h"
#include "dreamfleet.pb-c.h"
#include "image_decode.h"
#include "log.h"
#include "png_write.h"
#include "tasks.h"
#include "test.h"

static char g_dir[] = "/tmp/df_task_prep_XXXXXX";
static df_artifacts_t *g_store; /* the coordinator's store, as the fake context sees it */
static int g_uploads;

static int fake_fetch(df_task_ctx *ctx, const char *hash, char *path, size_t cap, df_error_t *err)
{
    (void)ctx;
    df_artifact_info info;
    if (df_artifacts_stat(g_store, hash, &info, err) != DF_OK || !info.complete)
        return df_error_set(err, DF_E_IO, "fetch %.12s: not in the store", hash);
    df_artifacts_path(g_store, hash, path, cap);
    return DF_OK;
}

static int fake_upload(df_task_ctx *ctx, const char *path, char hex[65], df_error_t *err)
{
    (void)ctx;
    g_uploads++;
    return df_artifacts_import(g_store, path, hex, err);
}

static int run(df_task_ctx *ctx, const Dreamfleet__PrepParams *p, Dreamfleet__PrepResult **out, int *retryable,
               df_error_t *err)
{
    size_t len = dreamfleet__prep_params__get_packed_size(p);
    uint8_t *buf = malloc(len ? len : 1), *res = NULL;
    dreamfleet__prep_params__pack(p, buf);
    size_t res_len = 0;
    const df_task_type *t = df_task_type_find("prep");
    int rc = t ? t->run(ctx, buf, len, &res, &res_len, retryable, err) : DF_E_NOT_FOUND;
    *out = rc == DF_OK ? dreamfleet__prep_result__unpack(NULL, res_len, res) : NULL;
    free(buf), free(res);
    return rc;
}

static void test_task_prep(void)
{
    df_error_t err;
    df_error_clear(&err);
    /* A textured photo and a broken one, both in the store by hash. */
    char path[300], good[65], broken[65];
    const uint32_t w = 320, h = 240;
    uint8_t *rgb = malloc(w * h * 3);
    for (uint32_t k = 0; k < w * h * 3; k++)
        rgb[k] = (uint8_t)((((k / 3) % w) * 37 + ((k / 3) / w / 3) * 91 + (k % 3) * 50) % 200 + 28);
    snprintf(path, sizeof path, "%s/photo.png", g_dir);
    CHECK_OK(df_png_write(path, rgb, w, h, NULL, 0, &err), &err);
    free(rgb);
    CHECK_OK(df_artifacts_import(g_store, path, good, &err), &err);
    snprintf(path, sizeof path, "%s/broken.png", g_dir);
    FILE *f = fopen(path, "w");
    if (f)
        fputs("not a png at all", f), fclose(f);
    CHECK_OK(df_artifacts_import(g_store, path, broken, &err), &err);

    df_task_ctx ctx = {.worker_name = "w-test", .task_id = "j-1.0", .attempt = 1, .fetch = fake_fetch,
                       .upload = fake_upload};
    char *images[2] = {good, broken}, *names[2] = {"photos/mine.png", "photos/broken.png"};
    char *sidecars[2] = {"a man in a suit", ""};
    Dreamfleet__PrepParams p = DREAMFLEET__PREP_PARAMS__INIT;
    p.n_images = p.n_names = p.n_sidecars = 2;
    p.images = images, p.names = names, p.sidecars = sidecars;
    p.resolution = 128, p.bucket_step = 32, p.min_quality = -1, p.dup_bits = -1;
    p.token = "TOK", p.class_word = "person";
    Dreamfleet__PrepResult *r = NULL;
    int retryable = 1;
    CHECK_OK(run(&ctx, &p, &r, &retryable, &err), &err);
    CHECK(r && r->n_items == 2 && strcmp(r->device, "cpu") == 0);
    if (r && r->n_items == 2) {
        const Dreamfleet__PrepItem *a = r->items[0], *b = r->items[1];
        fprintf(stderr, "  %s: %ux%u, '%s'; %s: %s\n", a->name, a->width, a->height, a->caption, b->name, b->reason);
        CHECK(strcmp(a->name, "photos/mine.png") == 0 && !a->reason[0] &&
              strcmp(a->caption, "TOK person in a suit") == 0 && strcmp(a->caption_from, "sidecar") == 0);
        CHECK(a->width > a->height && a->width % 32 == 0 && a->height % 32 == 0 && a->original_width == w &&
              a->original_height == h);
        CHECK(a->sdxl && a->sdxl->original_width == w && a->sdxl->original_height == h);
        CHECK(df_artifacts_valid_hash(a->image) && df_artifacts_valid_hash(a->thumbnail));
        /* The uploaded training image is the photo at its bucket's size. */
        df_image back = {0};
        if (df_artifacts_valid_hash(a->image)) {
            df_artifacts_path(g_store, a->image, path, sizeof path);
            CHECK_OK(df_image_load(path, &back, &err), &err);
            CHECK(back.width == a->width && back.height == a->height);
            df_image_free(&back);
        }
        /* The broken photo: a verdict naming it as the client does, not the worker's cache path. */
        CHECK(strstr(b->reason, "photos/broken.png: not a PNG") != NULL && !b->image[0]);
        CHECK(strstr(b->reason, g_dir) == NULL);
    }
    CHECK_EQ(g_uploads, 2); /* the good photo's image and thumbnail; nothing of a photo that does not decode */
    if (r)
        dreamfleet__prep_result__free_unpacked(r, NULL);

    /* Refusals, by name. */
    p.n_names = 1;
    CHECK_FAILS(run(&ctx, &p, &r, &retryable, &err), &err, DF_E_INVALID, "2 photos, 2 captions and 1 names");
    CHECK_EQ(retryable, 0);
    p.n_names = 2;
    p.framing = 1;
    CHECK_FAILS(run(&ctx, &p, &r, &retryable, &err), &err, DF_E_INVALID, "framing around a face goes with a person");
    p.framing = 0;
    ctx.upload = NULL;
    CHECK_FAILS(run(&ctx, &p, &r, &retryable, &err), &err, DF_E_INVALID, "this worker has none");
    ctx.upload = fake_upload;
    uint8_t junk[5] = {0xff, 0xff, 0xff, 0xff, 0xff};
    uint8_t *res = NULL;
    size_t res_len = 0;
    CHECK_FAILS(df_task_type_find("prep")->run(&ctx, junk, sizeof junk, &res, &res_len, &retryable, &err), &err,
                DF_E_FORMAT, "not a PrepParams message");
    /* Captions by a model need the worker's device, but only for a photo
     * that is accepted and has no caption file of its own. */
    p.captioner = "/models/blip";
    CHECK_OK(run(&ctx, &p, &r, &retryable, &err), &err);
    if (r)
        dreamfleet__prep_result__free_unpacked(r, NULL);
    sidecars[0] = "";
    CHECK_FAILS(run(&ctx, &p, &r, &retryable, &err), &err, DF_E_INVALID, "captions need a device");
    sidecars[0] = "a man in a suit";
    p.captioner = "";
    /* A photo the store does not hold: the fetch fails, and another attempt may pass. */
    char *missing[1] = {"00000000000000000000000000000000000000000000000000000000000000aa"};
    p.n_images = p.n_names = p.n_sidecars = 1;
    p.images = missing;
    CHECK_FAILS(run(&ctx, &p, &r, &retryable, &err), &err, DF_E_IO, "not in the store");
    CHECK_EQ(retryable, 1);
}

int main(int argc, char **argv)
{
    test_filter_ = argc > 1 ? argv[1] : NULL;
    df_log_set_level(DF_LOG_ERROR);
    if (!mkdtemp(g_dir))
        return 1;
    char store[300];
    snprintf(store, sizeof store, "%s/store", g_dir);
    df_error_t err;
    df_error_clear(&err);
    g_store = df_artifacts_new(store, 0, &err);
    if (!g_store) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    RUN(test_task_prep);
    df_artifacts_destroy(&g_store);
    char cmd[350];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0)
        return 1;
    return test_summary();
}
