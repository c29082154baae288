/*  component.h - `dreamfleet-worker component`: runs one SDXL component on
 *  tensors from a safetensors file and writes its outputs to another, named
 *  as diffusers names them, for diagnosis and parity checks against other
 *  implementations.
 *
 *    text        --prompt TEXT -> prompt_embeds [1, 77k, ctx], pooled_prompt_embeds [1, proj],
 *                                 input_ids_1, input_ids_2 [1, 77k]
 *    unet        sample [B,4,h,w], timestep [B], encoder_hidden_states [B,L,ctx],
 *                text_embeds [B,proj], time_ids [B,6] -> noise_pred [B,4,h,w]
 *    vae-encode  image [B,3,H,W] in [-1, 1] -> mean, logvar [B,4,H/8,W/8]
 *    vae-decode  latents [B,4,h,w] (already divided by the scaling factor) -> image
 */
#ifndef DF_COMPONENT_H
#define DF_COMPONENT_H

/*  argv starts at "component". Returns the process exit code. */
int df_component_main(int argc, char **argv);

#endif
