/*  uploads.h - the client's files put in the coordinator's artifact store,
 *  so that workers anywhere read them by hash: no folder need be shared
 *  between the client's machine and the workers'. */
#ifndef DF_UPLOADS_H
#define DF_UPLOADS_H

#include <stddef.h>

#include "cli.h"

/*  Uploads each of files (what names them in the progress line, "photos"):
 *  refs[i] gets the file's artifact sha256, or, for a file the client cannot
 *  send (unreadable, not a regular file, over 512 MiB), its absolute path,
 *  so that the worker meets the file itself and reports what is wrong with
 *  it. The store keeps one copy of each content: a file it holds already
 *  costs one round trip. *refs is malloc'd (free each and the array);
 *  DF_EXIT_FAILED, naming the file, when an upload fails (the coordinator's
 *  trouble) or memory runs out. */
int df_cli_upload_files(df_cli *cli, char *const *files, size_t n, const char *what, char ***refs);

#endif
