/*  dtype.h - element types of tensors, shared by host and device code. */
#ifndef DF_DTYPE_H
#define DF_DTYPE_H

#include <stddef.h>

typedef enum {
    DF_F32 = 0,
    DF_F16 = 1,
    DF_BF16 = 2,
    DF_I32 = 3,
    DF_U8 = 4,
    DF_I64 = 5,  /* only in files (e.g. CLIP's position_ids); no op computes with it */
    DF_BOOL = 6, /* ditto */
    DF_I8 = 7,   /* 8-bit weights (quant8.h): stored, never computed with */
    DF_DTYPE_COUNT
} df_dtype;

/*  Bytes per element; 0 for an unknown value. */
size_t df_dtype_size(df_dtype t);

/*  "f32", "f16", ...; "?" for an unknown value. */
const char *df_dtype_name(df_dtype t);

/*  Parses the names above, case-insensitively (so safetensors' "F32", "F16",
 *  "BF16", "I32", "I64", "U8", "BOOL" too); returns -1 when unknown. */
int df_dtype_parse(const char *name);

#endif
