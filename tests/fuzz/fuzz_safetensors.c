/*  fuzz_safetensors.c - libFuzzer target: any byte string as a safetensors
 *  file. The reader must never crash, hang or read outside the buffer; a file
 *  it accepts has every tensor inside the data section, and converting any
 *  float tensor touches only those bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A copy of exactly `size` bytes, so ASan sees any read past the end. */
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    df_safetensors_t *st = df_safetensors_from_memory(copy, size, "fuzz", NULL);
    for (size_t i = 0; st && i < df_safetensors_count(st); i++) {
        const df_st_tensor *t = df_safetensors_at(st, i);
        if ((const uint8_t *)t->data < copy || (const uint8_t *)t->data + t->nbytes > copy + size)
            abort();
        if (t->nelem <= (1u << 20) && (t->dtype == DF_F32 || t->dtype == DF_F16 || t->dtype == DF_BF16)) {
            float *f = malloc((t->nelem ? t->nelem : 1) * sizeof *f);
            if (f)
                df_st_tensor_to_f32(t, f, NULL);
            free(f);
        }
        if (df_safetensors_find(st, t->name) == NULL)
            abort(); /* every listed tensor is found by its name */
    }
    df_safetensors_destroy(&st);
    free(copy);
    return 0;
}
