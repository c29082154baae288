/*  shader_blobs.h - SPIR-V compiled from shaders/ at build time.
 *
 *  The build compiles every GLSL kernel variant with glslangValidator,
 *  validates it with spirv-val and embeds the words in the binary
 *  (shaders_embedded.c, generated), so nothing is looked up on disk at run
 *  time. Variants are named "<shader>_<variant>", e.g. "gemm_texel_c16".
 */
#ifndef DF_SHADER_BLOBS_H
#define DF_SHADER_BLOBS_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *name;
    const uint32_t *words;
    size_t bytes;
} df_shader_blob;

extern const df_shader_blob df_shader_blobs[];
extern const size_t df_shader_blob_count;

/*  The blob called name, or NULL. */
const df_shader_blob *df_shader_find(const char *name);

#endif
