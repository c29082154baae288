#!/bin/sh
# Installs dependencies, builds dreamfleet (release), and runs the main job.
#
#   deploy/demo.sh            the tiny random model (made here, a few MB)
#   deploy/demo.sh PATH       a real SDXL model (sd_xl_base_1.0.safetensors or
#                             a diffusers folder); a single file also needs
#                             DF_TOKENIZER=DIR (vocab.json + merges.txt)
#
# The main job, through the embedded coordinator and worker (the path a
# cluster uses): the engine's self-test on the Vulkan device; `prep` of the
# bundled real photos (tests/data/photos) as a job of the workers, at the
# training size: the portrait is accepted and captioned "a photo of TOK
# woman", the cat refused for having no face (report.txt and
# contact-sheet.png in OUT/dataset); a DreamBooth LoRA trained on the
# prepared set (SDXL's size conditioning from the photo as taken, mirrored
# copies, validation images every 10 steps); images from a prompt with that
# LoRA. The tiny random model cannot learn a real face, so its images show
# the pipeline, not a likeness; a real SDXL model does the same job for real.
# With your own photos, `dreamfleet train --prep --data DIR ...` prepares
# and trains in one go.
set -eu
cd "$(dirname "$0")/.."
deploy/install-deps.sh
build="${DF_BUILD_DIR:-build}"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release
cmake --build "$build" -j "$(nproc)" --target dreamfleet-worker dreamfleet dreamfleet-coordinator
cli="$build/coordinator/dreamfleet"
out="${DF_DEMO_OUT:-demo-output}"
"$build/worker/dreamfleet-worker" --selftest --quick
if [ "$#" -gt 0 ]; then
    model="$1"
    size=1024x1024
    steps=30
    tok=""
    if [ -n "${DF_TOKENIZER:-}" ]; then tok="--tokenizer $DF_TOKENIZER"; fi
else
    model="$out/tiny-model"
    [ -d "$model" ] || "$cli" model create-random "$model" --config tiny --seed 0
    size=128x128
    steps=20
    tok=""
fi
res="${size%%x*}"
"$cli" prep tests/data/photos -o "$out/dataset" --class woman --resolution "$res" --cluster
# shellcheck disable=SC2086
"$cli" train --data "$out/dataset" --model "$model" $tok --token TOK --class woman --resolution "$res" \
    --steps "${DF_DEMO_TRAIN_STEPS:-20}" --rank 8 --lr 1e-3 --seed 1 --flip --buckets \
    --validation-prompt "a photo of TOK woman" --validate-every 10 --validation-steps "$steps" -o "$out/lora"
# shellcheck disable=SC2086
"$cli" generate --prompt "a photo of TOK woman, portrait, studio lighting" --model "$model" $tok \
    --size "$size" --steps "$steps" --cfg 5 --sampler euler -n 2 --seed 1 --lora "$out/lora/lora.safetensors" \
    -o "$out/images"
echo "demo: the prepared set in $out/dataset (report.txt, contact-sheet.png), the LoRA in $out/lora (validation.png, loss.png), images in $out/images"
