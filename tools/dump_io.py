#!/usr/bin/env python3
"""The one hyoracle dump writer (and reader) of the Python tools (DUMP_FORMAT.md, version 1).

`tools/hf_dump.py` (HF transformers hooks) and `tools/engine_convert.py` (SGLang / vLLM dump
converter) both write their dumps through `write_dump`: one `activations.safetensors` holding the
tensors grouped by element size (8-, 4-, 2-byte, so each payload is aligned), in execution order
(`dump_order`) within each group, plus `manifest.json`. The safetensors writer and reader
are built in (torch + numpy only, no `safetensors` package).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import struct
import sys
import zlib
from collections import OrderedDict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hytools.dataflow import load_dataflow  # noqa: E402  (standard library only)
from lazy_import import torch  # noqa: E402  (imported on first use: --help works without torch)


@functools.lru_cache(maxsize=None)
def _st_dtypes():
    """torch dtype -> (safetensors code, bytes); a function so that importing needs no torch."""
    return {
        torch.float64: ("F64", 8),
        torch.float32: ("F32", 4),
        torch.float16: ("F16", 2),
        torch.bfloat16: ("BF16", 2),
        torch.int64: ("I64", 8),
        torch.int32: ("I32", 4),
        torch.int16: ("I16", 2),
        torch.int8: ("I8", 1),
        torch.uint8: ("U8", 1),
    }


@functools.lru_cache(maxsize=None)
def _st_from_name():
    return {v[0]: k for k, v in _st_dtypes().items()}


# Every spelling of a dtype the tools accept (case-insensitive) -> its canonical name, the one dump
# manifests record in producer.dtype (the same table as the C++ canonical_dtype, tools/cli_util.h).
_DTYPE_SPELLINGS = {
    "bfloat16": ("bf16", "bfloat16"),
    "float16": ("fp16", "f16", "float16", "half"),
    "float32": ("fp32", "f32", "float32", "float"),
    "float64": ("fp64", "f64", "float64", "double"),
}


def canonical_dtype(text: str) -> str:
    """bf16 / BF16 / bfloat16 -> "bfloat16", fp32 / F32 -> "float32", ...; ValueError otherwise."""
    t = str(text).lower()
    for canonical, names in _DTYPE_SPELLINGS.items():
        if t in names:
            return canonical
    raise ValueError(f"{text!r} is not a dtype (bfloat16, float16, float32, float64; any case; also bf16, fp16, fp32, fp64)")


def dtype_arg(text: str) -> str:
    """argparse type of a --dtype option: any spelling to the canonical name."""
    try:
        return canonical_dtype(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e))


def _tensor_bytes(t: torch.Tensor) -> bytes:
    t = t.detach().to("cpu").contiguous()
    if t.dtype in (torch.bfloat16, torch.float16):
        t = t.view(torch.int16)
    return t.numpy().tobytes()


def write_safetensors(path: str, tensors: "OrderedDict[str, torch.Tensor]", metadata=None) -> int:
    """Write `tensors` to `path`. Tensors are laid out by descending element size (stable in the
    given order) so that every payload is aligned to its element size; the header is padded with
    spaces to a multiple of 8 bytes. Returns the number of payload bytes."""
    items = list(tensors.items())
    names = [n for n, _ in items]
    if len(set(names)) != len(names):
        raise ValueError("duplicate tensor name")
    items.sort(key=lambda kv: -_st_dtypes()[kv[1].dtype][1])
    header = OrderedDict()
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs = []
    off = 0
    for name, t in items:
        code, _ = _st_dtypes()[t.dtype]
        b = _tensor_bytes(t)
        header[name] = {"dtype": code, "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    hb = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hb += b" " * ((8 - len(hb) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for b in blobs:
            f.write(b)
    return off


def read_safetensors(path: str) -> "OrderedDict[str, torch.Tensor]":
    import numpy as np

    np_dt = {"F64": np.float64, "F32": np.float32, "F16": np.int16, "BF16": np.int16,
             "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8}
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n].decode("utf-8"))
    base = 8 + n
    out = OrderedDict()
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        arr = np.frombuffer(data[base + b:base + e], dtype=np_dt[info["dtype"]]).copy()
        t = torch.from_numpy(arr).reshape(info["shape"]) if info["shape"] else torch.from_numpy(arr).reshape(())
        if info["dtype"] == "BF16":
            t = t.view(torch.bfloat16)
        elif info["dtype"] == "F16":
            t = t.view(torch.float16)
        out[name] = t
    return out


def read_dump(dump_dir: str):
    """Return (manifest, OrderedDict name -> tensor) of a hyoracle dump."""
    with open(os.path.join(dump_dir, "manifest.json")) as f:
        man = json.load(f)
    tensors = OrderedDict()
    for fn, want in man.get("file_checks", {}).items():
        got = file_check(os.path.join(dump_dir, fn))
        if got != want:
            raise ValueError(f"{dump_dir}/{fn}: size/crc32 {dict(got)} differ from manifest.json's file_checks {want}")
    for fn in man["files"]:
        for k, v in read_safetensors(os.path.join(dump_dir, fn)).items():
            if k in tensors:
                raise ValueError(f"{dump_dir}: duplicate tensor {k}")
            tensors[k] = v
    return man, tensors


_DATAFLOW = load_dataflow()
_TOP_RANK = {"input_ids": 0, "embed": 1, "final_norm": 3, "logits": 4}


@functools.lru_cache(maxsize=None)
def _layer_rank(family: str) -> tuple:
    """Execution rank of each layer step of a family (the optional moe.topk_margin is left out: it
    sorts after the canonical steps, as the committed goldens are laid out), then the cache
    extras."""
    rank = []
    for s in load_dataflow(family)["layer_steps"]:
        if s["role"] != "margin" and s["name"] not in rank:
            rank.append(s["name"])
    return tuple(rank + ["kv.k", "kv.v"])


def order_key(name, family="hy_v3"):
    """Sort key giving the execution order of canonical names: prefill, generate.*, steps.1.*,
    steps.2.*, ...; inside a forward: input_ids, embed, layers in order (the family's table),
    final_norm, logits."""
    rank = _layer_rank(family)
    sec = 0
    rest = name
    if name.startswith("generate."):
        return (1, 0, 0, 0, name)
    m = re.match(r"steps\.(\d+)\.(.*)$", name)
    if m:
        sec, rest = 1 + int(m.group(1)), m.group(2)
    m = re.match(r"layers\.(\d+)\.(.*)$", rest)
    if m:
        r = rank.index(m.group(2)) if m.group(2) in rank else len(rank)
        return (sec, 2, int(m.group(1)), r, rest)
    return (sec, _TOP_RANK.get(rest, 5), 0, 0, rest)


def dump_order(names, family="hy_v3") -> list:
    """Names sorted into execution order (see order_key)."""
    return sorted(names, key=lambda n: order_key(n, family))



def canonical_names(moe_flags, prefix="") -> list:
    """Canonical tensor names of one forward in execution order; moe_flags[L] says whether layer
    L is an MoE layer (the dataflow table's steps that apply to that layer, without the optional
    moe.topk_margin)."""
    before = [s["name"] for s in _DATAFLOW["model_steps"] if s["where"] == "before_layers"]
    after = [s["name"] for s in _DATAFLOW["model_steps"]
             if s["where"] == "after_layers" and not s["name"].startswith("generate.")]
    names = [prefix + n for n in before]
    for L, is_moe in enumerate(moe_flags):
        p = f"{prefix}layers.{L}."
        for s in _DATAFLOW["layer_steps"]:
            if s["role"] == "margin" or s["applies"] == ("dense" if is_moe else "moe"):
                continue
            names.append(p + s["name"])
    names += [prefix + n for n in after]
    return names


def write_dump(out_dir, tensors, manifest) -> str:
    """Write a dump: the tensors (name -> torch tensor, any order) into
    `out_dir/activations.safetensors` (grouped by element size, execution order within a group: see
    write_safetensors; the layout of the committed goldens), and `manifest` (a dict holding at least
    format/version/producer/model/input; `files` is set here) as `out_dir/manifest.json`.
    The execution order is that of the manifest's model.family (hy_v3 when it names none).
    Returns the path of the safetensors file."""
    os.makedirs(out_dir, exist_ok=True)
    family = (manifest.get("model") or {}).get("family", "hy_v3")
    ordered = OrderedDict((n, tensors[n]) for n in dump_order(tensors.keys(), family))
    path = os.path.join(out_dir, "activations.safetensors")
    write_safetensors(path, ordered)
    man = OrderedDict(manifest)
    man.setdefault("format", "hyoracle.dump")
    man.setdefault("version", 1)
    man["files"] = ["activations.safetensors"]
    # Size and CRC-32 (zlib's, as hyoracle's reader computes it) of each file: readers refuse a
    # torn or mixed dump.
    man["file_checks"] = {"activations.safetensors": file_check(path)}
    with open(os.path.join(out_dir, "manifest.json"), "w") as f:
        json.dump(man, f, indent=2)
        f.write("\n")
    return path


def file_check(path: str) -> "OrderedDict":
    """{"bytes": size, "crc32": 8 hex digits} of a file, read in 16 MiB steps."""
    crc = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            crc = zlib.crc32(chunk, crc)
    return OrderedDict(bytes=os.path.getsize(path), crc32="%08x" % crc)


if __name__ == "__main__":
    # A library, not a command: --help (or anything) prints what it is.
    print(__doc__)
