#!/usr/bin/env python3
"""Builds the parity goldens for the `tiny` random model from the reference
implementations: diffusers (UNet2DConditionModel, AutoencoderKL), open_clip
(the CLIP text transformer) and OpenAI's CLIP tokenizer, imported as a pip
user would. The C tests compare against the files written here; they need
neither torch nor this script.

    dreamfleet model create-random /tmp/tiny --config tiny --seed 0
    dreamfleet model create-random /tmp/tiny.safetensors --single-file --config tiny --seed 0
    PYTHONPATH=DIFFUSERS_SRC:HF_HUB_SRC:OPEN_CLIP_SRC:OPENAI_CLIP_SRC:tests/golden/pysafetensors:tests/golden/pystubs \\
        /usr/bin/python3 tests/golden/make_goldens.py /tmp/tiny /tmp/tiny.safetensors tests/data/golden

(docs/parity.md says which versions and where they come from.) The model is
a pure function of the seed, so the goldens record the SHA-256 of each weight
file; the C test regenerates the model and checks those first.
"""
import hashlib
import json
import math
import os
import sys

import torch

import diffusers
from diffusers import AutoencoderKL, UNet2DConditionModel
from open_clip.version import __version__ as open_clip_version
from open_clip.transformer import QuickGELU, TextTransformer
from clip.simple_tokenizer import SimpleTokenizer
import safetensors.torch


def diffusers_converters():
    """diffusers' own single-file converters for the UNet and the VAE.

    Their module (convert_from_ckpt.py) imports transformers at the top for
    functions not used here, and transformers cannot be installed where the
    goldens are made; so its functions are taken from the module's source,
    unchanged, and run in a namespace of their own."""
    import ast
    import logging
    import re
    src_path = os.path.join(os.path.dirname(diffusers.__file__), "pipelines", "stable_diffusion",
                            "convert_from_ckpt.py")
    tree = ast.parse(open(src_path).read())
    wanted = re.compile(r"^(renew_|assign_to_checkpoint|shave_segments|conv_attn_to_linear|convert_ldm_unet_checkpoint|"
                        r"convert_ldm_vae_checkpoint)")
    module = ast.Module(body=[n for n in tree.body if isinstance(n, ast.FunctionDef) and wanted.match(n.name)],
                        type_ignores=[])
    ns = {"torch": torch, "logger": logging.getLogger("convert_from_ckpt"), "Optional": None, "Union": None,
          "Dict": None}
    exec(compile(module, src_path, "exec"), ns)
    return ns["convert_ldm_unet_checkpoint"], ns["convert_ldm_vae_checkpoint"]

PROMPTS = [
    "a photo of TOK person",
    "portrait of TOK person wearing a red jacket, standing in the city at night, highly detailed",
    "",
    "the quick brown fox; it's a sunny day!",
]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tokens(tok, text, pad):
    """77 ids: start, the prompt's tokens (at most 75), end, padding."""
    ids = tok.encode(text)[:75]
    row = [tok.encoder["<|startoftext|>"]] + ids + [tok.encoder["<|endoftext|>"]]
    return row + [pad] * (77 - len(row))


def open_clip_text(model_dir, sub):
    """The text encoder in model_dir/sub (transformers' CLIP names) loaded
    into open_clip's TextTransformer, which computes the same function."""
    cfg = json.load(open(os.path.join(model_dir, sub, "config.json")))
    sd = safetensors.torch.load_file(os.path.join(model_dir, sub, "model.safetensors"))
    with_proj = cfg["architectures"][0] == "CLIPTextModelWithProjection"
    tt = TextTransformer(
        context_length=cfg["max_position_embeddings"], vocab_size=cfg["vocab_size"], width=cfg["hidden_size"],
        heads=cfg["num_attention_heads"], layers=cfg["num_hidden_layers"],
        mlp_ratio=cfg["intermediate_size"] / cfg["hidden_size"],
        output_dim=cfg["projection_dim"],
        act_layer=QuickGELU if cfg["hidden_act"] == "quick_gelu" else torch.nn.GELU)
    m = {"token_embedding.weight": sd["text_model.embeddings.token_embedding.weight"],
         "positional_embedding": sd["text_model.embeddings.position_embedding.weight"],
         "ln_final.weight": sd["text_model.final_layer_norm.weight"],
         "ln_final.bias": sd["text_model.final_layer_norm.bias"]}
    for i in range(cfg["num_hidden_layers"]):
        hf, oc = f"text_model.encoder.layers.{i}.", f"transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            m[oc + "attn.in_proj_" + kind] = torch.cat([sd[hf + f"self_attn.{p}_proj.{kind}"] for p in "qkv"])
            m[oc + "attn.out_proj." + kind] = sd[hf + "self_attn.out_proj." + kind]
            m[oc + "ln_1." + kind] = sd[hf + "layer_norm1." + kind]
            m[oc + "ln_2." + kind] = sd[hf + "layer_norm2." + kind]
            m[oc + "mlp.c_fc." + kind] = sd[hf + "mlp.fc1." + kind]
            m[oc + "mlp.c_proj." + kind] = sd[hf + "mlp.fc2." + kind]
    # open_clip multiplies by its projection (x @ P); transformers' Linear stores P transposed.
    m["text_projection"] = sd["text_projection.weight"].t() if with_proj else torch.zeros_like(tt.text_projection)
    tt.load_state_dict(m, strict=True)
    return tt.eval(), with_proj


@torch.no_grad()
def run_text(tt, ids):
    """Penultimate hidden states (the SDXL context) and the pooled, projected
    output, as SDXL takes them from each encoder."""
    x = tt.token_embedding(ids) + tt.positional_embedding
    x = x.permute(1, 0, 2)
    for block in tt.transformer.resblocks[:-1]:
        x = block(x, attn_mask=tt.attn_mask)
    penultimate = x.permute(1, 0, 2)
    x = tt.transformer.resblocks[-1](x, attn_mask=tt.attn_mask).permute(1, 0, 2)
    x = tt.ln_final(x)
    pooled = x[torch.arange(x.shape[0]), ids.argmax(dim=-1)] @ tt.text_projection
    return penultimate.contiguous(), pooled.contiguous()


def check_single_file(path, model_dir, unet, vae, te1, te2):
    """The single file's SGM names, read back by diffusers' own converters
    (and open_clip's loader for encoder 2), must give exactly the folder's
    tensors; then the folder's goldens hold for the single file too."""
    convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint = diffusers_converters()
    sf = safetensors.torch.load_file(path)
    folder_unet = safetensors.torch.load_file(os.path.join(model_dir, "unet", "diffusion_pytorch_model.safetensors"))
    folder_vae = safetensors.torch.load_file(os.path.join(model_dir, "vae", "diffusion_pytorch_model.safetensors"))
    for name, conv, folder in (("unet", convert_ldm_unet_checkpoint(sf, dict(unet.config)), folder_unet),
                               ("vae", convert_ldm_vae_checkpoint(sf, dict(vae.config)), folder_vae)):
        assert set(conv) == set(folder), (name, sorted(set(conv) ^ set(folder))[:10])
        for k in folder:
            assert torch.equal(conv[k].reshape(folder[k].shape), folder[k]), (name, k)
    te1_folder = safetensors.torch.load_file(os.path.join(model_dir, "text_encoder", "model.safetensors"))
    p1 = "conditioner.embedders.0.transformer."
    te1_sf = {k[len(p1):]: v for k, v in sf.items() if k.startswith(p1)}
    assert set(te1_sf) == set(te1_folder) and all(torch.equal(te1_sf[k], te1_folder[k]) for k in te1_folder)
    p2 = "conditioner.embedders.1.model."
    te2_sf = {k[len(p2):]: v for k, v in sf.items() if k.startswith(p2)}
    loaded = TextTransformer(context_length=te2.context_length, vocab_size=te2.vocab_size, width=te2.width,
                             heads=te2.heads, layers=te2.transformer.layers,
                             mlp_ratio=te2.transformer.resblocks[0].mlp.c_fc.out_features / te2.width,
                             output_dim=te2.output_dim)
    loaded.load_state_dict(te2_sf, strict=True)
    for k, v in te2.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), ("text_encoder_2", k)
    assert all(k.startswith((p1, p2, "model.diffusion_model.", "first_stage_model.")) for k in sf)
    return sha256(path)


SAMPLERS = {  # our name: (diffusers scheduler class, extra config)
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_karras": ("EulerDiscreteScheduler", {"use_karras_sigmas": True}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", {}),
    "dpmpp_2m_karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    "ddim": ("DDIMScheduler", {}),
}


def make_scheduler(model_dir, name):
    """The sampler as a pipeline gets it: the model's scheduler config
    loaded into the sampler's class."""
    import diffusers as d
    base = d.EulerDiscreteScheduler.from_pretrained(os.path.join(model_dir, "scheduler"))
    cls, extra = SAMPLERS[name]
    return getattr(d, cls).from_config(base.config, **extra)


class QueuedNoise:
    """Stands in for the ancestral sampler's random draws, so the C side can
    be given the same noise: each call pops the next tensor."""

    def __init__(self, noises):
        self.noises = list(noises)

    def __call__(self, shape, **_kwargs):
        return self.noises.pop(0).reshape(shape).clone()


def synthetic_eps(x, t):
    """A smooth stand-in for a UNet, cheap to compute the same way in C."""
    return torch.tanh(0.5 * x) * math.cos(float(t) / 300.0) + 0.1 * torch.sin(3.0 * x)


def sample(sched, steps, x, eps_fn, noises):
    """The denoising loop of diffusers' SDXL pipeline, around any model."""
    import diffusers.schedulers.scheduling_euler_ancestral_discrete as ea
    ea.randn_tensor = QueuedNoise(noises)
    sched.set_timesteps(steps)
    x = x * sched.init_noise_sigma
    for t in sched.timesteps:
        x = sched.step(eps_fn(sched.scale_model_input(x, t), t), t, x).prev_sample
    return x


def scheduler_goldens(model_dir, out_dir, gen):
    out = {}
    for name in SAMPLERS:
        for steps in (7, 20):
            sched = make_scheduler(model_dir, name)
            init = torch.randn(1, 4, 8, 8, generator=gen)
            noises = [torch.randn(1, 4, 8, 8, generator=gen) for _ in range(steps)]
            final = sample(sched, steps, init, synthetic_eps, noises)
            key = f"{name}_{steps}"
            out[key + ".init"] = init
            out[key + ".noise"] = torch.stack(noises)
            out[key + ".timesteps"] = sched.timesteps.to(torch.float32)
            out[key + ".sigmas"] = (sched.sigmas if hasattr(sched, "sigmas") and sched.sigmas is not None
                                    else torch.zeros(1)).to(torch.float32)
            out[key + ".init_noise_sigma"] = torch.tensor([float(sched.init_noise_sigma)])
            out[key + ".final"] = final.contiguous()
    safetensors.torch.save_file(out, os.path.join(out_dir, "schedulers.safetensors"))


def pipeline_goldens(model_dir, out_dir, unet, text, gen):
    """The tiny model's UNet through each sampler, as SDXL's pipeline runs it:
    classifier-free guidance 5 against an all-zero negative (no negative
    prompt given), 128 x 128, micro-conditioning from the size."""
    steps, guidance, side = 6, 5.0, 128
    ctx = text["prompt_embeds"][:1]
    pooled = text["pooled_prompt_embeds"][:1]
    context = torch.cat([torch.zeros_like(ctx), ctx])
    text_embeds = torch.cat([torch.zeros_like(pooled), pooled])
    time_ids = torch.tensor([[side, side, 0, 0, side, side]] * 2, dtype=torch.float32)

    def guided(x, t):
        with torch.no_grad():
            pred = unet(torch.cat([x, x]), t, encoder_hidden_states=context,
                        added_cond_kwargs={"text_embeds": text_embeds, "time_ids": time_ids}).sample
        uncond, cond = pred.chunk(2)
        return uncond + guidance * (cond - uncond)

    out = {"prompt_embeds": ctx.contiguous(), "pooled_prompt_embeds": pooled.contiguous()}
    for name in SAMPLERS:
        init = torch.randn(1, 4, side // 8, side // 8, generator=gen)
        noises = [torch.randn(1, 4, side // 8, side // 8, generator=gen) for _ in range(steps)]
        out[name + ".init"] = init
        out[name + ".noise"] = torch.stack(noises)
        out[name + ".final"] = sample(make_scheduler(model_dir, name), steps, init, guided, noises).contiguous()
    meta = {"steps": str(steps), "guidance": str(guidance), "size": str(side), "prompt": PROMPTS[0]}
    safetensors.torch.save_file(out, os.path.join(out_dir, "tiny_pipeline.safetensors"), metadata=meta)


def lora_grad_goldens(model_dir, out_dir, gen):
    """Training's reference: the loss and the gradient of every LoRA factor,
    by autograd through diffusers' UNet with diffusers' own LoRA layers
    (LoRALinearLayer on every attention projection and on two transformer
    projections, LoRAConv2dLayer on a 3x3 ResNet convolution). Both factors
    are random, so that no gradient is zero by construction (training starts
    with up = 0, which would hide the down factors' gradients)."""
    from diffusers.models.attention_processor import Attention
    from diffusers.models.lora import LoRAConv2dLayer, LoRALinearLayer
    unet = UNet2DConditionModel.from_pretrained(os.path.join(model_dir, "unet")).eval()
    unet.requires_grad_(False)
    rank, alpha = 4, 2.0
    layers = {}

    def attach(name, module, layer):
        with torch.no_grad():
            layer.down.weight.copy_(torch.randn(layer.down.weight.shape, generator=gen) * 0.2)
            layer.up.weight.copy_(torch.randn(layer.up.weight.shape, generator=gen) * 0.2)
        layer.requires_grad_(True)
        module.set_lora_layer(layer)
        layers["lora_unet_" + name.replace(".", "_")] = layer

    for name, m in unet.named_modules():
        if isinstance(m, Attention):
            for proj in ("to_q", "to_k", "to_v", "to_out.0"):
                lin = m.get_submodule(proj)
                attach(f"{name}.{proj}", lin, LoRALinearLayer(lin.in_features, lin.out_features, rank, alpha))
    for name in ("down_blocks.1.attentions.0.proj_in", "mid_block.attentions.0.proj_out"):
        lin = unet.get_submodule(name)
        attach(name, lin, LoRALinearLayer(lin.in_features, lin.out_features, rank, alpha))
    conv = unet.get_submodule("down_blocks.1.resnets.0.conv1")
    attach("down_blocks.1.resnets.0.conv1", conv,
           LoRAConv2dLayer(conv.in_channels, conv.out_channels, rank, conv.kernel_size, conv.stride, conv.padding,
                           alpha))

    cfg = unet.config
    side = cfg.sample_size
    pooled_dim = cfg.projection_class_embeddings_input_dim - 6 * cfg.addition_time_embed_dim
    sample = torch.randn(2, cfg.in_channels, side, side, generator=gen)
    timestep = torch.tensor([733.0, 42.0])
    context = torch.randn(2, 77, cfg.cross_attention_dim, generator=gen)
    text_embeds = torch.randn(2, pooled_dim, generator=gen)
    time_ids = torch.tensor([[128.0, 128.0, 0.0, 0.0, 128.0, 128.0], [160.0, 96.0, 4.0, 8.0, 128.0, 128.0]])
    target = torch.randn(2, cfg.out_channels, side, side, generator=gen)
    noise_pred = unet(sample, timestep, encoder_hidden_states=context,
                      added_cond_kwargs={"text_embeds": text_embeds, "time_ids": time_ids}).sample
    loss = torch.nn.functional.mse_loss(noise_pred, target, reduction="mean")
    loss.backward()
    # One AdamW step from those gradients, as the training scripts configure it.
    grads_before = {k: (l.down.weight.grad.clone(), l.up.weight.grad.clone()) for k, l in layers.items()}
    opt = torch.optim.AdamW([p for l in layers.values() for p in (l.down.weight, l.up.weight)], lr=1e-3,
                            betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2)
    before = {k: (l.down.weight.detach().clone(), l.up.weight.detach().clone()) for k, l in layers.items()}
    opt.step()

    lora, grads = {}, {"sample": sample, "timestep": timestep, "encoder_hidden_states": context,
                       "text_embeds": text_embeds, "time_ids": time_ids, "target": target,
                       "noise_pred": noise_pred.detach().contiguous(), "loss": loss.detach().reshape(1)}
    for key, layer in sorted(layers.items()):
        lora[f"{key}.lora_down.weight"] = before[key][0].contiguous()
        lora[f"{key}.lora_up.weight"] = before[key][1].contiguous()
        lora[f"{key}.alpha"] = torch.tensor(alpha)
        grads[f"{key}.lora_down.weight"] = grads_before[key][0].contiguous()
        grads[f"{key}.lora_up.weight"] = grads_before[key][1].contiguous()
        grads[f"adamw.{key}.lora_down.weight"] = layer.down.weight.detach().contiguous()
        grads[f"adamw.{key}.lora_up.weight"] = layer.up.weight.detach().contiguous()
    safetensors.torch.save_file(lora, os.path.join(out_dir, "tiny_lora.safetensors"),
                                metadata={"ss_network_dim": str(rank), "ss_network_alpha": str(alpha)})
    safetensors.torch.save_file(grads, os.path.join(out_dir, "tiny_lora_grad.safetensors"),
                                metadata={"modules": str(len(layers)), "loss": "mse, mean over all elements",
                                          "adamw": "lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight decay 1e-2, "
                                                   "one step: adamw.* are the factors after it"})


def text_lora_grad_goldens(model_dir, out_dir, tok):
    """Text-encoder LoRA's reference: the gradient of every factor on both
    text towers' attention projections (q, k, v, out), by autograd from the
    token ids through open_clip's towers and diffusers' UNet to the MSE loss;
    also the gradients reaching the UNet's two text inputs (the context and
    the pooled embedding). open_clip fuses q, k and v into one in_proj
    matrix, so each factor pair enters as W + scale up @ down folded into its
    weight: the same function as a LoRA layer beside W. Its own generator, so
    the files before it do not change."""
    gen = torch.Generator().manual_seed(4321)
    rank, alpha = 4, 2.0
    scale = alpha / rank
    factors = {}

    def pair(key, width):
        down = (torch.randn(rank, width, generator=gen) * 0.2).requires_grad_(True)
        up = (torch.randn(width, rank, generator=gen) * 0.2).requires_grad_(True)
        factors[key] = (down, up)
        return down, up

    towers = {}
    for which, sub in ((1, "text_encoder"), (2, "text_encoder_2")):
        tt, _ = open_clip_text(model_dir, sub)
        tt.requires_grad_(False)
        for i, block in enumerate(tt.transformer.resblocks):
            attn = block.attn
            width = attn.embed_dim
            base_in = attn.in_proj_weight.detach().clone()
            base_out = attn.out_proj.weight.detach().clone()
            del attn._parameters["in_proj_weight"]
            del attn.out_proj._parameters["weight"]
            pre = f"lora_te{which}_text_model_encoder_layers_{i}_self_attn_"
            qkv = [pair(pre + f"{p}_proj", width) for p in "qkv"]
            down, up = pair(pre + "out_proj", width)
            attn.in_proj_weight = base_in + scale * torch.cat([u @ d for d, u in qkv])
            attn.out_proj.weight = base_out + scale * (up @ down)
        towers[which] = tt

    prompt = "a photo of TOK dog"
    ids1 = torch.tensor([tokens(tok, prompt, tok.encoder["<|endoftext|>"])], dtype=torch.int64)
    ids2 = torch.tensor([tokens(tok, prompt, 0)], dtype=torch.int64)
    h1, _ = run_text.__wrapped__(towers[1], ids1)
    h2, pooled = run_text.__wrapped__(towers[2], ids2)
    context = torch.cat([h1, h2], dim=-1)
    context.retain_grad()
    pooled.retain_grad()

    unet = UNet2DConditionModel.from_pretrained(os.path.join(model_dir, "unet")).eval()
    unet.requires_grad_(False)
    cfg = unet.config
    side = cfg.sample_size
    sample = torch.randn(1, cfg.in_channels, side, side, generator=gen)
    timestep = torch.tensor([500.0])
    time_ids = torch.tensor([[128.0, 112.0, 0.0, 8.0, 128.0, 128.0]])
    target = torch.randn(1, cfg.out_channels, side, side, generator=gen)
    noise_pred = unet(sample, timestep, encoder_hidden_states=context,
                      added_cond_kwargs={"text_embeds": pooled, "time_ids": time_ids}).sample
    loss = torch.nn.functional.mse_loss(noise_pred, target, reduction="mean")
    loss.backward()

    lora = {}
    grads = {"input_ids_1": ids1.to(torch.int32), "input_ids_2": ids2.to(torch.int32), "sample": sample,
             "timestep": timestep, "time_ids": time_ids, "target": target,
             "prompt_embeds": context.detach().contiguous(), "pooled_prompt_embeds": pooled.detach().contiguous(),
             "noise_pred": noise_pred.detach().contiguous(), "loss": loss.detach().reshape(1),
             "grad.prompt_embeds": context.grad.contiguous(), "grad.pooled_prompt_embeds": pooled.grad.contiguous()}
    for key, (down, up) in sorted(factors.items()):
        lora[f"{key}.lora_down.weight"] = down.detach().contiguous()
        lora[f"{key}.lora_up.weight"] = up.detach().contiguous()
        lora[f"{key}.alpha"] = torch.tensor(alpha)
        # Encoder 1's last layer feeds nothing SDXL reads: no gradient, zeros.
        grads[f"{key}.lora_down.weight"] = (down.grad if down.grad is not None else torch.zeros_like(down)).contiguous()
        grads[f"{key}.lora_up.weight"] = (up.grad if up.grad is not None else torch.zeros_like(up)).contiguous()
    safetensors.torch.save_file(lora, os.path.join(out_dir, "tiny_text_lora.safetensors"),
                                metadata={"ss_network_dim": str(rank), "ss_network_alpha": str(alpha)})
    safetensors.torch.save_file(grads, os.path.join(out_dir, "tiny_text_lora_grad.safetensors"),
                                metadata={"prompt": prompt, "modules": str(len(factors)),
                                          "loss": "mse, mean over all elements"})


# The parameters whose full-fine-tuning gradients are checked: every kind of
# layer once (convolutions with and without stride, the shortcut, both
# norms, every linear of a transformer layer, both projections, the
# embeddings' MLPs, the head).
FULL_GRAD_PREFIXES = (
    "conv_in.", "time_embedding.", "add_embedding.", "down_blocks.0.resnets.0.", "down_blocks.0.downsamplers.",
    "down_blocks.1.resnets.0.conv_shortcut.", "down_blocks.1.attentions.0.norm.", "down_blocks.1.attentions.0.proj_",
    "down_blocks.1.attentions.0.transformer_blocks.0.", "mid_block.attentions.0.transformer_blocks.0.attn2.",
    "up_blocks.0.upsamplers.", "up_blocks.2.resnets.2.", "conv_norm_out.", "conv_out.",
)


def full_grad_goldens(model_dir, out_dir):
    """Full fine-tuning's reference: the gradient of every UNet parameter by
    autograd through diffusers' UNet (those of FULL_GRAD_PREFIXES saved, a
    representative of each kind of layer). Its own generator."""
    gen = torch.Generator().manual_seed(2468)
    unet = UNet2DConditionModel.from_pretrained(os.path.join(model_dir, "unet")).eval()
    cfg = unet.config
    side = cfg.sample_size
    pooled_dim = cfg.projection_class_embeddings_input_dim - 6 * cfg.addition_time_embed_dim
    sample = torch.randn(2, cfg.in_channels, side, side, generator=gen)
    timestep = torch.tensor([650.0, 90.0])
    context = torch.randn(2, 77, cfg.cross_attention_dim, generator=gen)
    text_embeds = torch.randn(2, pooled_dim, generator=gen)
    time_ids = torch.tensor([[128.0, 128.0, 0.0, 0.0, 128.0, 128.0], [112.0, 144.0, 8.0, 0.0, 128.0, 128.0]])
    target = torch.randn(2, cfg.out_channels, side, side, generator=gen)
    noise_pred = unet(sample, timestep, encoder_hidden_states=context,
                      added_cond_kwargs={"text_embeds": text_embeds, "time_ids": time_ids}).sample
    loss = torch.nn.functional.mse_loss(noise_pred, target, reduction="mean")
    loss.backward()
    out = {"sample": sample, "timestep": timestep, "encoder_hidden_states": context, "text_embeds": text_embeds,
           "time_ids": time_ids, "target": target, "noise_pred": noise_pred.detach().contiguous(),
           "loss": loss.detach().reshape(1)}
    saved = 0
    for name, p in unet.named_parameters():
        if name.startswith(FULL_GRAD_PREFIXES):
            out["grad." + name] = p.grad.contiguous()
            saved += 1
    safetensors.torch.save_file(out, os.path.join(out_dir, "tiny_unet_grad.safetensors"),
                                metadata={"parameters": str(saved), "loss": "mse, mean over all elements"})


def main():
    model_dir, single_file, out_dir = sys.argv[1], sys.argv[2], sys.argv[3]
    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(0)
    torch.set_num_threads(2)
    gen = torch.Generator().manual_seed(1234)

    # --- tokenizer and text encoders
    tok = SimpleTokenizer(os.path.join(model_dir, "tokenizer", "bpe_merges.txt.gz"))
    ids1 = torch.tensor([tokens(tok, p, tok.encoder["<|endoftext|>"]) for p in PROMPTS], dtype=torch.int64)
    ids2 = torch.tensor([tokens(tok, p, 0) for p in PROMPTS], dtype=torch.int64)
    te1, _ = open_clip_text(model_dir, "text_encoder")
    te2, _ = open_clip_text(model_dir, "text_encoder_2")
    h1, _ = run_text(te1, ids1)
    h2, pooled = run_text(te2, ids2)
    text = {"input_ids_1": ids1.to(torch.int32), "input_ids_2": ids2.to(torch.int32),
            "te1_penultimate": h1, "te2_penultimate": h2,
            "prompt_embeds": torch.cat([h1, h2], dim=-1), "pooled_prompt_embeds": pooled}
    meta = {"prompts": json.dumps(PROMPTS)}
    safetensors.torch.save_file({k: v.contiguous() for k, v in text.items()},
                                os.path.join(out_dir, "tiny_text.safetensors"), metadata=meta)

    # --- UNet: batch 2 as with classifier-free guidance, different timesteps
    unet = UNet2DConditionModel.from_pretrained(os.path.join(model_dir, "unet")).eval()
    cfg = unet.config
    side = cfg.sample_size
    ctx = cfg.cross_attention_dim
    pooled_dim = cfg.projection_class_embeddings_input_dim - 6 * cfg.addition_time_embed_dim
    sample = torch.randn(2, cfg.in_channels, side, side, generator=gen)
    timestep = torch.tensor([901.0, 11.0])
    context = torch.randn(2, 77, ctx, generator=gen)
    text_embeds = torch.randn(2, pooled_dim, generator=gen)
    time_ids = torch.tensor([[128.0, 128.0, 0.0, 0.0, 128.0, 128.0], [96.0, 160.0, 8.0, 4.0, 128.0, 128.0]])
    with torch.no_grad():
        noise_pred = unet(sample, timestep, encoder_hidden_states=context,
                          added_cond_kwargs={"text_embeds": text_embeds, "time_ids": time_ids}).sample
    safetensors.torch.save_file(
        {"sample": sample, "timestep": timestep, "encoder_hidden_states": context, "text_embeds": text_embeds,
         "time_ids": time_ids, "noise_pred": noise_pred.contiguous()},
        os.path.join(out_dir, "tiny_unet.safetensors"))

    # --- VAE: encode an image to its posterior, decode latents to an image
    vae = AutoencoderKL.from_pretrained(os.path.join(model_dir, "vae")).eval()
    image = torch.rand(1, 3, 64, 48, generator=gen) * 2 - 1
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    latents = torch.randn(1, vae.config.latent_channels, 64 // factor, 48 // factor, generator=gen)
    with torch.no_grad():
        post = vae.encode(image).latent_dist
        decoded = vae.decode(latents).sample
    safetensors.torch.save_file(
        {"image": image, "mean": post.mean.contiguous(), "logvar": post.logvar.contiguous(), "latents": latents,
         "decoded": decoded.contiguous()},
        os.path.join(out_dir, "tiny_vae.safetensors"))

    scheduler_goldens(model_dir, out_dir, gen)
    pipeline_goldens(model_dir, out_dir, unet, text, gen)

    single_sha = check_single_file(single_file, model_dir, unet, vae, te1, te2)
    lora_grad_goldens(model_dir, out_dir, gen)
    text_lora_grad_goldens(model_dir, out_dir, tok)
    full_grad_goldens(model_dir, out_dir)

    files = {}
    for sub in ("unet", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2"):
        for name in sorted(os.listdir(os.path.join(model_dir, sub))):
            files[f"{sub}/{name}"] = sha256(os.path.join(model_dir, sub, name))
    manifest = {"model": "dreamfleet model create-random DIR --config tiny --seed 0",
                "reference": {"diffusers": diffusers.__version__, "torch": torch.__version__,
                              "open_clip": open_clip_version, "tokenizer": "openai/CLIP simple_tokenizer"},
                "files": files,
                "single_file": {"model": "dreamfleet model create-random FILE --single-file --config tiny --seed 0",
                                "sha256": single_sha,
                                "checked_with": "diffusers' convert_ldm_unet_checkpoint and convert_ldm_vae_checkpoint, "
                                                "open_clip TextTransformer.load_state_dict(strict=True): "
                                                "identical to the folder's tensors"}}
    with open(os.path.join(out_dir, "tiny_manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
