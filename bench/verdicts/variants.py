"""What the verdicts harness runs: the honest dump variants, the planted bugs, and each bug's
EXPECTED first divergent tensor per dump kind, written down from the bug's definition (never
from what compare prints). Pure Python (no torch): the harness, its tests and the HF worker
share it.

Names: a dump kind is "full" (every canonical tensor, tools/hf_dump.py's goldens) or "modules"
(forward hooks on modules only: embed, input_norm, attn.q_norm/k_norm, attn.out, post_norm,
moe.router_logits/topk_ids/topk_weights/routed_out/shared_out, mlp.out, out, final_norm,
logits). A variant name is "<config>-<kind>" for honest dumps (config: bf16-fast, bf16-eager,
fp32-eager, cuda-bf16, cuda-fp32) and "<bug>-<kind>" for planted bugs (always bf16-fast).
"""

from __future__ import annotations

import math
from collections import OrderedDict

KINDS = ("modules", "full")
HEAD = 5                 # the attention head head-scale scales (or the last head, if fewer)
HEAD_EPS = 0.03          # head-scale's eps: near the bf16 noise floor
EXPERT_SCALE = 1.05      # expert-weights: one expert's down_proj weight x 1.05
PASS = "pass"

# HF configurations of the honest dumps: dtype, attention and experts implementation.
HF_CONFIGS = OrderedDict()
HF_CONFIGS["bf16-fast"] = dict(dtype="bfloat16", attn="sdpa", experts="grouped_mm")
HF_CONFIGS["bf16-eager"] = dict(dtype="bfloat16", attn="eager", experts="eager")
HF_CONFIGS["fp32-eager"] = dict(dtype="float32", attn="eager", experts="eager")
CUDA_DTYPES = ("bf16", "fp32")   # hyoracle run --device cuda --dtype ...

# The planted bugs. "where" gives the expected first divergent tensor per dump kind as a
# template: {moe} is the first MoE layer, {S} nothing else. "why" says why that tensor.
BUGS = OrderedDict()
BUGS["decode-pos-behind"] = dict(
    what="decode steps are called with position_ids one behind the true position (prefill untouched)",
    where={"full": "steps.1.layers.0.attn.q_rope", "modules": "steps.1.layers.0.attn.out"},
    why="the first computation that reads the position is RoPE of decode step 1 in layer 0; q/k norms "
        "precede RoPE and are unaffected; a module-only dump has no q_rope/k_rope/context, so the first "
        "dumped tensor that involves RoPE is attn.out")
BUGS["kv-cache-drop-last"] = dict(
    what="before each decode step S >= 2 the KV cache is cropped by one position (DynamicCache.crop): "
         "the entry written by step S-1 is lost, so step S attends to the prompt and itself only; "
         "position_ids stay the true ones",
    where={"full": "steps.2.layers.0.attn.context", "modules": "steps.2.layers.0.attn.out"},
    why="step 1 is untouched; in step 2 q, k, v, norms and RoPE are unchanged (true positions), the "
        "attention over the cache is the first wrong computation: attn.context (full), whose first "
        "dumped consumer in a module-only dump is attn.out")
BUGS["router-bias-bf16"] = dict(
    what="e_score_correction_bias is rounded to bf16 before the selection s + bias "
         "(vllm-project/vllm#47797); weights still the un-biased scores",
    where={"full": "layers.{moe}.moe.topk_ids", "modules": "layers.{moe}.moe.topk_ids"},
    why="router logits and scores are untouched; only the selected set changes, on boundary tokens "
        "whose k/k+1 gap is below the bias rounding (~1e-4); dense layers before are untouched")
BUGS["expert-weights"] = dict(
    what="one expert's down_proj weight (the expert the first MoE layer's prefill routes most tokens "
         "to) multiplied by 1.05 (rounded to bf16), in the first MoE layer only",
    where={"full": "layers.{moe}.moe.routed_out", "modules": "layers.{moe}.moe.routed_out"},
    why="routing is unchanged (computed before the experts); the routed experts' sum is the first "
        "output that reads the weight")
BUGS["combine-weights"] = dict(
    what="the routed combine applies the top-k weights to the wrong experts: the weights are rotated "
         "by one slot relative to the ids before the experts' weighted sum (a forward pre-hook on the "
         "experts module, every MoE layer); the router's outputs are untouched",
    where={"full": "layers.{moe}.moe.routed_out", "modules": "layers.{moe}.moe.routed_out"},
    why="router_logits, topk_ids and topk_weights (the router's outputs) are honest; the weighted sum "
        "inside the experts module is the first wrong computation")
BUGS["head-scale"] = dict(
    what="one attention head's context (head 5 of layer 0, or the last head when fewer) scaled by "
         "(1+eps), eps = 0.03, inside o_proj: o_proj(x) + eps * W_o[:, head] x[head], computed in "
         "fp32 and rounded once (a fused-kernel bug: the dumped context is the honest one)",
    where={"full": "layers.0.attn.out", "modules": "layers.0.attn.out"},
    why="the scaling happens inside o_proj, after the context capture point; attn.out is o_proj's output")

# The sweep's two error families (sensitivity frontier), both exact-additive so that small eps
# are not lost to bf16 rounding of a scaled weight.
SWEEP_BUGS = OrderedDict()
SWEEP_BUGS["head-scale"] = dict(
    what="head 5 of layer 0 scaled by (1+eps) inside o_proj (as head-scale)",
    tensor="layers.0.attn.out")
SWEEP_BUGS["expert-scale"] = dict(
    what="the most-used expert of the first MoE layer: its down_proj output scaled by (1+eps) "
         "(output + eps * w_e * expert_e(x), fp32, rounded once)",
    tensor="layers.{moe}.moe.routed_out")


def sweep_grid(lo=0.001, hi=0.3, n=8):
    """Geometric grid of eps, two significant digits: 0.001 .. 0.3 with 8 values."""
    if n < 2:
        return [lo]
    r = (hi / lo) ** (1.0 / (n - 1))
    out = []
    for i in range(n):
        x = lo * r ** i
        digits = 1 - int(math.floor(math.log10(x)))
        out.append(round(x, digits))
    return out


def first_moe_layer(config: dict) -> int:
    """Index of the first MoE layer of a hy_v3 config.json (mlp_layer_types or first_k_dense_replace)."""
    types = config.get("mlp_layer_types")
    if types:
        for i, t in enumerate(types):
            if t == "sparse":
                return i
        raise ValueError("mlp_layer_types has no sparse layer")
    k = config.get("first_k_dense_replace")
    if k is None:
        raise ValueError("config has neither mlp_layer_types nor first_k_dense_replace")
    if k >= config["num_hidden_layers"]:
        raise ValueError("no MoE layer: first_k_dense_replace >= num_hidden_layers")
    return int(k)


def head_index(config: dict) -> int:
    return min(HEAD, int(config["num_attention_heads"]) - 1)


def expected_tensor(bug: str, kind: str, config: dict) -> str:
    """The expected first divergent tensor of planted bug `bug` in a dump of kind `kind`."""
    if kind not in KINDS:
        raise ValueError(f"dump kind {kind!r}")
    tmpl = BUGS[bug]["where"][kind] if bug in BUGS else SWEEP_BUGS[bug]["tensor"]
    return tmpl.format(moe=first_moe_layer(config))


def honest_variant(config_name: str, kind: str) -> str:
    return f"{config_name}-{kind}"


def bug_variant(bug: str, kind: str) -> str:
    return f"{bug}-{kind}"


def sweep_variant(bug: str, eps: float, kind: str) -> str:
    return f"sweep-{bug}-{eps:g}-{kind}"


def bug_params(bug: str, config: dict, eps=None) -> dict:
    """Parameters the HF worker needs to plant `bug` (expert "auto": chosen from the honest run)."""
    moe = first_moe_layer(config)
    if bug == "head-scale":
        return {"layer": 0, "head": head_index(config), "eps": HEAD_EPS if eps is None else eps}
    if bug == "expert-weights":
        return {"layer": moe, "expert": "auto", "scale": EXPERT_SCALE}
    if bug == "expert-scale":
        return {"layer": moe, "expert": "auto", "eps": eps}
    if bug in ("router-bias-bf16", "combine-weights", "decode-pos-behind", "kv-cache-drop-last"):
        return {}
    raise KeyError(bug)


def full_variants(config: dict, cuda: bool) -> list:
    """Rows of the full-scale run, in the order the table lists them:
    dict(variant, role, source, config, kind, bug, params, expected)."""
    rows = []
    for cname in HF_CONFIGS:
        for kind in KINDS:
            rows.append(dict(variant=honest_variant(cname, kind), role="honest", source="hf", config=cname,
                             kind=kind, bug=None, params={}, expected=PASS))
    if cuda:
        for dt in CUDA_DTYPES:
            rows.append(dict(variant=f"cuda-{dt}-full", role="honest", source="hyoracle-cuda", config=f"cuda-{dt}",
                             kind="full", bug=None, params={}, expected=PASS))
    for bug in BUGS:
        for kind in KINDS:
            rows.append(dict(variant=bug_variant(bug, kind), role="bug", source="hf", config="bf16-fast",
                             kind=kind, bug=bug, params=bug_params(bug, config),
                             expected=expected_tensor(bug, kind, config)))
    return rows


def tiny_variants(config: dict) -> list:
    """Rows of one tiny fixture: honest bf16-fast (as honest-<kind>) and every bug, both kinds."""
    rows = []
    for kind in KINDS:
        rows.append(dict(variant=f"honest-{kind}", role="honest", source="hf", config="bf16-fast", kind=kind,
                         bug=None, params={}, expected=PASS))
    for bug in BUGS:
        for kind in KINDS:
            rows.append(dict(variant=bug_variant(bug, kind), role="bug", source="hf", config="bf16-fast",
                             kind=kind, bug=bug, params=bug_params(bug, config),
                             expected=expected_tensor(bug, kind, config)))
    return rows


def sweep_variants(config: dict, grid) -> list:
    rows = []
    for kind in KINDS:
        rows.append(dict(variant=honest_variant("bf16-fast", kind), role="honest", source="hf", config="bf16-fast",
                         kind=kind, bug=None, params={}, expected=PASS))
    for bug in SWEEP_BUGS:
        for eps in grid:
            for kind in KINDS:
                rows.append(dict(variant=sweep_variant(bug, eps, kind), role="sweep", source="hf",
                                 config="bf16-fast", kind=kind, bug=bug, params=bug_params(bug, config, eps),
                                 eps=eps, expected=expected_tensor(bug, kind, config)))
    return rows


def priority(row, mode="model") -> int:
    """Compare order (lower first): the honest bf16 fast dumps (bf16 of the cla stage's engine;
    they define the noise floor),
    then every compare without --model (seconds each), then the planted bugs with --model, then
    the other honest dumps with --model."""
    if row["role"] == "honest" and row.get("config") in ("bf16-fast", "tencent-bf16"):
        return 0
    if mode != "model":
        return 1
    if row["role"] in ("bug", "sweep"):
        return 2
    return 3
