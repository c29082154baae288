/*  tensor_ref.h - where an operand lives on the device: a buffer and a byte
 *  offset into it. Ops take these rather than raw VkBuffers so one device
 *  allocation can hold many tensors. */
#ifndef DF_TENSOR_REF_H
#define DF_TENSOR_REF_H

#include <stdint.h>

#include "dtype.h"
#include "vk_memory.h"

typedef struct {
    const df_vk_buffer_t *buf;
    uint64_t offset; /* bytes from the start of buf; a multiple of the element size */
} df_tensor_ref;

static inline df_tensor_ref df_ref(const df_vk_buffer_t *buf, uint64_t offset)
{
    df_tensor_ref r = {buf, offset};
    return r;
}

/*  A tensor for the op layer: where it is and its element type. Shapes are
 *  each op's business (its descriptor says what they are). */
typedef struct {
    df_tensor_ref ref;
    df_dtype dtype;
} df_tensor;

static inline df_tensor df_tensor_at(const df_vk_buffer_t *buf, uint64_t offset, df_dtype dtype)
{
    df_tensor t = {{buf, offset}, dtype};
    return t;
}

#endif
