"""Reading an engine dump: the config sizes the layouts depend on, the dumper's .pt files (file
name tags, meta, tensor), and the checkpoint's expert bias for ordering top-k."""

from __future__ import annotations

import json
import os
import re
import struct

from hytools.checkpoint import INDEX, read_config, read_header
from hytools.convert_rules import PREFIX, ConvertError, classify
from lazy_import import torch  # imported on first use


class Sizes:
    """The config fields the layouts depend on. Every field is required."""

    def __init__(self, config_path, engine):
        try:
            cfg, self.config_sha256 = read_config(config_path)
        except (OSError, ValueError) as e:
            raise ConvertError(f"{config_path}: cannot read config.json ({e})")

        def need(key):
            if key not in cfg:
                raise ConvertError(f"{config_path}: missing field {key}")
            return cfg[key]
        self.model_type = need("model_type")
        self.layers = int(need("num_hidden_layers"))
        self.H = int(need("hidden_size"))
        self.nq = int(need("num_attention_heads"))
        self.nkv = int(need("num_key_value_heads"))
        self.d = int(cfg["head_dim"]) if cfg.get("head_dim") else self.H // self.nq
        self.V = int(need("vocab_size"))
        self.E = int(need("num_experts"))
        self.k = int(need("num_experts_per_tok"))
        self.dense_I = int(need("intermediate_size"))
        # SGLang sizes experts by moe_intermediate_size, vLLM by expert_hidden_dim (same value in
        # the Hy3 configs).
        self.moe_I = int(need("moe_intermediate_size" if engine == "sglang" else "expert_hidden_dim"))
        self.shared_I = self.moe_I * int(need("num_shared_experts"))
        self.first_dense = int(need("first_k_dense_replace"))

    def is_moe(self, L):
        return L >= self.first_dense


def parse_tags(filename):
    """'step=0___rank=1___name=x.pt' -> {'step': 0, 'rank': 1, 'name': 'x'}; None if not a
    dumper file name."""
    if not filename.endswith(".pt"):
        return None
    tags = {}
    for part in filename[:-3].split("___"):
        k, sep, v = part.partition("=")
        if not sep:
            return None
        tags[k] = int(v) if re.fullmatch(r"-?\d+", v) else v
    return tags if "name" in tags else None


def find_dump_dir(path):
    """DIR itself when it holds .pt files, else its single sub-directory that does (the dumper
    writes <dir>/<exp_name>/*.pt)."""
    if not os.path.isdir(path):
        raise ConvertError(f"{path}: not a directory")
    if any(f.endswith(".pt") for f in os.listdir(path)):
        return path
    subs = sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d))
                  and any(f.endswith(".pt") for f in os.listdir(os.path.join(path, d))))
    if len(subs) == 1:
        return os.path.join(path, subs[0])
    if not subs:
        raise ConvertError(f"{path}: no .pt dumper files in it or in a sub-directory")
    raise ConvertError(f"{path}: several dump directories ({', '.join(subs)}); pass one of them")


class Record:
    """One dumper file: its tags (file name, then meta), its path and its tensor once loaded."""

    def __init__(self, path, tags):
        self.path = path
        self.tags = tags
        self.name = tags["name"]
        self.value = None

    def load(self):
        try:
            obj = torch.load(self.path, map_location="cpu")
        except Exception as e:  # a truncated or foreign file
            raise ConvertError(f"{self.path}: cannot load ({type(e).__name__}: {e})")
        if isinstance(obj, dict) and "value" in obj:
            meta = obj.get("meta") or {}
            if not isinstance(meta, dict):
                raise ConvertError(f"{self.path}: 'meta' is {type(meta).__name__}, expected a dict")
            for k, v in meta.items():
                if k in ("step", "rank", "forward_pass_id", "layer_id", "dump_index", "tp_rank", "tp_size"):
                    self.tags[k] = v
            for k, v in meta.items():  # sglang_parallel_info / vllm_parallel_info
                if k.endswith("_parallel_info") and isinstance(v, dict):
                    for kk in ("tp_rank", "tp_size"):
                        if kk in v:
                            self.tags[kk] = v[kk]
            obj = obj["value"]
        if not isinstance(obj, torch.Tensor):
            raise ConvertError(f"{self.path}: tensor {self.name}: holds {type(obj).__name__}, expected a tensor")
        self.value = obj.detach().to("cpu")

    @property
    def step(self):
        for k in ("step", "forward_pass_id"):
            if k in self.tags:
                return int(self.tags[k])
        raise ConvertError(f"{self.path}: tensor {self.name}: no step or forward_pass_id tag")

    @property
    def rank(self):
        """TP rank: meta's parallel info, else a tp_rank tag, else the global rank."""
        for k in ("tp_rank", "rank"):
            if k in self.tags:
                return int(self.tags[k])
        raise ConvertError(f"{self.path}: tensor {self.name}: no rank tag")


def scan(dump_dir, engine, ignore):
    """Classify every file by name; load the ones that are used. Returns the used records and a
    count of skipped ones. An unknown name stops the conversion."""
    used, skipped, ignored = [], 0, 0
    for fn in sorted(os.listdir(dump_dir)):
        path = os.path.join(dump_dir, fn)
        if not fn.endswith(".pt"):
            continue
        tags = parse_tags(fn)
        if tags is None:
            raise ConvertError(f"{path}: file name is not 'key=value___...___name=NAME.pt' as the dumper writes")
        if any(re.search(rx, tags["name"]) for rx in ignore):
            ignored += 1
            continue
        c = classify(tags["name"], engine)
        if c is None:
            raise ConvertError(
                f"{path}: tensor {tags['name']}: not an input/output of a module of {engine}'s "
                f"HYV3ForCausalLM (expected e.g. {PREFIX}model.layers.L.self_attn.qkv_proj.output); "
                f"pass --ignore REGEX to skip it")
        if c[0] == "skip":
            skipped += 1
            continue
        r = Record(path, tags)
        r.kind, r.layer, r.role = c
        r.load()
        used.append(r)
    if not any(r.kind not in ("input_ids", "positions", "seq_lens") for r in used):
        raise ConvertError(f"{dump_dir}: no module tensor of the Hy3 model ({PREFIX}model.*); SGLang's dumper "
                           f"writes them with DUMPER_NON_INTRUSIVE_MODE=all (its default 'core' writes only input_ids etc.)")
    return used, skipped, ignored


def read_checkpoint_tensor(ckpt, names):
    """The first of `names` found in a checkpoint directory (model.safetensors or a sharded
    index), read by seeking to it. Returns a float32 tensor or None."""
    try:
        return _read_checkpoint_tensor(ckpt, names)
    except (OSError, ValueError, KeyError, struct.error) as e:
        raise ConvertError(f"{ckpt}: cannot read {names[0]} from the checkpoint ({type(e).__name__}: {e})")


def _read_checkpoint_tensor(ckpt, names):
    idx = os.path.join(ckpt, INDEX)
    if os.path.exists(idx):
        with open(idx) as f:
            wm = json.load(f)["weight_map"]
        where = [(n, os.path.join(ckpt, wm[n])) for n in names if n in wm]
    else:
        where = [(n, os.path.join(ckpt, "model.safetensors")) for n in names]
    dt = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16, "F64": torch.float64}
    for n, path in where:
        with open(path, "rb") as f:
            header, base = read_header(f)
            if n not in header:
                continue
            info = header[n]
            b, e = info["data_offsets"]
            f.seek(base + b)
            data = bytearray(f.read(e - b))
        if info["dtype"] not in dt:
            raise ConvertError(f"{path}: {n} has dtype {info['dtype']}, expected F32/BF16/F16/F64")
        return torch.frombuffer(data, dtype=dt[info["dtype"]]).reshape(info["shape"]).float()
    return None


