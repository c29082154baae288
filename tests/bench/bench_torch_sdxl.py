#!/usr/bin/env python3
"""bench_torch_sdxl.py - the PyTorch baseline for bench_generate and bench_train.

    bench_torch_sdxl.py MODEL_DIR [--sizes 512,1024] [--reps N] [--no-train] [--device cuda|cpu]

Times diffusers' own SDXL UNet and VAE on a CUDA GPU, with the shapes our
benchmarks use, so that a GPU session can print both sets of figures from
the same machine:

  * one denoising step: the UNet on a batch of 2 (classifier-free guidance),
    fp16 weights, PyTorch's scaled-dot-product attention (what diffusers picks
    on torch 2);
  * the VAE decode of one latent, fp16 and fp32 (diffusers upcasts SDXL's VAE
    to fp32 by default: force_upcast);
  * one LoRA training step at batch 1: rank-16 adapters on to_q/to_k/to_v/
    to_out.0 of every attention (fp32 parameters), fp16 frozen base under
    autocast, gradient checkpointing, epsilon MSE, AdamW - the configuration
    of diffusers' train_dreambooth_lora_sdxl.py.

The modules are built from MODEL_DIR/unet/config.json and vae/config.json
with random initial values: the time depends on shapes, not values. The
adapter is a plain low-rank pair added to each target projection's output,
which is all a LoRA is; the UNet around it is diffusers' code.

--device cpu runs everything in fp32 on the CPU: a smoke test of this script
on a machine without a GPU (with a tiny model), not a baseline.

Not a test: the figures go to docs/performance.md beside ours.
"""
import argparse
import contextlib
import json
import os
import sys
import time

import torch


DEV = "cuda"
HALF = torch.float16


def sync():
    if DEV == "cuda":
        torch.cuda.synchronize()


def peak_gib():
    return torch.cuda.max_memory_allocated() / 2**30 if DEV == "cuda" else 0.0


def reset_peak():
    if DEV == "cuda":
        torch.cuda.reset_peak_memory_stats()


def timed(fn, reps):
    """Mean seconds of fn over reps calls after two warm-ups, GPU synchronised."""
    for _ in range(2):
        fn()
    sync()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    sync()
    return (time.perf_counter() - t0) / reps


class LowRankAdapter(torch.nn.Module):
    """base(x) + up(down(x)) * alpha/rank, with fp32 down/up as the reference trains them."""

    def __init__(self, base, rank, alpha):
        super().__init__()
        self.base = base
        self.down = torch.nn.Linear(base.in_features, rank, bias=False)
        self.up = torch.nn.Linear(rank, base.out_features, bias=False)
        torch.nn.init.normal_(self.down.weight, std=1.0 / rank)
        torch.nn.init.zeros_(self.up.weight)
        self.scale = alpha / rank

    def forward(self, x, *args, **kwargs):
        return self.base(x) + self.up(self.down(x)) * self.scale


def add_adapters(unet, rank):
    params = []
    targets = ("to_q", "to_k", "to_v")
    for module in list(unet.modules()):
        if type(module).__name__ != "Attention":
            continue
        for name in targets:
            a = LowRankAdapter(getattr(module, name), rank, rank)
            setattr(module, name, a)
            params += [a.down.weight, a.up.weight]
        a = LowRankAdapter(module.to_out[0], rank, rank)
        module.to_out[0] = a
        params += [a.down.weight, a.up.weight]
    for p in params:
        p.data = p.data.float().to(DEV)
        p.requires_grad_(True)
    return params


def unet_inputs(batch, px, ucfg, dtype):
    cross_dim = ucfg["cross_attention_dim"]
    pooled_dim = ucfg["projection_class_embeddings_input_dim"] - 6 * ucfg["addition_time_embed_dim"]
    lat = px // 8
    g = torch.Generator(device=DEV).manual_seed(1)
    return dict(
        sample=torch.randn(batch, 4, lat, lat, device=DEV, dtype=dtype, generator=g),
        timestep=torch.tensor([500] * batch, device=DEV),
        encoder_hidden_states=torch.randn(batch, 77, cross_dim, device=DEV, dtype=dtype, generator=g),
        added_cond_kwargs={
            "text_embeds": torch.randn(batch, pooled_dim, device=DEV, dtype=dtype, generator=g),
            "time_ids": torch.tensor([[px, px, 0, 0, px, px]] * batch, device=DEV, dtype=dtype),
        },
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--sizes", default="512,1024")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--no-train", action="store_true")
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    args = ap.parse_args()
    # diffusers 0.25 switches its layers to PEFT's when peft and transformers
    # are importable, and a newer transformers than it knows fails to import
    # against its huggingface_hub: keep both out, as they play no part here.
    sys.modules.setdefault("peft", None)
    sys.modules.setdefault("transformers", None)
    global DEV, HALF
    DEV = args.device
    HALF = torch.float16 if DEV == "cuda" else torch.float32
    from diffusers import AutoencoderKL, UNet2DConditionModel
    import diffusers

    with open(os.path.join(args.model, "unet", "config.json")) as f:
        ucfg = json.load(f)
    with open(os.path.join(args.model, "vae", "config.json")) as f:
        vcfg = json.load(f)
    sizes = [int(s) for s in args.sizes.split(",")]
    print("torch %s, diffusers %s, %s" % (torch.__version__, diffusers.__version__, torch.cuda.get_device_name(0) if DEV == "cuda" else "cpu (smoke test, fp32)"))
    sys.stdout.flush()

    torch.manual_seed(0)
    # Build on the device where torch can (2.0 and later): a CPU initialisation
    # of 2.6 G parameters takes longer than the whole benchmark.
    place = torch.device(DEV) if hasattr(torch.device, "__enter__") else contextlib.nullcontext()
    with place:
        unet = UNet2DConditionModel.from_config(ucfg)
    unet = unet.to(DEV, HALF).eval()
    with torch.no_grad():
        for px in sizes:
            inp = unet_inputs(2, px, ucfg, HALF)
            reset_peak()
            t = timed(lambda: unet(**inp), args.reps)
            print("torch unet step %d px batch 2 %s: %.1f ms, peak %.2f GiB allocated"
                  % (px, str(HALF).split(".")[1], t * 1e3, peak_gib()))
            sys.stdout.flush()

    with place:
        vae = AutoencoderKL.from_config(vcfg)
    vae = vae.to(DEV).eval()
    with torch.no_grad():
        for dtype in sorted({HALF, torch.float32}, key=str):
            vae.to(dtype)
            for px in sizes:
                z = torch.randn(1, 4, px // 8, px // 8, device=DEV, dtype=dtype)
                t = timed(lambda: vae.decode(z), max(1, args.reps // 2))
                print("torch vae decode %d px %s: %.1f ms" % (px, str(dtype).split(".")[1], t * 1e3))
                sys.stdout.flush()
    del vae
    if args.no_train:
        return

    for p in unet.parameters():
        p.requires_grad_(False)
    params = add_adapters(unet, 16)
    unet.enable_gradient_checkpointing()
    unet.train()
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=1e-2)
    print("torch lora: %d tensors, %d parameters" % (len(params), sum(p.numel() for p in params)))
    for px in sizes:
        inp = unet_inputs(1, px, ucfg, HALF)
        target = torch.randn_like(inp["sample"], dtype=torch.float32)

        def step():
            with torch.autocast("cuda", dtype=torch.float16, enabled=DEV == "cuda"):
                pred = unet(**inp).sample
            loss = torch.nn.functional.mse_loss(pred.float(), target)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        reset_peak()
        t = timed(step, args.reps)
        print("torch lora train step %d px batch 1 rank 16: %.1f ms, peak %.2f GiB allocated"
              % (px, t * 1e3, peak_gib()))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
