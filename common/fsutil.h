/*  fsutil.h - small file-system helpers shared by the daemons and the CLI. */
#ifndef DF_FSUTIL_H
#define DF_FSUTIL_H

#include <stddef.h>

#include "error.h"

/*  mkdir -p: creates path and any missing parents (mode 0755). DF_E_IO
 *  names the path and the reason. */
int df_mkdirs(const char *path, df_error_t *err);

/*  Removes path and, for a folder, everything in it (links not followed):
 *  0 when it is gone (or never was), -1 with errno otherwise. */
int df_remove_tree(const char *path);

/*  Whether name ends in ext (".png"), ignoring case. */

int df_has_ext(const char *name, const char *ext);

/*  Sorts n strings by strcmp (a folder's files in name order). */
void df_sort_names(char **names, size_t n);

typedef enum { DF_XDG_DATA, DF_XDG_CACHE } df_xdg_kind;

/*  The per-user directory for dreamfleet's data or cache, with sub appended
 *  (may be NULL): $XDG_DATA_HOME/dreamfleet or ~/.local/share/dreamfleet,
 *  $XDG_CACHE_HOME/dreamfleet or ~/.cache/dreamfleet; /tmp/dreamfleet-UID
 *  when there is no home. Not created. */
void df_xdg_dir(df_xdg_kind kind, const char *sub, char *buf, size_t cap);

#endif
