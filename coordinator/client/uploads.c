/*  uploads.c - see uploads.h. */
#include "uploads.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "rpc.h"

/*  Larger files are not photos any decoder here takes (100 Mpixels at most). */
#define UPLOAD_MAX (512ull << 20)

/*  A file the client cannot send: unreadable, not a regular file, or too
 *  large. The worker is given its path and says what is wrong with it. */
static int unsendable(const char *path)
{
    struct stat st;
    FILE *f = fopen(path, "rb");
    const int bad = !f || stat(path, &st) != 0 || !S_ISREG(st.st_mode) || (unsigned long long)st.st_size > UPLOAD_MAX;
    if (f)
        fclose(f);
    return bad;
}

int df_cli_upload_files(df_cli *cli, char *const *files, size_t n, const char *what, char ***refs_out)
{
    char **refs = calloc(n + 1, sizeof *refs);
    if (!refs) {
        df_cli_error("out of memory");
        return DF_EXIT_FAILED;
    }
    size_t uploaded = 0;
    for (size_t i = 0; i < n; i++) {
        char hex[DF_SHA256_HEX];
        df_error_t err;
        df_error_clear(&err);
        char abs[PATH_MAX];
        if (unsendable(files[i])) {
            refs[i] = strdup(realpath(files[i], abs) ? abs : files[i]);
        } else if (df_rpc_upload(cli->rpc, files[i], hex, NULL, NULL, &err) == DF_OK) {
            refs[i] = strdup(hex);
            uploaded++;
        } else { /* the coordinator's trouble, not the photo's: nothing could go on */
            for (size_t k = 0; k < i; k++)
                free(refs[k]);
            free(refs);
            df_cli_error("uploading %s: %s", files[i], err.msg);
            return DF_EXIT_FAILED;
        }
        if (!refs[i]) {
            for (size_t k = 0; k < i; k++)
                free(refs[k]);
            free(refs);
            df_cli_error("out of memory");
            return DF_EXIT_FAILED;
        }
    }
    if (!cli->json && n)
        fprintf(stderr, "%zu of %zu %s in the coordinator's store\n", uploaded, n, what);
    *refs_out = refs;
    return DF_EXIT_OK;
}
