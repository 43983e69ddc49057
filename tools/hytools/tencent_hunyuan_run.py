"""One run of the independent Hunyuan v1 implementation (hytools/tencent_hunyuan.py): prefill,
greedy decode with each layer's own KV cache, and the canonical dump it writes (DUMP_FORMAT.md),
laid out like the HF dumps of tools/hf_dump.py: the prefill's tensors, `generate.tokens` /
`generate.logits` (row 0 = the last prefill row), decode step s (1 .. N-1, fed token s-1) as
`steps.s.*`, and the caches after the run as `layers.L.kv.k` / `kv.v`."""

from __future__ import annotations

import os
import re
from collections import OrderedDict

from dump_io import write_dump
from hytools.checkpoint import read_config
from hytools.families import family_of, forward_names
from hytools.manifest import model_section, new_manifest, producer_section
from hytools.tencent_hunyuan import forward, layouts, load_weights, read_spec
from lazy_import import torch  # imported on first use

PRODUCER = "hyoracle-tencent-hunyuan-torch"
PRECISION = {"float64": "exact", "float32": "fp32"}


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


def run(ckpt_dir, token_ids, generate_n=0, dtype="float64", record_steps=True):
    """Prefill + generate_n greedy tokens. Returns (spec, store, tokens, rows): store maps every
    canonical name to its tensor, rows are the generate.logits rows."""
    if dtype not in PRECISION:
        raise ValueError(f"dtype {dtype!r}: float64 or float32")
    td = getattr(torch, dtype)
    cfg, _ = read_config(os.path.join(ckpt_dir, "config.json"))
    spec = read_spec(cfg)
    W = load_weights(ckpt_dir, spec, td)
    store = OrderedDict()

    def putter(prefix):
        def put(name, t):
            key = prefix + name
            if key in store:
                raise RuntimeError(f"tensor {key} computed twice")
            store[key] = t.detach().clone()
        return put
    cache = [None] * spec.layers
    tokens, rows = [], []
    with torch.no_grad():
        logits = forward(spec, W, list(token_ids), 0, cache, putter(""))
        if generate_n > 0:
            rows.append(logits[-1].clone())
            tokens.append(greedy(rows[-1]))
        for s in range(1, generate_n):
            put = putter(f"steps.{s}.") if record_steps else (lambda name, t: None)
            logits = forward(spec, W, [tokens[-1]], len(token_ids) + s - 1, cache, put)
            if record_steps:
                store[f"steps.{s}.input_ids"] = torch.tensor([tokens[-1]], dtype=torch.int64)
            rows.append(logits[-1].clone())
            tokens.append(greedy(rows[-1]))
    store["input_ids"] = torch.tensor(list(token_ids), dtype=torch.int64)
    if generate_n > 0:
        store["generate.tokens"] = torch.tensor(tokens, dtype=torch.int64)
        store["generate.logits"] = torch.stack(rows, 0)
    for L, (K, V) in enumerate(cache):
        store[f"layers.{L}.kv.k"], store[f"layers.{L}.kv.v"] = K, V
    return spec, store, tokens, rows


def check_complete(spec, store, generate_n, record_steps=True):
    """Every canonical name of the family's dataflow table for each forward must be there."""
    family = family_of(spec.model_type).family
    expected = forward_names(family, spec.kinds)
    for s in range(1, generate_n if record_steps else 1):
        expected += forward_names(family, spec.kinds, prefix=f"steps.{s}.")
    missing = [n for n in expected if n not in store]
    if missing:
        raise RuntimeError(f"dump incomplete, missing {missing[:10]} ({len(missing)})")


def dump(ckpt_dir, token_ids, out_dir, generate_n=0, dtype="float64", record_steps=True, checkpoint=None):
    """Run and write the dump to out_dir. Returns a summary (tokens, logit margins, smallest
    router margin)."""
    spec, store, tokens, rows = run(ckpt_dir, token_ids, generate_n, dtype, record_steps)
    check_complete(spec, store, generate_n, record_steps)
    cfg_path = os.path.join(ckpt_dir, "config.json")
    cfg, sha = read_config(cfg_path)
    producer = producer_section(PRODUCER, hyoracle_version(), "cpu", dtype, PRECISION[dtype],
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
    margins = [float(t.min()) for n, t in store.items() if n.endswith("moe.topk_margin")]
    man["tencent_run"] = OrderedDict(
        torch=torch.__version__, source="tools/hytools/tencent_hunyuan.py (independent of transformers and of "
                                        "Tencent's code)",
        kv_source=[next(s for s in range(L, -1, -1) if spec.kinds[s][1]) for L in range(spec.layers)],
        head_dim=spec.head_dim, rope_base=spec.rope_base, qk_norm=spec.qk_norm,
        top1_weight="renormalised (1.0)" if spec.renorm_top1 else "raw softmax probability p_max",
        shared_width=spec.shared, fused_tensors=layouts(ckpt_dir),
        min_router_margin=min(margins) if margins else None)
    write_dump(out_dir, store, man)
    logit_margins = [float(torch.topk(r, 2).values[0] - torch.topk(r, 2).values[1]) for r in rows]
    return {"tokens": tokens, "logit_margins": logit_margins, "min_router_margin": man["tencent_run"]["min_router_margin"]}
