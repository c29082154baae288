#!/usr/bin/env python3
"""Builds a tiny BLIP captioning model with deterministic random weights and
the parity goldens the C tests compare against, from transformers' own BLIP
(BlipForConditionalGeneration, BlipImageProcessor, BertTokenizer), imported
as a pip user would. The tests need neither torch nor this script.

    PYTHONPATH=TRANSFORMERS_SRC:HF_HUB_SRC:tests/golden/pysafetensors \\
        /usr/bin/python3 tests/golden/make_blip_golden.py tests/data/blip_tiny tests/data/golden

writes MODEL_DIR/{config.json, model.safetensors, vocab.txt, photo.png} and
GOLDEN_DIR/tiny_blip.safetensors. For benchmarks,

    ... make_blip_golden.py --base OUT_DIR

writes a model of blip-image-captioning-base's sizes (a 12-layer ViT-B/16
at 384 px, a 12-layer decoder of width 768 with 12 heads, 30524 tokens)
with the library's random initialisation, in f16, and a placeholder
vocabulary of that size. (docs/parity.md says which transformers
and where it comes from.)
"""
import json
import os
import sys

import numpy as np
import torch
from PIL import Image

import transformers
from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor
import safetensors.torch

# A small WordPiece vocabulary in BERT's layout: specials, punctuation,
# words, word pieces, and single letters so any lower-case word has pieces.
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PUNCT = list(".,'!?-:;()\"")
WORDS = ("a an the photo photograph picture of man woman person people dog cat puppy in on with and red blue "
         "green black white suit hat jacket sitting standing walking grass city night street beach smiling "
         "close up portrait young old wearing his her front at is are two there").split()
PIECES = ["##ing", "##ed", "##ly", "##er", "##est"]
LETTERS = [chr(c) for c in range(ord("a"), ord("z") + 1)]
VOCAB = SPECIALS + PUNCT + WORDS + PIECES + [l for l in LETTERS if l not in WORDS] + ["##" + l for l in LETTERS]

TOKENIZER_CASES = [
    "a picture of",
    "A Photo of a MAN, in a red suit!",
    "two dogs walking on the beach",
    "unlikely zebra",
    "caf\u00e9 na\u00efve",
    "don't stop",
    "   spaces\tand\nnewlines   ",
    "",
    "co\u00adoperate",              # a soft hyphen: a format character, dropped
    "smiling \u263a\ufe0f cat",     # a symbol kept in its word, a variation selector (Mn) dropped
    "\u03a3\u03bf\u03c6\u03af\u03b1 \u00c5ngstr\u00f6m \u0129",  # Greek, accents beyond Latin-1
    "dog\u2014cat \u00ab\u00a0hat\u00a0\u00bb",  # dashes and quotes are punctuation; no-break space is space
    "\u732b on \u30c6\u30fc\u30d6\u30eb",  # a CJK ideograph stands alone; katakana does not
    "line\u2028sep \x0bv",             # U+2028 is no BERT space; a vertical tab is a control
    "\u20ac5 and 10%",
]


def meta_prompt_ids(meta, key):
    return json.loads(meta[key + "_prompt_ids"])


def base_model(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(5)
    with open(os.path.join(out_dir, "vocab.txt"), "w") as f:
        f.write("\n".join(["[PAD]"] + ["[unused%d]" % i for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"] +
                          ["w%d" % i for i in range(30522 - 104)]) + "\n")
    config = BlipConfig(text_config=dict(num_attention_heads=12))
    model = BlipForConditionalGeneration(config).eval()
    config.to_json_file(os.path.join(out_dir, "config.json"))
    state = {k: v.half().contiguous() if v.is_floating_point() else v.contiguous()
             for k, v in model.state_dict().items()}
    state.pop("text_decoder.cls.predictions.decoder.bias")
    safetensors.torch.save_file(state, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--base":
        return base_model(sys.argv[2])
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    model_dir, golden_dir = sys.argv[1], sys.argv[2]
    os.makedirs(model_dir, exist_ok=True)
    torch.manual_seed(1234)
    with open(os.path.join(model_dir, "vocab.txt"), "w") as f:
        f.write("\n".join(VOCAB) + "\n")
    tok = BertTokenizer(os.path.join(model_dir, "vocab.txt"))
    # BLIP's own additions: [DEC] begins a caption, [ENC] is for its encoder.
    tok.add_special_tokens({"bos_token": "[DEC]", "additional_special_tokens": ["[ENC]"]})
    base = len(VOCAB)
    assert tok.convert_tokens_to_ids("[DEC]") == base
    config = BlipConfig(
        text_config=dict(vocab_size=base + 2, hidden_size=32, encoder_hidden_size=32, intermediate_size=48,
                         num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=40,
                         bos_token_id=base, eos_token_id=tok.convert_tokens_to_ids("[SEP]"),
                         sep_token_id=tok.convert_tokens_to_ids("[SEP]"), pad_token_id=0),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           image_size=32, patch_size=8),
    )
    model = BlipForConditionalGeneration(config).eval()
    # Random weights with spread (the library's initialisation leaves the
    # vision tower near zero), the norms near one.
    g = torch.Generator().manual_seed(99)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm.weight" in name or "layer_norm" in name and name.endswith("weight") or \
                    "layernorm.weight" in name:
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p.shape[1] if p.dim() >= 2 else 16
                if p.dim() == 4:
                    fan_in = p.shape[1] * p.shape[2] * p.shape[3]
                p.copy_(torch.randn(p.shape, generator=g) * (1.5 / fan_in ** 0.5))
    head = model.text_decoder.cls.predictions
    assert head.decoder.bias is head.bias  # one tensor under two names
    config.to_json_file(os.path.join(model_dir, "config.json"))
    # Every tensor once, as a safetensors checkpoint holds them (the LM head's
    # bias is one tensor under two names; the library loads it without the second).
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    state.pop("text_decoder.cls.predictions.decoder.bias")
    safetensors.torch.save_file(state, os.path.join(model_dir, "model.safetensors"), metadata={"format": "pt"})

    # A photo, through BLIP's own preprocessing (bicubic resize, CLIP's mean and std).
    ys, xs = np.mgrid[0:40, 0:48]
    rgb = np.stack([(xs * 5 + ys * 2) % 256, (ys * 6 + 30) % 256, ((xs - ys) * 4 + 128) % 256], -1).astype(np.uint8)
    Image.fromarray(rgb).save(os.path.join(model_dir, "photo.png"))
    proc = BlipImageProcessor(size={"height": 32, "width": 32})
    pixels = proc(Image.open(os.path.join(model_dir, "photo.png")), return_tensors="pt")["pixel_values"]

    out = {}
    meta = {"transformers": transformers.__version__, "torch": torch.__version__}
    with torch.no_grad():
        embeds = model.vision_model(pixel_values=pixels)[0]
        out["pixel_values"] = pixels[0].contiguous()
        out["image_embeds"] = embeds[0].contiguous()
        ids = [base] + tok.encode("a man in a red suit", add_special_tokens=False)
        logits = model.text_decoder(input_ids=torch.tensor([ids]), encoder_hidden_states=embeds,
                                    encoder_attention_mask=torch.ones(embeds.shape[:2], dtype=torch.long),
                                    return_dict=True).logits
        out["decoder_logits"] = logits[0].contiguous()
        meta["decoder_ids"] = json.dumps(ids)
        # Captions: unconditional, and after a prompt; greedy (the default),
        # and beam search (3 beams, at least 5 tokens).
        for key, prompt, extra in (("caption", None, {}), ("prompted", "a picture of", {}),
                                   ("beam", None, dict(num_beams=3, min_length=5)),
                                   ("beam_prompted", "a picture of", dict(num_beams=3, min_length=5))):
            if prompt is None:
                gen = model.generate(pixel_values=pixels, max_length=12, **extra)
            else:
                enc = tok(prompt, return_tensors="pt")
                meta[key + "_prompt_ids"] = json.dumps(enc["input_ids"][0].tolist())
                gen = model.generate(pixel_values=pixels, input_ids=enc["input_ids"], max_length=12, **extra)
            meta[key + "_ids"] = json.dumps(gen[0].tolist())
            meta[key + "_text"] = tok.decode(gen[0], skip_special_tokens=True)
            # The margin of each greedy choice, so a test knows its ties are not close.
            seq = gen[0].tolist()
            margins = []
            for t in range(1, len(seq)):
                lg = model.text_decoder(input_ids=torch.tensor([seq[:t]]), encoder_hidden_states=embeds,
                                        return_dict=True).logits[0, -1]
                top = torch.topk(lg, 2).values
                margins.append(float(top[0] - top[1]))
            first = 1 if prompt is None else len(meta_prompt_ids(meta, key)) - 1
            meta[key + "_min_margin"] = repr(min(margins[first - 1:] or [0.0]))
    meta["tokenizer_cases"] = json.dumps([[text, tok.encode(text, add_special_tokens=False)]
                                          for text in TOKENIZER_CASES])
    meta["decode_cases"] = json.dumps([[ids_, tok.decode(ids_, skip_special_tokens=True)] for ids_ in (
        [base, tok.convert_tokens_to_ids("a"), tok.convert_tokens_to_ids("man"), tok.convert_tokens_to_ids("'"),
         tok.convert_tokens_to_ids("s"), tok.convert_tokens_to_ids("hat"), tok.convert_tokens_to_ids("."),
         tok.convert_tokens_to_ids("[SEP]")],
        tok.encode("walking dogs, smiling!", add_special_tokens=False),
        tok.encode("unlikely zebra", add_special_tokens=False))])
    for k, v in out.items():
        out[k] = v.float().contiguous()
    safetensors.torch.save_file(out, os.path.join(golden_dir, "tiny_blip.safetensors"),
                                metadata={k: str(v) for k, v in meta.items()})
    print(json.dumps({k: meta[k] for k in meta if k.endswith("_text") or k.endswith("_ids") or "margin" in k},
                     indent=1))


if __name__ == "__main__":
    main()
