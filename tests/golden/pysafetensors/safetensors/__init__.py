"""A pure-Python stand-in for the `safetensors` package (whose wheel needs
Rust and PyPI, neither reachable here), enough for diffusers to read and
write .safetensors files. Used only by the golden script."""
import json
import struct

import numpy as np

__version__ = "0.4.1"

_NP = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
       "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_, "BF16": np.int16}


def _read(data):
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", None) or {}
    base = 8 + n
    return header, meta, base


def _tensor(data, base, desc):
    import torch
    begin, end = desc["data_offsets"]
    arr = np.frombuffer(data, dtype=_NP[desc["dtype"]], count=(end - begin) // np.dtype(_NP[desc["dtype"]]).itemsize,
                        offset=base + begin).copy().reshape(desc["shape"])
    t = torch.from_numpy(arr)
    if desc["dtype"] == "BF16":
        t = t.view(torch.bfloat16)
    return t


class safe_open:
    def __init__(self, filename, framework="pt", device="cpu"):
        with open(filename, "rb") as f:
            self._data = f.read()
        self._header, self._meta, self._base = _read(self._data)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def keys(self):
        return list(self._header.keys())

    def metadata(self):
        return self._meta

    def get_tensor(self, name):
        return _tensor(self._data, self._base, self._header[name])


# diffusers reaches safetensors.torch through the package, as the real one allows.
from . import torch  # noqa: E402,F401
