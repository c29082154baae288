/*  blip_config.h - a BLIP captioning model (transformers'
 *  BlipForConditionalGeneration: a ViT image encoder and a BERT text
 *  decoder that attends to the image) as its config.json describes it, and
 *  the tensors its model.safetensors holds, by name and shape.
 *
 *  config.json as transformers writes it: "vision_config" and "text_config",
 *  each key that is absent taking the library's default (which are the base
 *  model's: a 12-layer ViT-B/16 at 384 px and a 12-layer BERT-base decoder).
 *  Of the generation settings only max_length is used: captions are greedy,
 *  and a config asking for beams or sampling is warned about.
 */
#ifndef DF_BLIP_CONFIG_H
#define DF_BLIP_CONFIG_H

#include "error.h"
#include "sdxl_arch.h"

typedef struct {
    struct {
        int hidden, intermediate, layers, heads, image_size, patch_size;
        double eps;
    } vision;
    struct {
        int vocab, hidden, encoder_hidden, intermediate, layers, heads, max_positions;
        double eps;
        int bos, sep, pad;   /* [DEC] begins a caption; [SEP] ends it */
    } text;
    int max_length;          /* a caption's tokens at most, [DEC] and [SEP] included (generation's default) */
} df_blip_config;

/*  Reads path (a model folder's config.json), checking every value the
 *  engine relies on: DF_E_NOT_FOUND, DF_E_FORMAT or DF_E_UNSUPPORTED naming
 *  the key. */
int df_blip_config_load(const char *path, df_blip_config *c, df_error_t *err);

/*  The model's tensors as transformers names them (the LM head's bias once,
 *  as cls.predictions.bias). */
int df_arch_blip(const df_blip_config *c, df_arch_list *list, df_error_t *err);

#endif
