"""What a module-only dump holds: the tensors forward hooks on modules alone give (an SGLang
dumper in non-intrusive mode, a vLLM hook, hf_dump.py --kind modules): no RoPE outputs, no
attention context, no q/k/v projections, no residual midpoint, no router scores. Which tensors
those are is the dataflow table's `module` column (tools/dataflow.json, written by `hyoracle
dataflow` from reference/dataflow.h). Standard library only (tools/dump_subset.py runs without
torch)."""

from __future__ import annotations

import re

from hytools.dataflow import load_dataflow

DUMP_KINDS = ("full", "modules")


_TABLE = load_dataflow()


def layer_module_suffixes(is_moe: bool) -> list:
    """The module outputs of one layer (dense or MoE), in execution order."""
    kinds = ("all", "moe" if is_moe else "dense")
    out = []
    for s in _TABLE["layer_steps"]:
        if s.get("module") and s["applies"] in kinds and s["name"] not in out:
            out.append(s["name"])
    return out


def _model_modules(where: str) -> list:
    return [s["name"] for s in _TABLE["model_steps"]
            if s.get("module") and s["where"] == where and not s["name"].startswith("generate.")]


MODULE_BEFORE_LAYERS = _model_modules("before_layers")
MODULE_AFTER_LAYERS = _model_modules("after_layers")


def module_names(moe_flags, prefix="") -> list:
    """Tensor names of one forward in a module-only dump, in execution order; moe_flags[L] says
    whether layer L is an MoE layer."""
    names = [prefix + n for n in MODULE_BEFORE_LAYERS]
    for L, is_moe in enumerate(moe_flags):
        names += [f"{prefix}layers.{L}.{s}" for s in layer_module_suffixes(bool(is_moe))]
    names += [prefix + n for n in MODULE_AFTER_LAYERS]
    return names


def module_name_patterns() -> list:
    """Regexes (to match whole names, steps.S. stripped) of every tensor a module-only dump may
    hold, the generated tokens and logits included."""
    layer = layer_module_suffixes(True) + [s for s in layer_module_suffixes(False) if s not in layer_module_suffixes(True)]
    top = MODULE_BEFORE_LAYERS + MODULE_AFTER_LAYERS + ["generate.tokens", "generate.logits"]
    return [re.escape(n) for n in top] + [r"layers\.\d+\.(" + "|".join(re.escape(s) for s in layer) + ")"]
