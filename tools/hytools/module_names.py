"""What a module-only dump holds: the tensors forward hooks on modules alone give (an SGLang
dumper in non-intrusive mode, a vLLM hook, hf_dump.py --kind modules): no RoPE outputs, no
attention context, no q/k/v projections, no residual midpoint, no router scores. Standard library
only (tools/dump_subset.py runs without torch)."""

from __future__ import annotations

import re

MODULE_LAYER_SUFFIXES = ["input_norm", "attn.q_norm", "attn.k_norm", "attn.out", "post_norm"]
MODULE_MOE_SUFFIXES = ["moe.router_logits", "moe.topk_ids", "moe.topk_weights", "moe.routed_out", "moe.shared_out"]
MODULE_TAIL_SUFFIXES = ["mlp.out", "out"]
MODULE_BEFORE_LAYERS = ["input_ids", "embed"]
MODULE_AFTER_LAYERS = ["final_norm", "logits"]
DUMP_KINDS = ("full", "modules")


def module_names(moe_flags, prefix="") -> list:
    """Tensor names of one forward in a module-only dump, in execution order; moe_flags[L] says
    whether layer L is an MoE layer."""
    names = [prefix + n for n in MODULE_BEFORE_LAYERS]
    for L, is_moe in enumerate(moe_flags):
        p = f"{prefix}layers.{L}."
        names += [p + s for s in MODULE_LAYER_SUFFIXES]
        if is_moe:
            names += [p + s for s in MODULE_MOE_SUFFIXES]
        names += [p + s for s in MODULE_TAIL_SUFFIXES]
    names += [prefix + n for n in MODULE_AFTER_LAYERS]
    return names


def module_name_patterns() -> list:
    """Regexes (to match whole names, steps.S. stripped) of every tensor a module-only dump may
    hold, the generated tokens and logits included."""
    layer = MODULE_LAYER_SUFFIXES + MODULE_MOE_SUFFIXES + MODULE_TAIL_SUFFIXES
    top = MODULE_BEFORE_LAYERS + MODULE_AFTER_LAYERS + ["generate.tokens", "generate.logits"]
    return [re.escape(n) for n in top] + [r"layers\.\d+\.(" + "|".join(re.escape(s) for s in layer) + ")"]
