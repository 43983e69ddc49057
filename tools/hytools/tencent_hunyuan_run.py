"""One run of the independent Hunyuan v1 implementation (hytools/tencent_hunyuan.py): prefill,
greedy decode with each layer's own KV cache, and the canonical dump it writes (DUMP_FORMAT.md),
laid out like the HF dumps of tools/hf_dump.py: the prefill's tensors, `generate.tokens` /
`generate.logits` (row 0 = the last prefill row), decode step s (1 .. N-1, fed token s-1) as
`steps.s.*`, and the caches after the run as `layers.L.kv.k` / `kv.v`. A module-only dump (kind
"modules") keeps what forward hooks on an engine's modules give (hytools/module_names.py), the ids
and generate.* tensors, and no cache."""

from __future__ import annotations

import os
import re
from collections import OrderedDict

from dump_io import write_dump
from hytools.checkpoint import read_config
from hytools.families import family_of, forward_names
from hytools.manifest import model_section, new_manifest, producer_section
from hytools.module_names import DUMP_KINDS, module_name_patterns
from hytools.tencent_hunyuan import forward, layouts, load_weights, precision_of, read_spec
from lazy_import import torch  # imported on first use

PRODUCER = "hyoracle-tencent-hunyuan-torch"
PRECISION = {"float64": "exact", "float32": "fp32", "bfloat16": "bf16"}
# Stored in fp32 by a bf16 run (the router is not rounded); every other float tensor as bf16.
WIDE = ("moe.router_logits", "moe.scores", "moe.topk_weights", "moe.topk_margin")
BF16_ROUNDING = ("every op computed in float32, its output rounded to bf16 once (norms, projections, RoPE, "
                 "attention context, SiLU(gate)*up, each expert, routed/shared/mlp sums, residuals, logits); "
                 "router logits, softmax, top-k weights and margins fp32; RoPE cos/sin fp32")


def hyoracle_version() -> str:
    """The project version (CMakeLists.txt's `project(hyoracle VERSION x.y.z)`), or "unknown"."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        with open(os.path.join(root, "CMakeLists.txt")) as f:
            m = re.search(r"project\(hyoracle\s+VERSION\s+([0-9.]+)", f.read())
        return m.group(1) if m else "unknown"
    except OSError:
        return "unknown"


def greedy(row) -> int:
    """argmax, ties to the lowest index."""
    return int((row == row.max()).nonzero()[0, 0])


def _strict_fp(device):
    """No TF32 and full-precision fp32 products on a CUDA device (its defaults may differ)."""
    if str(device).startswith("cuda"):
        from hytools.hf_precision import set_strict_fp
        set_strict_fp()


def load(ckpt_dir, dtype="float64", device="cpu"):
    """(spec, weights) of a checkpoint for runs in precision `dtype` on `device`."""
    td, rnd = precision_of(dtype)
    _strict_fp(device)
    cfg, _ = read_config(os.path.join(ckpt_dir, "config.json"))
    spec = read_spec(cfg)
    W = load_weights(ckpt_dir, spec, td, device)
    W.rnd = rnd
    return spec, W


def run(ckpt_dir, token_ids, generate_n=0, dtype="float64", record_steps=True, device="cpu", loaded=None):
    """Prefill + generate_n greedy tokens on `device` (with `loaded`, load's result for the same
    dtype and device, the weights are not read again). Returns (spec, store, tokens, rows): store
    maps every canonical name to its tensor (on the CPU; a bfloat16 run stores bf16 tensors except
    the router's, WIDE), rows are the generate.logits rows."""
    spec, W = loaded or load(ckpt_dir, dtype, device)
    store = OrderedDict()

    def keep(name, t):
        t = t.detach().to("cpu")
        if dtype == "bfloat16" and t.is_floating_point() and not name.endswith(WIDE):
            return t.to(torch.bfloat16)  # exact: the run rounded it already
        return t.clone()

    def putter(prefix):
        def put(name, t):
            key = prefix + name
            if key in store:
                raise RuntimeError(f"tensor {key} computed twice")
            store[key] = keep(key, t)
        return put
    cache = [None] * spec.layers
    tokens, rows = [], []
    with torch.no_grad():
        logits = forward(spec, W, list(token_ids), 0, cache, putter(""))
        if generate_n > 0:
            rows.append(keep("logits", logits[-1]))
            tokens.append(greedy(rows[-1]))
        for s in range(1, generate_n):
            put = putter(f"steps.{s}.") if record_steps else (lambda name, t: None)
            logits = forward(spec, W, [tokens[-1]], len(token_ids) + s - 1, cache, put)
            if record_steps:
                store[f"steps.{s}.input_ids"] = torch.tensor([tokens[-1]], dtype=torch.int64)
            rows.append(keep("logits", logits[-1]))
            tokens.append(greedy(rows[-1]))
    store["input_ids"] = torch.tensor(list(token_ids), dtype=torch.int64)
    if generate_n > 0:
        store["generate.tokens"] = torch.tensor(tokens, dtype=torch.int64)
        store["generate.logits"] = torch.stack(rows, 0)
    for L, (K, V) in enumerate(cache):
        store[f"layers.{L}.kv.k"], store[f"layers.{L}.kv.v"] = keep("kv.k", K), keep("kv.v", V)
    return spec, store, tokens, rows


def module_cut(store):
    """The tensors of `store` a module-only dump holds (steps.S. prefixes kept)."""
    pats = [re.compile("^(" + p + ")$") for p in module_name_patterns()]
    return OrderedDict((n, t) for n, t in store.items()
                       if any(p.match(re.sub(r"^steps\.\d+\.", "", n)) for p in pats))


def check_complete(spec, store, generate_n, record_steps=True, modules_only=False):
    """Every canonical name of the family's dataflow table for each forward must be there (only
    the module rows with modules_only)."""
    family = family_of(spec.model_type).family
    expected = forward_names(family, spec.kinds, modules_only=modules_only)
    for s in range(1, generate_n if record_steps else 1):
        expected += forward_names(family, spec.kinds, prefix=f"steps.{s}.", modules_only=modules_only)
    missing = [n for n in expected if n not in store]
    if missing:
        raise RuntimeError(f"dump incomplete, missing {missing[:10]} ({len(missing)})")


def dump(ckpt_dir, token_ids, out_dir, generate_n=0, dtype="float64", record_steps=True, checkpoint=None,
         device="cpu", kind="full", extra_manifest=None):
    """Run and write the dump to out_dir. Returns a summary (tokens, logit margins, smallest
    router margin)."""
    result = run(ckpt_dir, token_ids, generate_n, dtype, record_steps, device)
    return write(ckpt_dir, result, token_ids, out_dir, generate_n, dtype, record_steps, checkpoint, device,
                 kind, extra_manifest)


def write(ckpt_dir, result, token_ids, out_dir, generate_n=0, dtype="float64", record_steps=True,
          checkpoint=None, device="cpu", kind="full", extra_manifest=None):
    """Write the dump of one run (run's result) to out_dir, every tensor (kind "full") or the
    module outputs (kind "modules"); extra_manifest entries go into the tencent_run section.
    Returns a summary (tokens, logit margins, smallest router margin)."""
    if kind not in DUMP_KINDS:
        raise ValueError(f"dump kind {kind!r}: one of {DUMP_KINDS}")
    spec, full, tokens, rows = result
    check_complete(spec, full, generate_n, record_steps)
    store = full if kind == "full" else module_cut(full)
    if kind != "full":
        check_complete(spec, store, generate_n, record_steps, modules_only=True)
    cfg_path = os.path.join(ckpt_dir, "config.json")
    cfg, sha = read_config(cfg_path)
    dev_name = torch.cuda.get_device_name(device) if str(device).startswith("cuda") else "cpu"
    producer = producer_section(PRODUCER, hyoracle_version(), dev_name, dtype, PRECISION[dtype],
                                "generate" if generate_n > 0 else "prefill")
    producer["class"] = (cfg.get("architectures") or [None])[0]
    producer["semantics"] = spec.semantics
    producer["tie_break"] = "larger score first; exact ties to the lower index"
    model = model_section(spec.model_type, spec.layers, config_sha256=sha, checkpoint=checkpoint or ckpt_dir,
                          weights_dir=ckpt_dir)
    # as hyoracle's own writer records them (io/dump.cpp); the family also orders the dump's tensors
    model["family"], model["semantics"], model["cla_share_factor"] = "hunyuan_v1", spec.semantics, spec.cla_factor
    man = new_manifest(producer, model, list(token_ids))
    n_steps = generate_n - 1 if (generate_n > 0 and record_steps) else 0
    if generate_n > 0:
        man["generate"] = OrderedDict(n=generate_n, rule="greedy argmax, ties to the lowest index",
                                      kv_cache=True, steps_recorded=n_steps)
    margins = [float(t.min()) for n, t in full.items() if n.endswith("moe.topk_margin")]
    man["tencent_run"] = OrderedDict(
        torch=torch.__version__, source="tools/hytools/tencent_hunyuan.py (independent of transformers and of "
                                        "Tencent's code)",
        kv_source=[next(s for s in range(L, -1, -1) if spec.kinds[s][1]) for L in range(spec.layers)],
        head_dim=spec.head_dim, rope_base=spec.rope_base, qk_norm=spec.qk_norm,
        top1_weight="renormalised (1.0)" if spec.renorm_top1 else "raw softmax probability p_max",
        shared_width=spec.shared, fused_tensors=layouts(ckpt_dir),
        min_router_margin=min(margins) if margins else None)
    if kind != "full":
        man["tencent_run"]["dump_kind"] = kind
    if dtype == "bfloat16":
        man["tencent_run"]["bf16_rounding"] = BF16_ROUNDING
    man["tencent_run"].update(extra_manifest or {})
    write_dump(out_dir, store, man)
    wide = [r.float() if r.dtype == torch.bfloat16 else r for r in rows]
    logit_margins = [float(torch.topk(r, 2).values[0] - torch.topk(r, 2).values[1]) for r in wide]
    return {"tokens": tokens, "logit_margins": logit_margins, "min_router_margin": man["tencent_run"]["min_router_margin"]}
