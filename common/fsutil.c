/*  fsutil.c - see fsutil.h. */
#define _XOPEN_SOURCE 700 /* nftw */
#include "fsutil.h"

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

int df_mkdirs(const char *path, df_error_t *err)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp)
        return df_error_set(err, DF_E_RANGE, "%.64s...: path too long", path);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
                return df_error_set(err, DF_E_IO, "%s: %s", tmp, strerror(errno));
            *p = '/';
        }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
        return df_error_set(err, DF_E_IO, "%s: %s", path, strerror(errno));
    struct stat st;
    if (stat(tmp, &st) != 0 || !S_ISDIR(st.st_mode))
        return df_error_set(err, DF_E_IO, "%s: not a directory", path);
    return DF_OK;
}

void df_xdg_dir(df_xdg_kind kind, const char *sub, char *buf, size_t cap)
{
    const char *xdg = getenv(kind == DF_XDG_DATA ? "XDG_DATA_HOME" : "XDG_CACHE_HOME");
    const char *home = getenv("HOME");
    const char *tail = sub ? sub : "";
    const char *sep = sub ? "/" : "";
    if (xdg && *xdg)
        snprintf(buf, cap, "%s/dreamfleet%s%s", xdg, sep, tail);
    else if (home && *home)
        snprintf(buf, cap, "%s/%s/dreamfleet%s%s", home, kind == DF_XDG_DATA ? ".local/share" : ".cache", sep, tail);
    else
        snprintf(buf, cap, "/tmp/dreamfleet-%d/%s%s%s", (int)getuid(), kind == DF_XDG_DATA ? "data" : "cache", sep,
                 tail);
}

int df_has_ext(const char *name, const char *ext)
{
    size_t n = strlen(name), e = strlen(ext);
    return n > e && strcasecmp(name + n - e, ext) == 0;
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

void df_sort_names(char **names, size_t n)
{
    if (n > 1)
        qsort(names, n, sizeof *names, by_name);
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

int df_remove_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? 0 : -1;
    return nftw(path, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}
