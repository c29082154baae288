"""safetensors.torch for the stand-in package: load_file, save_file, load, save."""
import json
import struct

from . import _read, _tensor


def _dtype_name(t):
    import torch
    return {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
            torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
            torch.bool: "BOOL"}[t.dtype]


def load(data):
    header, _, base = _read(data)
    return {k: _tensor(data, base, v) for k, v in header.items()}


def load_file(filename, device="cpu"):
    with open(filename, "rb") as f:
        out = load(f.read())
    return {k: v.to(device) for k, v in out.items()} if str(device) != "cpu" else out


def save(tensors, metadata=None):
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for k in sorted(tensors):
        t = tensors[k].detach().contiguous().cpu()
        raw = t.view(-1).view(__import__("torch").int16).numpy().tobytes() if t.dtype.__repr__() == "torch.bfloat16" \
            else t.numpy().tobytes()
        header[k] = {"dtype": _dtype_name(t), "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def save_file(tensors, filename, metadata=None):
    with open(filename, "wb") as f:
        f.write(save(tensors, metadata))
