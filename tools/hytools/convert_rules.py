"""Engine tensor names -> what they are: the names SGLang's dumper (non-intrusive mode) and
tools/vllm_hooks.py give module inputs and outputs of the engines' HYV3ForCausalLM, and which
canonical tensor (or layout to undo) each one is. Standard library only."""

from __future__ import annotations

import re

PREFIX = "non_intrusive__"


class ConvertError(Exception):
    """A one-line reason the input cannot be converted (exit status 2)."""



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
ENGINES = tuple(_ENGINE_RULES)

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

