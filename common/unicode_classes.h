/*  unicode_classes.h - generated Unicode tables (see unicode_classes.c);
 *  use them through unicode.h. */
#ifndef DF_UNICODE_CLASSES_H
#define DF_UNICODE_CLASSES_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t first, last; /* inclusive */
} df_unicode_range;

typedef struct {
    uint32_t from, to;
} df_unicode_pair;

extern const df_unicode_range df_unicode_letters[];
extern const size_t df_unicode_letters_count;
extern const df_unicode_range df_unicode_numbers[];
extern const size_t df_unicode_numbers_count;
extern const df_unicode_range df_unicode_spaces[];
extern const size_t df_unicode_spaces_count;
extern const df_unicode_range df_unicode_punctuation[];
extern const size_t df_unicode_punctuation_count;
extern const df_unicode_range df_unicode_controls[];
extern const size_t df_unicode_controls_count;
extern const df_unicode_range df_unicode_nonspacing_marks[];
extern const size_t df_unicode_nonspacing_marks_count;
extern const df_unicode_pair df_unicode_accent_bases[]; /* sorted by from */
extern const size_t df_unicode_accent_bases_count;
extern const df_unicode_pair df_unicode_lower_table[]; /* sorted by from */
extern const size_t df_unicode_lower_table_count;

#endif
