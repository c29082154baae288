/*  dtype.c - see dtype.h. */
#include "dtype.h"

#include <strings.h>

static const struct {
    const char *name;
    size_t size;
} s_dtypes[DF_DTYPE_COUNT] = {
    [DF_F32] = {"f32", 4}, [DF_F16] = {"f16", 2}, [DF_BF16] = {"bf16", 2},
    [DF_I32] = {"i32", 4}, [DF_U8] = {"u8", 1},
    [DF_I64] = {"i64", 8}, [DF_BOOL] = {"bool", 1}, [DF_I8] = {"i8", 1},
};

size_t df_dtype_size(df_dtype t)
{
    return (unsigned)t < DF_DTYPE_COUNT ? s_dtypes[t].size : 0;
}

const char *df_dtype_name(df_dtype t)
{
    return (unsigned)t < DF_DTYPE_COUNT ? s_dtypes[t].name : "?";
}

int df_dtype_parse(const char *name)
{
    if (!name)
        return -1;
    for (int i = 0; i < DF_DTYPE_COUNT; i++)
        if (strcasecmp(name, s_dtypes[i].name) == 0)
            return i;
    return -1;
}
