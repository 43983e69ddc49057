"""The verdicts harness's rows for the Hunyuan v1 family (bench/verdicts/README.md, "Hunyuan v1"):
the honest dump variants, the planted bugs and each bug's EXPECTED first divergent tensor per dump
kind, written from the bug's definition and the hunyuan_v1 dataflow table (tools/dataflow.json,
`hyoracle dataflow`), never from what compare prints. Pure Python (no torch).

Two stages:
  hunyuan  transformers' hunyuan_v1_moe (HunYuanMoEV1ForCausalLM) as the engine, through
           hf_worker.py; bugs planted by hf_bugs_hunyuan.py (decode-pos-behind by hf_bugs.py)
  cla      Tencent's semantics with cross-layer attention: transformers has no CLA, so the engine
           is hyoracle's independent implementation (tools/hytools/tencent_hunyuan.py) in bf16 and
           fp32 on the GPU, through tencent_worker.py

The hunyuan_v1 layer order (the dataflow table): input_norm, attn.q, attn.k, attn.v, attn.q_rope,
attn.k_rope, attn.q_norm, attn.k_norm, attn.context, attn.out, resid_mid, post_norm,
moe.router_logits, moe.scores, moe.topk_ids, moe.topk_weights, moe.routed_out, moe.shared_out,
mlp.out, out. The q/k norms come AFTER RoPE (Hy3 normalises first), so a module-only dump's first
tensor after RoPE is attn.q_norm, not attn.out as for Hy3. A cross layer has no attn.k / attn.v:
its attn.k_rope is RoPE of its source layer's attn.k.
"""

from __future__ import annotations

import os
import sys
from collections import OrderedDict

from variants import HF_CONFIGS, KINDS, PASS, bug_variant, honest_variant

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "tools"))
from hytools.families import hunyuan_layer_kinds  # noqa: E402  (standard library only)

OBSERVE = "observe"      # a deviation, not a bug under the checkpoint's semantics: compare's answer is recorded

# The planted bugs of the hunyuan stage (HF HunYuanMoEV1ForCausalLM, bf16 sdpa + grouped_mm).
# "where": the expected first divergent tensor per dump kind; {moe} = the first MoE layer (0:
# hunyuan_v1_moe makes every layer MoE), {cross} = the first cross layer, {src} = its KV source.
BUGS = OrderedDict()
BUGS["qk-norm-before-rope"] = dict(
    what="query_layernorm / key_layernorm applied BEFORE RoPE (Hy3's order) in every layer: RoPE rotates "
         "the normed q/k; the norm modules then pass their input through",
    where={"full": "layers.0.attn.q_rope", "modules": "layers.0.attn.q_norm"},
    why="q, k, v are untouched; RoPE's output is the first wrong tensor (rope(norm(q)) differs from rope(q), "
        "and from norm(rope(q)) because the norm weight is not the same on the two halves RoPE pairs); a "
        "module-only dump's first tensor after RoPE is the q-norm module's output")
BUGS["rope-no-ntk-alpha"] = dict(
    what="RoPE with the plain base theta = rope_theta (10000) instead of NTK-alpha's theta * alpha^(d/(d-2)) "
         "(1.1e7 for d 128, alpha 1000): the rotary embedding's inv_freq replaced",
    where={"full": "layers.0.attn.q_rope", "modules": "layers.0.attn.q_norm"},
    why="projections are untouched; RoPE (position > 0) is the first computation that reads the base; "
        "q_norm is RoPE's first consumer a module hook sees")
BUGS["topk-no-renorm"] = dict(
    what="the router's top-k probabilities passed to the experts without renormalising them to sum 1 "
         "(transformers renormalises)",
    where={"full": "layers.{moe}.moe.topk_weights", "modules": "layers.{moe}.moe.topk_weights"},
    why="router logits, scores and the selected ids are untouched; the weights are the first wrong output")
BUGS["shared-mlp-dropped"] = dict(
    what="the shared MLP contributes nothing: shared_mlp returns zeros (a port that never loads or adds "
         "the shared expert); a hook on it sees zeros",
    where={"full": "layers.{moe}.moe.shared_out", "modules": "layers.{moe}.moe.shared_out"},
    why="the router and the routed experts are untouched; in the table's order shared_out follows "
        "routed_out and is the first wrong tensor")
BUGS["decode-pos-behind"] = dict(
    what="decode steps are called with position_ids one behind the true position (prefill untouched)",
    where={"full": "steps.1.layers.0.attn.q_rope", "modules": "steps.1.layers.0.attn.q_norm"},
    why="RoPE of decode step 1, layer 0 is the first computation that reads the position; in hunyuan "
        "order the q-norm module's output follows RoPE, so a module-only dump shows it at attn.q_norm "
        "(Hy3's module dump: attn.out)")
BUGS["router-logits-bf16"] = dict(
    what="router logits computed in bf16 (post_norm and wg in the model dtype, bf16 output), as vLLM's "
         "gate does; softmax, top-k and renormalisation in fp32 as transformers does",
    where={"full": OBSERVE, "modules": OBSERVE},
    why="not a bug under transformers' semantics but a deviation from its fp32 gate: the recorded "
        "outcome is compare's (pass with near-tie flips, or a failure at router_logits/topk_ids)")

# The planted bugs of the cla stage (tencent_hunyuan.py in bf16).
CLA_BUGS = OrderedDict()
CLA_BUGS["cla-k-after-norm"] = dict(
    what="cross layers are handed the source layer's k AFTER RoPE and key_layernorm (its attn.k_norm) "
         "instead of the raw projection attn.k; v stays raw (a plausible port bug: reuse the cached keys)",
    where={"full": "layers.{cross}.attn.k_rope", "modules": "layers.{cross}.attn.k_norm"},
    why="the source layer is untouched and the cross layer's q path too; the cross layer's RoPE of k "
        "(dataflow: attn.k_rope reads SRC.attn.k) is the first wrong tensor; a module-only dump's first "
        "tensor after it is the cross layer's k-norm module output")
CLA_BUGS["top1-renorm"] = dict(
    what="the top-1 expert weight renormalised to 1.0 (what transformers does) instead of Tencent's raw "
         "softmax probability p_max",
    where={"full": "layers.{moe}.moe.topk_weights", "modules": "layers.{moe}.moe.topk_weights"},
    why="router logits, scores and ids are untouched; the weight is the first wrong output (layer 0 is MoE)")

# Engine configurations of the cla stage: hyoracle's independent implementation on the GPU.
TENCENT_CONFIGS = OrderedDict()
TENCENT_CONFIGS["tencent-bf16"] = dict(dtype="bfloat16", attn="-", experts="-")
TENCENT_CONFIGS["tencent-fp32"] = dict(dtype="float32", attn="-", experts="-")


def all_configs():
    """Every engine configuration a plan may name (HF's and the independent implementation's)."""
    out = OrderedDict(HF_CONFIGS)
    out.update(TENCENT_CONFIGS)
    return out


def layer_kinds(config: dict) -> list:
    """(is_moe, owns_kv) per layer of a Hunyuan v1 config.json."""
    return hunyuan_layer_kinds(config)


def first_moe_layer(config: dict) -> int:
    for L, (is_moe, _) in enumerate(layer_kinds(config)):
        if is_moe:
            return L
    raise ValueError("config has no MoE layer")


def first_cross_layer(config: dict):
    """(first cross layer, its KV source layer), or (None, None) without cross-layer attention."""
    kinds = layer_kinds(config)
    for L, (_, owns) in enumerate(kinds):
        if not owns:
            s = L
            while not kinds[s][1]:
                s -= 1
            return L, s
    return None, None


def expected_tensor(bug: str, kind: str, config: dict) -> str:
    """The expected first divergent tensor (or OBSERVE) of a Hunyuan bug in a dump of kind `kind`."""
    if kind not in KINDS:
        raise ValueError(f"dump kind {kind!r}")
    tmpl = (BUGS.get(bug) or CLA_BUGS[bug])["where"][kind]
    if tmpl == OBSERVE:
        return OBSERVE
    cross, src = first_cross_layer(config)
    if "{cross}" in tmpl and cross is None:
        raise ValueError(f"{bug}: the config has no cross layer")
    return tmpl.format(moe=first_moe_layer(config), cross=cross, src=src)


def definition(bug: str) -> dict:
    return BUGS.get(bug) or CLA_BUGS[bug]


def _row(variant, role, source, config, kind, bug, expected):
    return dict(variant=variant, role=role, source=source, config=config, kind=kind, bug=bug, params={},
                expected=expected)


def hunyuan_variants(config: dict) -> list:
    """Rows of the hunyuan stage: honest HF dumps (bf16 sdpa + grouped_mm, bf16 eager, fp32 eager),
    every bug on bf16-fast; module-only and full."""
    rows = [_row(honest_variant(c, k), "honest", "hf", c, k, None, PASS) for c in HF_CONFIGS for k in KINDS]
    rows += [_row(bug_variant(b, k), "bug", "hf", "bf16-fast", k, b, expected_tensor(b, k, config))
             for b in BUGS for k in KINDS]
    return rows


def cla_variants(config: dict) -> list:
    """Rows of the cla stage: honest bf16 and fp32 runs of the independent implementation, every
    CLA bug on bf16; module-only and full."""
    rows = [_row(honest_variant(c, k), "honest", "tencent", c, k, None, PASS) for c in TENCENT_CONFIGS for k in KINDS]
    rows += [_row(bug_variant(b, k), "bug", "tencent", "tencent-bf16", k, b, expected_tensor(b, k, config))
             for b in CLA_BUGS for k in KINDS]
    return rows
