#!/usr/bin/env python3
"""Convert SGLang dumper files or vLLM forward-hook dumps of a Hy3 (`hy_v3`) run into a hyoracle
dump (DUMP_FORMAT.md, version 1).

    python3 tools/engine_convert.py --from sglang|vllm DIR --config CONFIG.json --out DUMP
        [--tp N] [--steps A:B] [--checkpoint CKPT] [--generated 5,7,...] [--ignore REGEX]...

Input: a directory of `.pt` files as SGLang's dumper writes them (python/sglang/srt/debug_utils/
dumper.py: one file per dumped tensor, named `step=S___rank=R___dump_index=I___name=N___...pt`,
holding `{"value": tensor, "meta": {...}}`; the older dumper's `forward_pass_id=F___rank=R___
name=N___dump_index=I.pt` holding the bare tensor is read too), or as `tools/vllm_hooks.py` writes
them from a vLLM model (the same layout). Tensor names are those of the dumper's non-intrusive
mode (`DUMPER_NON_INTRUSIVE_MODE=all`): `non_intrusive__<module path>.output[.i]` and
`.inputs.<i>`, module paths of the engines' `HYV3ForCausalLM` (docs/engine-dumps.md lists the
sources).

What the conversion undoes (docs/engine-dumps.md has the table):
- fused QKV: `self_attn.qkv_proj.output` of TP rank r is [T, (nq/tp + 2·max(1, nkv/tp))·d] laid
  out q | k | v; heads of the ranks are concatenated in rank order (KV heads replicated over
  tp/nkv ranks when nkv < tp are taken once);
- fused gate/up: `gate_up_proj.output` of rank r is [gate_r | up_r], I/tp columns each; it has no
  canonical name, so it is checked (silu(gate)·up against `down_proj`'s input) and not written;
- fused residual + RMSNorm: a decoder layer returns (hidden, residual); layers.L.out =
  hidden + residual (one rounding in the dump's dtype, as the engines' fused add kernels do);
  `post_attention_layernorm` returns (post_norm, resid_mid);
- tensor parallelism: column-parallel outputs concatenated, row-parallel partial sums with
  reduce_results=False (shared experts, SGLang's routed experts) summed over ranks in float64
  and rounded once to the dump's dtype, replicated tensors taken from the lowest rank;
- batching: each forward pass (dumper step) must hold one sequence; the first selected step is
  the prefill, each later one a decode step `steps.S.*` with one token.

Anything the converter does not know (a module that is not part of the Hy3 model, a tensor whose
shape does not fit the config) stops it with one line naming the file, the tensor and what was
expected, exit status 2. `--ignore REGEX` skips engine tensor names on purpose.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import struct
import sys
from collections import OrderedDict, defaultdict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dump_io import write_dump  # noqa: E402
from lazy_import import torch  # noqa: E402  (imported on first use: --help works without torch)

PREFIX = "non_intrusive__"


class ConvertError(Exception):
    """A one-line reason the input cannot be converted (exit status 2)."""


# --------------------------------------------------------------------------------------------
# model sizes (config.json; no class defaults)
# --------------------------------------------------------------------------------------------

class Sizes:
    """The config fields the layouts depend on. Every field is required."""

    def __init__(self, config_path, engine):
        try:
            with open(config_path, "rb") as f:
                raw = f.read()
            cfg = json.loads(raw)
        except (OSError, ValueError) as e:
            raise ConvertError(f"{config_path}: cannot read config.json ({e})")
        self.config_sha256 = hashlib.sha256(raw).hexdigest()

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


# --------------------------------------------------------------------------------------------
# engine tensor names -> what they are
# --------------------------------------------------------------------------------------------

_L = r"model\.layers\.(\d+)\."

# (regex on the dumper name without "non_intrusive__", kind, canonical template or role).
# kind: repl (replicated over TP ranks), heads_q / heads_kv (per-rank heads), cols (per-rank
# column block), qkv, psum (row-parallel partial sums), pair_h / pair_r (decoder layer output),
# topk_w / topk_ids, gate_up / act (the gate/up check), logits, input_ids, positions, seq_lens.
_COMMON_RULES = [
    (r"input_ids", "input_ids", None),
    (r"positions", "positions", None),
    (r"seq_lens", "seq_lens", None),
    (r"model\.embed_tokens\.output", "repl", "embed"),
    (_L + r"input_layernorm\.output(\.0)?", "repl", "input_norm"),
    (_L + r"self_attn\.qkv_proj\.output", "qkv", None),
    (_L + r"self_attn\.q_norm\.output", "heads_q", "attn.q_norm"),
    (_L + r"self_attn\.k_norm\.output", "heads_kv", "attn.k_norm"),
    (_L + r"self_attn\.rotary_emb\.output\.0", "heads_q", "attn.q_rope"),
    (_L + r"self_attn\.rotary_emb\.output\.1", "heads_kv", "attn.k_rope"),
    (_L + r"self_attn\.attn\.output", "cols", "attn.context"),
    (_L + r"self_attn\.o_proj\.output", "repl", "attn.out"),
    (_L + r"post_attention_layernorm\.output\.0", "repl", "post_norm"),
    (_L + r"post_attention_layernorm\.output\.1", "repl", "resid_mid"),
    (_L + r"mlp\.output", "repl", "mlp.out"),
    (_L + r"mlp\.gate\.output", "repl", "moe.router_logits"),
    (_L + r"mlp\.shared_mlp\.output", "psum", "moe.shared_out"),
    (_L + r"output\.0", "pair_h", None),
    (_L + r"output\.1", "pair_r", None),
    (_L + r"mlp\.gate_up_proj\.output", "gate_up", "mlp"),
    (_L + r"mlp\.down_proj\.inputs\.0", "act", "mlp"),
    (_L + r"mlp\.shared_mlp\.gate_up_proj\.output", "gate_up", "shared"),
    (_L + r"mlp\.shared_mlp\.down_proj\.inputs\.0", "act", "shared"),
    (r"model\.norm\.output(\.0)?", "repl", "final_norm"),
    (r"logits_processor\.output(\.next_token_logits)?", "logits", None),
]
_ENGINE_RULES = {
    # SGLang: TopK module returns StandardTopKOutput(topk_weights, topk_ids, router_logits);
    # FusedMoE(reduce_results=False) returns this rank's part of the routed experts' sum.
    "sglang": [
        (_L + r"mlp\.topk\.output\.0", "topk_w", None),
        (_L + r"mlp\.topk\.output\.1", "topk_ids", None),
        (_L + r"mlp\.experts\.output", "psum", "moe.routed_out"),
    ],
    # vLLM: FusedMoE gets the shared experts and returns routed + shared, all-reduced (= mlp.out);
    # top-k ids are not a module output (use `hyoracle compare --routed-experts`).
    "vllm": [],
}

# Modules of the engines' HYV3ForCausalLM whose other inputs/outputs are known and not needed.
_KNOWN_MODULES = re.compile(
    r"(|model|model\.embed_tokens|model\.norm|lm_head|logits_processor(\..+)?|model\.layers\.\d+"
    r"|model\.layers\.\d+\.(input_layernorm|post_attention_layernorm|self_attn|mlp"
    r"|self_attn\.(qkv_proj|o_proj|q_norm|k_norm|rotary_emb|hpc_rope_norm)|self_attn\.attn(\..+)?"
    r"|mlp\.(gate_up_proj|down_proj|act_fn|gate|topk)|mlp\.experts(\..+)?"
    r"|mlp\.shared_mlp|mlp\.shared_mlp\.(gate_up_proj|down_proj|act_fn)))")
_KNOWN_CORE = {"req_pool_indices", "rids"}


def _split_module(name):
    """'model.layers.3.mlp.output.1' -> ('model.layers.3.mlp', 'output.1'); root -> ('', ...)."""
    for sep in (".output", ".inputs."):
        i = name.rfind(sep)
        if i >= 0:
            return name[:i], name[i + 1:]
    if name.startswith("output") or name.startswith("inputs."):
        return "", name
    return None, None


def classify(name, engine):
    """Return (kind, layer or None, role) for a use, ("skip", None, None) for a known tensor that
    has no canonical counterpart, None for an unknown name."""
    core = name[len(PREFIX):] if name.startswith(PREFIX) else name
    for rx, kind, role in _COMMON_RULES + _ENGINE_RULES[engine]:
        m = re.fullmatch(rx, core)
        if m:
            if kind in ("input_ids", "positions", "seq_lens") and name != core:
                break  # non_intrusive__input_ids would be a module named input_ids: unknown
            L = int(m.group(1)) if rx.startswith(_L) else None
            return kind, L, role
    if name == core:
        return ("skip", None, None) if core in _KNOWN_CORE else None
    mod, sub = _split_module(core)
    if mod is not None and _KNOWN_MODULES.fullmatch(mod) and re.fullmatch(r"(output|inputs)(\.\w+)*", sub):
        return "skip", None, None
    return None


# --------------------------------------------------------------------------------------------
# reading the dumper files
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# undoing the layouts (pure functions over tensors)
# --------------------------------------------------------------------------------------------

def local_heads(n_total, tp):
    """Heads per TP rank: n/tp, or 1 when n < tp (KV heads replicated over tp/n ranks)."""
    return max(1, n_total // tp)


def check_tp_split(n_total, tp, what):
    if n_total >= tp and n_total % tp:
        raise ConvertError(f"{what}: {n_total} heads do not split over --tp {tp}")
    if n_total < tp and tp % n_total:
        raise ConvertError(f"{what}: --tp {tp} is not a multiple of {n_total} heads")


def gather_heads(shards, n_total, tp):
    """Per-rank head blocks [T, n_r, d] (rank order) -> [T, n_total, d]. With n_total >= tp rank r
    holds heads [r·n_r, (r+1)·n_r); with n_total < tp head h lives on ranks h·tp/n .. and the
    first of them is taken."""
    if n_total >= tp:
        return torch.cat(shards, dim=1)
    rep = tp // n_total
    return torch.cat([shards[h * rep] for h in range(n_total)], dim=1)


def split_qkv(t, nq_r, nkv_r, d):
    """One rank's fused qkv_proj output [T, (nq_r + 2·nkv_r)·d], laid out q | k | v (vLLM and
    SGLang: qkv.split([q_size, kv_size, kv_size], -1)) -> q [T, nq_r, d], k, v [T, nkv_r, d]."""
    T = t.shape[0]
    q, k, v = t.split([nq_r * d, nkv_r * d, nkv_r * d], dim=-1)
    return q.reshape(T, nq_r, d), k.reshape(T, nkv_r, d), v.reshape(T, nkv_r, d)


def split_gate_up(t, width):
    """One rank's MergedColumnParallelLinear([I, I]) output [T, 2·width] -> (gate, up)."""
    return t[:, :width], t[:, width:]


def layer_out(hidden, residual):
    """A decoder layer's (hidden, residual) -> the residual stream after the layer,
    hidden + residual, rounded once to their dtype (the add of the next fused add-RMSNorm)."""
    return hidden + residual


def partial_sum(parts):
    """Row-parallel partial outputs of the TP ranks -> their sum, accumulated in float64 and
    rounded once to the parts' dtype."""
    acc = parts[0].to(torch.float64)
    for p in parts[1:]:
        acc = acc + p.to(torch.float64)
    return acc.to(parts[0].dtype)


def order_topk(ids, weights, corrected=None):
    """Reorder each row of top-k ids / weights by descending corrected score corrected[t, id]
    ([T, E]) or, without it, by descending weight; exact ties to the lower id. ids, weights
    [T, k]. Returns (ids as I32, weights)."""
    ids = ids.long()
    out_i, out_w = torch.empty_like(ids), torch.empty_like(weights)
    for t in range(ids.shape[0]):
        row = ids[t].tolist()
        vals = corrected[t, ids[t]].tolist() if corrected is not None else weights[t].tolist()
        order = sorted(range(len(row)), key=lambda j: (-vals[j], row[j]))
        out_i[t] = ids[t, order]
        out_w[t] = weights[t, order]
    return out_i.to(torch.int32), out_w


def act_tolerance(dtype):
    """rel-L2 bound of silu(gate)·up against the engine's activation output: a few roundings of
    the dtype (a [gate | up] swap gives an error of order 1)."""
    return {torch.float64: 1e-9, torch.float32: 1e-4}.get(dtype, 5e-2)


# --------------------------------------------------------------------------------------------
# the checkpoint's expert bias (only for ordering top-k like DUMP_FORMAT asks)
# --------------------------------------------------------------------------------------------

def read_checkpoint_tensor(ckpt, names):
    """The first of `names` found in a checkpoint directory (model.safetensors or a sharded
    index), read by seeking to it. Returns a float32 tensor or None."""
    try:
        return _read_checkpoint_tensor(ckpt, names)
    except (OSError, ValueError, KeyError, struct.error) as e:
        raise ConvertError(f"{ckpt}: cannot read {names[0]} from the checkpoint ({type(e).__name__}: {e})")


def _read_checkpoint_tensor(ckpt, names):
    idx = os.path.join(ckpt, "model.safetensors.index.json")
    if os.path.exists(idx):
        with open(idx) as f:
            wm = json.load(f)["weight_map"]
        where = [(n, os.path.join(ckpt, wm[n])) for n in names if n in wm]
    else:
        where = [(n, os.path.join(ckpt, "model.safetensors")) for n in names]
    dt = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16, "F64": torch.float64}
    for n, path in where:
        with open(path, "rb") as f:
            (hn,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(hn))
            if n not in header:
                continue
            info = header[n]
            b, e = info["data_offsets"]
            f.seek(8 + hn + b)
            data = bytearray(f.read(e - b))
        if info["dtype"] not in dt:
            raise ConvertError(f"{path}: {n} has dtype {info['dtype']}, expected F32/BF16/F16/F64")
        return torch.frombuffer(data, dtype=dt[info["dtype"]]).reshape(info["shape"]).float()
    return None


# --------------------------------------------------------------------------------------------
# assembling one forward pass
# --------------------------------------------------------------------------------------------

class Assembler:
    def __init__(self, sizes, engine, tp, bias_for_layer):
        self.s = sizes
        self.engine = engine
        self.tp = tp
        self.bias_for_layer = bias_for_layer
        self.gate_up_checked = 0
        self.gate_up_unchecked = 0
        check_tp_split(sizes.nq, tp, "num_attention_heads")
        check_tp_split(sizes.nkv, tp, "num_key_value_heads")
        self.nq_r = sizes.nq // tp
        self.nkv_r = local_heads(sizes.nkv, tp)

    # per (kind, layer, role) the records of all ranks, keyed by rank
    def forward(self, records, prefix):
        s = self.s
        groups = defaultdict(dict)
        for r in records:
            key = (r.kind, r.layer, r.role)
            if r.rank in groups[key]:
                prev = groups[key][r.rank]
                if not torch.equal(prev.value, r.value):
                    raise ConvertError(f"{r.path}: tensor {r.name}: dumped twice in step {r.step} "
                                       f"rank {r.rank} with different values ({prev.path})")
                continue
            groups[key][r.rank] = r
        out = OrderedDict()
        T = self._tokens(groups)
        info = {"T": T}

        ids = groups.pop(("input_ids", None, None), None)
        if ids:
            r = ids[min(ids)]
            out[prefix + "input_ids"] = r.value.reshape(-1).to(torch.int64)
        pos = groups.pop(("positions", None, None), None)
        info["positions"] = pos[min(pos)].value.reshape(-1).tolist() if pos else None
        sl = groups.pop(("seq_lens", None, None), None)
        if sl:
            r = sl[min(sl)]
            if r.value.numel() != 1:
                raise ConvertError(f"{r.path}: seq_lens has {r.value.numel()} entries: a batch of "
                                   f"several sequences; hyoracle dumps are batch 1 (run one request)")

        pairs = defaultdict(dict)
        gate_up = {}
        for (kind, L, role), by_rank in sorted(groups.items(), key=lambda kv: (str(kv[0][0]), -1 if kv[0][1] is None else kv[0][1], str(kv[0][2]))):
            if L is not None and not 0 <= L < s.layers:
                r = next(iter(by_rank.values()))
                raise ConvertError(f"{r.path}: tensor {r.name}: layer {L}, config has {s.layers} layers")
            name = None if L is None or role is None else f"layers.{L}.{role}"
            if kind == "repl":
                r = self._replicated(by_rank)
                out[prefix + (role if L is None else name)] = self._rows(r, T)
            elif kind == "qkv":
                ranks = self._ranks(by_rank)
                q, k, v = [], [], []
                width = (self.nq_r + 2 * self.nkv_r) * s.d
                for r in ranks:
                    t = self._rows(r, T, dims=2)
                    if t.shape[1] != width:
                        raise ConvertError(
                            f"{r.path}: tensor {r.name}: {t.shape[1]} columns, expected q|k|v = "
                            f"({self.nq_r} + 2·{self.nkv_r})·{s.d} = {width} for --tp {self.tp}")
                    a, b, c = split_qkv(t, self.nq_r, self.nkv_r, s.d)
                    q.append(a), k.append(b), v.append(c)
                out[prefix + f"layers.{L}.attn.q"] = gather_heads(q, s.nq, self.tp)
                out[prefix + f"layers.{L}.attn.k"] = gather_heads(k, s.nkv, self.tp)
                out[prefix + f"layers.{L}.attn.v"] = gather_heads(v, s.nkv, self.tp)
            elif kind in ("heads_q", "heads_kv"):
                n_tot, n_r = (s.nq, self.nq_r) if kind == "heads_q" else (s.nkv, self.nkv_r)
                shards = [self._heads(r, T, n_r) for r in self._ranks(by_rank)]
                out[prefix + name] = gather_heads(shards, n_tot, self.tp)
            elif kind == "cols":
                shards = []
                for r in self._ranks(by_rank):
                    t = self._rows(r, T, dims=2)
                    if t.shape[1] != self.nq_r * s.d:
                        raise ConvertError(f"{r.path}: tensor {r.name}: {t.shape[1]} columns, expected "
                                           f"{self.nq_r}·{s.d} = {self.nq_r * s.d} (heads of one rank)")
                    shards.append(t)
                out[prefix + name] = torch.cat(shards, dim=1)
            elif kind == "psum":
                out[prefix + name] = partial_sum([self._rows(r, T) for r in self._ranks(by_rank)])
            elif kind in ("pair_h", "pair_r", "topk_w", "topk_ids"):
                pairs[L][kind] = self._replicated(by_rank)
            elif kind in ("gate_up", "act"):
                gate_up[(L, role, kind)] = by_rank
            elif kind == "logits":
                r = self._replicated(by_rank)
                t = r.value.reshape(-1, r.value.shape[-1])
                if t.shape[1] != s.V:
                    raise ConvertError(f"{r.path}: tensor {r.name}: {t.shape[1]} columns, expected vocab_size {s.V}")
                if t.shape[0] not in (1, T):
                    raise ConvertError(f"{r.path}: tensor {r.name}: {t.shape[0]} rows, expected 1 (last token) or T = {T}")
                info["logits_row"] = t[-1].clone()
                if t.shape[0] == T:
                    out[prefix + "logits"] = t
            else:  # pragma: no cover - classify() returns only the kinds above
                raise AssertionError(kind)

        for L, p in sorted(pairs.items()):
            if "pair_h" in p or "pair_r" in p:
                if "pair_h" not in p or "pair_r" not in p:
                    r = p.get("pair_h") or p.get("pair_r")
                    raise ConvertError(f"{r.path}: tensor {r.name}: model.layers.{L}.output needs both "
                                       f"(hidden, residual) = output.0 and output.1; one is missing")
                h, res = self._rows(p["pair_h"], T), self._rows(p["pair_r"], T)
                out[prefix + f"layers.{L}.out"] = layer_out(h, res)
            if "topk_w" in p or "topk_ids" in p:
                if "topk_w" not in p or "topk_ids" not in p:
                    r = p.get("topk_w") or p.get("topk_ids")
                    raise ConvertError(f"{r.path}: tensor {r.name}: topk output needs weights (output.0) and ids (output.1)")
                w, i = self._rows(p["topk_w"], T, dims=2), self._rows(p["topk_ids"], T, dims=2)
                if tuple(w.shape) != (T, s.k) or tuple(i.shape) != (T, s.k):
                    raise ConvertError(f"{p['topk_ids'].path}: top-k shapes {tuple(w.shape)}, {tuple(i.shape)}, "
                                       f"expected [{T}, {s.k}] (num_experts_per_tok)")
                if i.is_floating_point() or int(i.min()) < 0 or int(i.max()) >= s.E:
                    raise ConvertError(f"{p['topk_ids'].path}: tensor {p['topk_ids'].name}: expected integer "
                                       f"expert ids in [0, {s.E})")
                corrected = None
                bias = self.bias_for_layer(L)
                logits = out.get(prefix + f"layers.{L}.moe.router_logits")
                if bias is not None and logits is not None:
                    # sigmoid score + expert_bias in fp32, as both engines' routers compute it
                    corrected = torch.sigmoid(logits.float()) + bias
                ids_o, w_o = order_topk(i, w, corrected)
                out[prefix + f"layers.{L}.moe.topk_ids"] = ids_o
                out[prefix + f"layers.{L}.moe.topk_weights"] = w_o
                info["topk_order"] = "corrected score" if corrected is not None else "weight"
        self._check_gate_up(gate_up, T)
        return out, info

    def _tokens(self, groups):
        ids = groups.get(("input_ids", None, None))
        if ids:
            return ids[min(ids)].value.numel()
        emb = groups.get(("repl", None, "embed"))
        if emb:
            return emb[min(emb)].value.shape[0]
        r = next(iter(next(iter(groups.values())).values()))
        raise ConvertError(f"{os.path.dirname(r.path)}: step {r.step} has neither input_ids nor "
                           f"model.embed_tokens.output: cannot tell the token count")

    def _replicated(self, by_rank):
        """A tensor every rank holds a copy of (after an all-reduce, or computed redundantly): the
        lowest rank's, after checking that the others hold the same values. Ranks that disagree are
        an engine bug worth seeing, not something to pick a side of silently."""
        first = by_rank[min(by_rank)]
        for rank in sorted(by_rank):
            r = by_rank[rank]
            if r is not first and not torch.equal(r.value, first.value):
                raise ConvertError(f"{r.path}: tensor {r.name}: rank {rank} differs from rank {first.rank} "
                                   f"({first.path}), a tensor every rank should hold the same")
        return first

    def _ranks(self, by_rank):
        """The records of ranks 0..tp-1 in rank order; any other set of ranks is an error."""
        if sorted(by_rank) != list(range(self.tp)):
            r = by_rank[min(by_rank)]
            raise ConvertError(f"{r.path}: tensor {r.name}: TP ranks {sorted(by_rank)} present, "
                               f"expected 0..{self.tp - 1} (--tp {self.tp})")
        return [by_rank[i] for i in range(self.tp)]

    def _rows(self, r, T, dims=None):
        t = r.value
        if t.dim() >= 1 and t.shape[0] != T:
            raise ConvertError(f"{r.path}: tensor {r.name}: shape {tuple(t.shape)}, expected {T} rows "
                               f"(the forward's tokens, batch 1)")
        if dims is not None and t.dim() != dims:
            raise ConvertError(f"{r.path}: tensor {r.name}: shape {tuple(t.shape)}, expected {dims} dimensions")
        if t.dim() == 2 and r.kind in ("repl", "psum") and t.shape[1] != self.s.H \
                and r.role not in ("moe.router_logits",):
            raise ConvertError(f"{r.path}: tensor {r.name}: shape {tuple(t.shape)}, expected [{T}, {self.s.H}]")
        if r.role == "moe.router_logits" and tuple(t.shape) != (T, self.s.E):
            raise ConvertError(f"{r.path}: tensor {r.name}: shape {tuple(t.shape)}, expected [{T}, {self.s.E}]")
        return t

    def _heads(self, r, T, n_r):
        """[T, n_r, d] (vLLM's per-head view), [T·n_r, d] (SGLang's reshape(-1, d)) or
        [T, n_r·d] (flat) -> [T, n_r, d]."""
        t, d = r.value, self.s.d
        if t.dim() == 3 and tuple(t.shape) == (T, n_r, d):
            return t
        if t.dim() == 2 and tuple(t.shape) == (T * n_r, d):
            return t.reshape(T, n_r, d)
        if t.dim() == 2 and tuple(t.shape) == (T, n_r * d):
            return t.reshape(T, n_r, d)
        raise ConvertError(f"{r.path}: tensor {r.name}: shape {tuple(t.shape)}, expected [{T}, {n_r}, {d}], "
                           f"[{T * n_r}, {d}] or [{T}, {n_r * d}] ({n_r} heads per rank, --tp {self.tp})")

    def _check_gate_up(self, gate_up, T):
        """gate_up_proj output [gate_r | up_r] against down_proj's input silu(gate_r)·up_r."""
        for (L, role, kind), by_rank in sorted(gate_up.items()):
            if kind != "gate_up":
                continue
            I = (self.s.dense_I if not self.s.is_moe(L) else self.s.shared_I) if role == "mlp" else self.s.shared_I
            if role == "mlp" and self.s.is_moe(L):
                r = by_rank[min(by_rank)]
                raise ConvertError(f"{r.path}: tensor {r.name}: layer {L} is an MoE layer (first_k_dense_replace "
                                   f"{self.s.first_dense}) and has no dense gate_up_proj")
            if I % self.tp:
                raise ConvertError(f"intermediate size {I} of layer {L} ({role}) does not split over --tp {self.tp}")
            w = I // self.tp
            acts = gate_up.get((L, role, "act"))
            for r in self._ranks(by_rank):
                t = self._rows(r, T, dims=2)
                if t.shape[1] != 2 * w:
                    raise ConvertError(f"{r.path}: tensor {r.name}: {t.shape[1]} columns, expected [gate | up] = "
                                       f"2·{I}/{self.tp} = {2 * w}")
                if not acts or r.rank not in acts:
                    self.gate_up_unchecked += 1
                    continue
                gate, up = split_gate_up(t, w)
                a = acts[r.rank]
                av = self._rows(a, T, dims=2)
                if av.shape[1] != w:
                    raise ConvertError(f"{a.path}: tensor {a.name}: {av.shape[1]} columns, expected {I}/{self.tp} = {w}")
                ref = torch.nn.functional.silu(gate.double()) * up.double()
                err = float((ref - av.double()).norm() / max(float(av.double().norm()), 1e-300))
                if err > act_tolerance(t.dtype):
                    raise ConvertError(f"{r.path}: tensor {r.name}: silu(gate)·up differs from {a.name} "
                                       f"(rel_l2 {err:.3g} > {act_tolerance(t.dtype):.0e}): the columns are not "
                                       f"[gate | up] of {w} each")
                self.gate_up_checked += 1


# --------------------------------------------------------------------------------------------
# the conversion
# --------------------------------------------------------------------------------------------

def _dtype_name(dtype):
    """The manifest's name of a torch dtype: torch.bfloat16 -> "bfloat16" (as dump_io.canonical_dtype)."""
    return str(dtype).replace("torch.", "")


def parse_steps(text):
    m = re.fullmatch(r"(\d*):(\d*)", text or ":")
    if not m:
        raise ConvertError(f"--steps {text}: expected A:B (A inclusive, B exclusive)")
    return (int(m.group(1)) if m.group(1) else None, int(m.group(2)) if m.group(2) else None)


def convert(src, engine, config, out, tp=1, steps=None, checkpoint=None, generated=None,
            ignore=(), engine_version="unknown", device="unknown"):
    """Convert one engine dump directory; returns a summary dict. Raises ConvertError."""
    if engine not in _ENGINE_RULES:
        raise ConvertError(f"--from {engine}: expected sglang or vllm")
    if tp < 1:
        raise ConvertError(f"--tp {tp}: expected a positive TP size")
    sizes = Sizes(config, engine)
    dump_dir = find_dump_dir(src)
    records, skipped, ignored = scan(dump_dir, engine, list(ignore))

    for r in records:  # meta may state the TP size
        if "tp_size" in r.tags and int(r.tags["tp_size"]) != tp:
            raise ConvertError(f"{r.path}: meta says tp_size {r.tags['tp_size']}, --tp is {tp}")

    by_step = defaultdict(list)
    for r in records:
        by_step[r.step].append(r)
    a, b = steps or (None, None)
    chosen = [s for s in sorted(by_step) if (a is None or s >= a) and (b is None or s < b)]
    if not chosen:
        raise ConvertError(f"{dump_dir}: no step in --steps range (steps present: {sorted(by_step)})")

    # rotary_emb is one module shared by all layers (get_rope caches it), so its outputs carry the
    # name of layer 0's module; the dumper's layer_id tag (or the call order) gives the layer.
    for s in chosen:
        rot = defaultdict(list)
        for r in by_step[s]:
            if r.role in ("attn.q_rope", "attn.k_rope"):
                rot[(r.rank, r.role)].append(r)
        for lst in rot.values():
            if len(lst) == 1 and "layer_id" not in lst[0].tags:
                continue
            lst.sort(key=lambda r: int(r.tags.get("dump_index", 0)))
            for i, r in enumerate(lst):
                r.layer = int(r.tags["layer_id"]) if "layer_id" in r.tags else i

    bias_cache = {}

    def bias_for_layer(L):
        if checkpoint is None:
            return None
        if L not in bias_cache:
            t = read_checkpoint_tensor(checkpoint, [f"model.layers.{L}.mlp.expert_bias",
                                                     f"model.layers.{L}.mlp.e_score_correction_bias"])
            if t is None:
                raise ConvertError(f"{checkpoint}: no model.layers.{L}.mlp.expert_bias for ordering top-k")
            bias_cache[L] = t
        return bias_cache[L]

    asm = Assembler(sizes, engine, tp, bias_for_layer)
    tensors = OrderedDict()
    logits_rows, infos = [], []
    token_ids, offset = None, 0
    for i, s in enumerate(chosen):
        prefix = "" if i == 0 else f"steps.{i}."
        t, info = asm.forward(by_step[s], prefix)
        infos.append(info)
        pos = info["positions"]
        if i == 0:
            if prefix + "input_ids" in t:
                token_ids = t[prefix + "input_ids"].tolist()
            offset = pos[0] if pos else 0
            if pos and pos != list(range(offset, offset + info["T"])):
                raise ConvertError(f"{dump_dir}: step {s}: positions {pos[:8]}... are not consecutive: not one sequence")
        else:
            if info["T"] != 1:
                raise ConvertError(f"{dump_dir}: step {s} has {info['T']} tokens; after the prefill (step {chosen[0]}) "
                                   f"every step must be one decode token (select steps with --steps A:B)")
            want = offset + infos[0]["T"] + i - 1
            if pos and pos != [want]:
                raise ConvertError(f"{dump_dir}: step {s}: position {pos}, expected [{want}] (decode step {i} of the "
                                   f"sequence prefilled in step {chosen[0]})")
            if prefix + "logits" not in t and "logits_row" in info:
                t[prefix + "logits"] = info["logits_row"].reshape(1, -1)
        if "logits_row" in info:
            logits_rows.append(info["logits_row"])
        tensors.update(t)
    if token_ids is None:
        raise ConvertError(f"{dump_dir}: step {chosen[0]} has no input_ids (the dumper's core field); cannot "
                           f"write input.token_ids")

    n = len(chosen)
    if logits_rows:
        if len(logits_rows) != n:
            raise ConvertError(f"{dump_dir}: logits_processor output in {len(logits_rows)} of {n} steps")
        tensors["generate.logits"] = torch.stack(logits_rows, 0)
    if generated is not None:
        if len(generated) != n:
            raise ConvertError(f"--generated has {len(generated)} tokens, the dump has {n} forward passes "
                               f"(prefill + {n - 1} decode steps)")
        for i in range(1, n):
            fed = tensors.get(f"steps.{i}.input_ids")
            if fed is not None and fed.tolist() != [generated[i - 1]]:
                raise ConvertError(f"--generated token {i - 1} is {generated[i - 1]}, decode step {i} was fed {fed.tolist()}")
        tensors["generate.tokens"] = torch.tensor(generated, dtype=torch.int64)

    emb = tensors.get("embed")
    dtype = _dtype_name(emb.dtype) if emb is not None else "unknown"
    manifest = OrderedDict()
    manifest["format"] = "hyoracle.dump"
    manifest["version"] = 1
    manifest["producer"] = OrderedDict(name=engine, version=engine_version, device=device, dtype=dtype,
                                       precision="engine", mode="generate" if n > 1 else "prefill")
    manifest["model"] = OrderedDict(model_type=sizes.model_type, config_sha256=sizes.config_sha256,
                                    num_hidden_layers=sizes.layers)
    manifest["input"] = OrderedDict(token_ids=token_ids, position_offset=offset)
    orders = sorted({i["topk_order"] for i in infos if "topk_order" in i})
    manifest["converter"] = OrderedDict(
        tool="tools/engine_convert.py", source=os.path.abspath(dump_dir), engine=engine, tp=tp,
        steps=chosen, files_used=len(records), files_skipped_known=skipped, files_ignored=ignored,
        gate_up_checked=asm.gate_up_checked, gate_up_unchecked=asm.gate_up_unchecked,
        topk_order=orders[0] if len(orders) == 1 else orders,
        layer_out="hidden + residual of the decoder layer's (hidden, residual), in the dump dtype")
    write_dump(out, tensors, manifest)
    return {"tensors": len(tensors), "steps": chosen, "files_used": len(records),
            "files_skipped_known": skipped, "gate_up_checked": asm.gate_up_checked}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--from", dest="engine", required=True, choices=["sglang", "vllm"])
    ap.add_argument("src", help="directory of the engine's .pt dump files")
    ap.add_argument("--config", required=True, help="the model's config.json")
    ap.add_argument("--out", required=True, help="output hyoracle dump directory")
    ap.add_argument("--tp", type=int, default=1, help="tensor-parallel size of the run (default 1)")
    ap.add_argument("--steps", default=None, help="A:B: dumper steps to use; the first is the prefill")
    ap.add_argument("--checkpoint", default=None, help="checkpoint dir: order top-k by corrected score (expert_bias)")
    ap.add_argument("--generated", default=None, help="comma-separated generated tokens (writes generate.tokens)")
    ap.add_argument("--ignore", action="append", default=[], help="regex of engine tensor names to skip")
    ap.add_argument("--engine-version", default="unknown")
    ap.add_argument("--device", default="unknown")
    a = ap.parse_args(argv)
    try:
        gen = None
        if a.generated is not None:
            try:
                gen = [int(x) for x in a.generated.split(",") if x.strip()]
            except ValueError:
                raise ConvertError(f"--generated {a.generated}: expected comma-separated integers")
        s = convert(a.src, a.engine, a.config, a.out, tp=a.tp, steps=parse_steps(a.steps),
                    checkpoint=a.checkpoint, generated=gen, ignore=a.ignore,
                    engine_version=a.engine_version, device=a.device)
    except ConvertError as e:
        print(f"engine_convert: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # never a traceback for an input: one line, exit 2
        msg = str(e).splitlines()[0] if str(e) else ""
        print(f"engine_convert: {a.src}: cannot convert ({type(e).__name__}: {msg}); input this converter "
              f"does not understand, or a bug in it", file=sys.stderr)
        return 2
    print(f"engine_convert: wrote {a.out}: {s['tensors']} tensors from {s['files_used']} files "
          f"(steps {s['steps'][0]}..{s['steps'][-1]}, {s['files_skipped_known']} known files without a "
          f"canonical name skipped, {s['gate_up_checked']} gate/up blocks checked)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
