/*  uploads.c - see uploads.h. */
#include "uploads.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc.h"

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
        if (df_rpc_upload(cli->rpc, files[i], hex, NULL, NULL, &err) == DF_OK) {
            refs[i] = strdup(hex);
            uploaded++;
        } else {
            refs[i] = strdup(files[i]); /* the worker will say what is wrong with it */
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
