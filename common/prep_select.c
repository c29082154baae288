/*  prep_select.c - the set's part of prep (prep.h): which photos stay when
 *  all are examined. Plain arithmetic on the items, no images: the
 *  coordinator runs it over a prep job's photos. */
#include "prep.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int df_prep_thin_duplicates(df_prep_item *items, size_t count, int bits)
{
    size_t *order = malloc((count + 1) * sizeof *order), *kept = malloc((count + 1) * sizeof *kept);
    size_t n = 0, nk = 0;
    if (!order || !kept) {
        free(order), free(kept);
        return DF_E_NOMEM;
    }
    for (size_t i = 0; i < count; i++)
        if (!items[i].reason && items[i].scored)
            order[n++] = i;
    for (size_t i = 1; i < n; i++) /* insertion sort, stable: quality descending */
        for (size_t j = i; j > 0 && items[order[j]].scores.quality > items[order[j - 1]].scores.quality;
             j--) {
            size_t t = order[j];
            order[j] = order[j - 1], order[j - 1] = t;
        }
    int rc = DF_OK;
    for (size_t i = 0; rc == DF_OK && i < n; i++) {
        df_prep_item *a = &items[order[i]];
        for (size_t k = 0; k < nk; k++) {
            const df_prep_item *b = &items[kept[k]];
            const int d = df_phash_distance(a->phash, b->phash);
            if (d > bits)
                continue;
            const char *name = strrchr(b->source, '/');
            char why[1024];
            snprintf(why, sizeof why, "near-duplicate of %s (%d of 64 hash bits apart; that one scored %.2f, this %.2f)",
                     name ? name + 1 : b->source, d, b->scores.quality, a->scores.quality);
            a->reason = strdup(why);
            rc = a->reason ? DF_OK : DF_E_NOMEM;
            break;
        }
        if (!a->reason)
            kept[nk++] = order[i];
    }
    free(order), free(kept);
    return rc;
}

void df_prep_set_warning(size_t accepted, char *warning, size_t cap)
{
    if (accepted < 5)
        snprintf(warning, cap, "only %zu photo%s accepted: 5 to 15 of the subject train best", accepted,
                 accepted == 1 ? "" : "s");
    else if (accepted > 30)
        snprintf(warning, cap, "%zu photos accepted: more than 30 mostly lengthen training", accepted);
    else if (cap)
        warning[0] = '\0';
}

void df_prep_report_free(df_prep_report *rep)
{
    for (size_t i = 0; rep->items && i < rep->count; i++)
        free(rep->items[i].source), free(rep->items[i].file), free(rep->items[i].reason), free(rep->items[i].caption);
    free(rep->items);
    memset(rep, 0, sizeof *rep);
}

