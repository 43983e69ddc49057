"""A checkpoint directory and its config.json: the files, their headers, sha256 digests and the
weights fingerprint that dump manifests record as `model.weights_fingerprint`."""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections import OrderedDict

from dump_io import read_safetensors

INDEX = "model.safetensors.index.json"


def sha256_file(path) -> str:
    """Lowercase hex sha256 of a file's bytes, read in 16 MiB steps."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            h.update(chunk)
    return h.hexdigest()


def read_config(path):
    """(config.json as a dict, sha256 of its bytes). OSError / ValueError for an unreadable or
    malformed file."""
    with open(path, "rb") as f:
        cfg = json.loads(f.read())
    return cfg, sha256_file(path)


def checkpoint_files(ckpt_dir) -> list:
    """The safetensors files of a checkpoint directory, sorted: those the shard index lists when
    model.safetensors.index.json exists, else every *.safetensors in the directory."""
    idx = os.path.join(ckpt_dir, INDEX)
    if os.path.exists(idx):
        with open(idx) as f:
            return sorted(set(json.load(f)["weight_map"].values()))
    return sorted(fn for fn in os.listdir(ckpt_dir) if fn.endswith(".safetensors"))


def read_header(f):
    """(header dict, offset of the data section) of an open safetensors file; leaves the file
    position after the header. struct.error / ValueError for a malformed file."""
    (n,) = struct.unpack("<Q", f.read(8))
    header = json.loads(f.read(n))
    return header, 8 + n


def read_checkpoint(ckpt_dir) -> "OrderedDict":
    """Every tensor of a checkpoint directory (checkpoint_files), name -> torch tensor."""
    W = OrderedDict()
    for fn in checkpoint_files(ckpt_dir):
        W.update(read_safetensors(os.path.join(ckpt_dir, fn)))
    return W


# Tensors up to _WHOLE bytes are hashed whole; larger ones by three windows of _WINDOW bytes
# (start, middle, end): at most 12 KiB read per tensor, so a multi-hundred-GB checkpoint takes
# seconds.
_WHOLE = 12288
_WINDOW = 4096


def sampled_windows(n):
    """The [begin, end) byte ranges of an n-byte tensor that the fingerprint hashes."""
    if n <= _WHOLE:
        return [(0, n)]
    half = _WINDOW // 2
    return [(0, _WINDOW), (n // 2 - half, n // 2 + half), (n - _WINDOW, n)]


def weights_fingerprint(ckpt_dir) -> str:
    """"sampled-sha256:" + hex sha256 over every tensor of the checkpoint's safetensors files
    (checkpoint_files), in bytewise order of the names: name, 0x00, dtype as in the header, 0x00,
    shape as decimal dims joined by "," (empty for a scalar), 0x00, byte count n, 0x00, then the
    bytes of sampled_windows(n). hyoracle's C++ dump writer defines it the same way, so dumps of
    the same weights carry the same fingerprint whichever tool wrote them.
    ValueError for a directory without safetensors files, a tensor name in two files or a
    truncated file."""
    files = checkpoint_files(ckpt_dir)
    if not files:
        raise ValueError(f"{ckpt_dir}: no *.safetensors files to fingerprint")
    entries = []
    for fn in files:
        path = os.path.join(ckpt_dir, fn)
        with open(path, "rb") as f:
            header, base = read_header(f)
        for name, info in header.items():
            if name == "__metadata__":
                continue
            b, e = info["data_offsets"]
            entries.append((name.encode("utf-8"), info["dtype"], info["shape"], path, base + b, e - b))
    entries.sort(key=lambda x: x[0])
    for a, b in zip(entries, entries[1:]):
        if a[0] == b[0]:
            raise ValueError(f"{ckpt_dir}: tensor {a[0].decode()} is in both {a[3]} and {b[3]}")
    h = hashlib.sha256()
    opened = {}
    try:
        for name, dtype, shape, path, off, n in entries:
            h.update(name + b"\0" + dtype.encode("utf-8") + b"\0" + ",".join(str(int(d)) for d in shape).encode()
                     + b"\0" + str(n).encode() + b"\0")
            if path not in opened:
                opened[path] = open(path, "rb")
            f = opened[path]
            for b, e in sampled_windows(n):
                f.seek(off + b)
                data = f.read(e - b)
                if len(data) != e - b:
                    raise ValueError(f"{path}: tensor {name.decode()} ends past the end of the file")
                h.update(data)
    finally:
        for f in opened.values():
            f.close()
    return "sampled-sha256:" + h.hexdigest()
