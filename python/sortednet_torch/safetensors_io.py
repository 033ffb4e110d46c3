"""safetensors files: the `safetensors` package when installed, else this small reader/writer.

Layout (huggingface/safetensors): u64 little-endian header length, a JSON header
`{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}`, then the raw
little-endian bytes. Only F32 and I32 occur in sortednet checkpoints; I64 is how PyTorch stores
integer counters (BatchNorm's num_batches_tracked) in a state dict.
"""
import json
import struct

import numpy as np

_DTYPES = {"F32": np.float32, "I32": np.int32, "I64": np.int64}
_NAMES = {np.dtype(np.float32): "F32", np.dtype(np.int32): "I32", np.dtype(np.int64): "I64"}


def encode(tensors, metadata=None):
    """{name: numpy array} (+ str metadata) → bytes; names sorted, header padded to 8 bytes."""
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offset = 0
    names = sorted(tensors)
    arrays = []
    for name in names:
        a = np.asarray(tensors[name], order="C")  # not ascontiguousarray: it makes scalars 1-d
        if a.dtype not in _NAMES:
            raise ValueError(f"safetensors: '{name}' has dtype {a.dtype}; only float32, int32 and int64 are written")
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)
        header[name] = {"dtype": _NAMES[a.dtype], "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
        arrays.append(a)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - (8 + len(text)) % 8) % 8)
    return b"".join([struct.pack("<Q", len(text)), text] + [a.tobytes() for a in arrays])


def decode(data, source="safetensors data"):
    """bytes → ({name: numpy array}, metadata); clear errors for truncated or corrupt files."""
    if len(data) < 8:
        raise ValueError(f"{source}: file too short ({len(data)} bytes) to be safetensors")
    (n,) = struct.unpack("<Q", data[:8])
    if n <= 0 or 8 + n > len(data):
        raise ValueError(f"{source}: header length {n} does not fit a file of {len(data)} bytes (corrupt or truncated)")
    try:
        header = json.loads(data[8 : 8 + n].decode("utf-8"))
    except ValueError as e:
        raise ValueError(f"{source}: header is not valid JSON ({e})") from e
    metadata = header.pop("__metadata__", {}) or {}
    base = 8 + n
    out = {}
    for name, h in header.items():
        begin, end = h.get("data_offsets", [None, None])
        if begin is None or not (0 <= begin <= end and base + end <= len(data)):
            raise ValueError(f"{source}: tensor '{name}' offsets [{begin}, {end}] lie outside the file (truncated?)")
        if h["dtype"] not in _DTYPES:
            raise ValueError(f"{source}: tensor '{name}' has dtype {h['dtype']}; only F32, I32 and I64 are supported")
        dt = np.dtype(_DTYPES[h["dtype"]]).newbyteorder("<")
        size = int(np.prod(h["shape"], dtype=np.int64))
        if end - begin != size * dt.itemsize:
            raise ValueError(f"{source}: tensor '{name}' has {end - begin} bytes for shape {h['shape']}")
        a = np.frombuffer(data, dtype=dt, count=size, offset=base + begin).reshape(h["shape"])
        out[name] = a.astype(dt.newbyteorder("="), copy=True)
    return out, metadata


try:  # the official package, when installed, reads; writing stays here (byte-identical to the TypeScript writer)
    from safetensors.numpy import load as _st_load

    def decode(data, source="safetensors data", _fallback=decode):  # noqa: F811
        try:
            tensors = _st_load(bytes(data))
        except Exception:
            return _fallback(data, source)  # the same clear errors as without the package
        (n,) = struct.unpack("<Q", data[:8])
        return tensors, json.loads(data[8 : 8 + n]).get("__metadata__", {}) or {}

except ImportError:
    pass
