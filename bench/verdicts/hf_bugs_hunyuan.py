"""Planted bugs for transformers' HunYuanMoEV1ForCausalLM (definitions and expected tensors:
variants_hunyuan.py), applied at run time on any attention / experts implementation: none
replaces an attention or experts kernel. Module forwards replaced by instance attributes (a
forward hook still fires), the modeling module's apply_rotary_pos_emb wrapped (as the recorder
wraps it: hytools/hf_recorder.patch_function), a rotary buffer overwritten and restored.
decode-pos-behind is hf_bugs.py's. Needs torch."""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F

BUGS = ("qk-norm-before-rope", "rope-no-ntk-alpha", "topk-no-renorm", "shared-mlp-dropped", "router-logits-bf16")


def _modeling(model):
    return sys.modules[type(model.model.layers[0].self_attn).__module__]


def _gate_outputs(out):
    """(logits, weights, ids) of a HunYuanMoEV1Gate call (transformers 5.17 returns the triple)."""
    if not (isinstance(out, tuple) and len(out) == 3):
        raise RuntimeError(f"gate returned {type(out).__name__}, expected (logits, weights, ids)")
    return out


def _per_layer(value, L):
    """A config field that is one value or a list with one value per layer."""
    return value[L] if isinstance(value, (list, tuple)) else value


def apply(model, bug, params, state):
    """Plant `bug`; state["calls"] counts the patch's effective calls. Returns (undo callbacks,
    before_step or None)."""
    from hytools.hf_recorder import patch_function
    layers = model.model.layers
    undo = []
    state.setdefault("calls", 0)

    def set_fwd(mod, fn):
        mod.forward = fn
        undo.append(lambda m=mod: m.__dict__.pop("forward", None))

    if bug == "qk-norm-before-rope":
        # The attention's forward stays HF's: RoPE (the modeling module's function) is wrapped to
        # normalise q/k first with the current layer's norms, called through their class forward (no
        # hooks fire); the norm modules then return their input (their hooks see RoPE's output).
        cur = {}
        for L, lay in enumerate(layers):
            h = lay.self_attn.register_forward_pre_hook(lambda m, a, _L=L: cur.__setitem__("L", _L))
            undo.append(h.remove)
            for norm in (lay.self_attn.query_layernorm, lay.self_attn.key_layernorm):
                set_fwd(norm, lambda x: x)
        md = _modeling(model)
        orig = md.apply_rotary_pos_emb

        def rope_after_norm(q, k, *a, **kw):
            state["calls"] += 1
            at = layers[cur["L"]].self_attn
            qn, kn = at.query_layernorm, at.key_layernorm
            return orig(type(qn).forward(qn, q), type(kn).forward(kn, k), *a, **kw)
        restore = []
        patch_function(md, model, "apply_rotary_pos_emb", orig, rope_after_norm, restore)
        undo.extend(restore)
    elif bug == "rope-no-ntk-alpha":
        rot = model.model.rotary_emb
        d = int(model.config.head_dim)
        rp = getattr(model.config, "rope_parameters", None) or {}
        theta = float(rp.get("rope_theta", getattr(model.config, "rope_theta", 10000.0)))
        saved = {n: getattr(rot, n).clone() for n in ("inv_freq", "original_inv_freq") if hasattr(rot, n)}
        plain = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.float) / d))
        with torch.no_grad():
            for n in saved:
                getattr(rot, n).copy_(plain.to(getattr(rot, n)))

        def restore_buffers():
            with torch.no_grad():
                for n, t in saved.items():
                    getattr(rot, n).copy_(t)
        undo.append(restore_buffers)
        h = rot.register_forward_pre_hook(lambda m, a: state.__setitem__("calls", state["calls"] + 1))
        undo.append(h.remove)
    elif bug == "topk-no-renorm":
        for lay in layers:
            g = lay.mlp.gate

            def fwd(hidden_states, _g=g, _of=g.forward):
                state["calls"] += 1
                logits, w, ids = _gate_outputs(_of(hidden_states))
                raw = F.softmax(logits.float(), dim=-1).gather(-1, ids.long())   # HF's values before the division
                return logits, raw.to(w.dtype), ids
            set_fwd(g, fwd)
    elif bug == "shared-mlp-dropped":
        for lay in layers:
            def zeros(x):
                state["calls"] += 1
                return torch.zeros_like(x)
            set_fwd(lay.mlp.shared_mlp, zeros)
    elif bug == "router-logits-bf16":
        for L, lay in enumerate(layers):
            g = lay.mlp.gate
            k = int(getattr(g, "top_k", None) or _per_layer(model.config.moe_topk, L))

            def fwd(hidden_states, _g=g, _k=k):
                state["calls"] += 1
                h = hidden_states.reshape(-1, hidden_states.shape[-1]).to(torch.bfloat16)
                logits = F.linear(h, _g.wg.weight.to(torch.bfloat16))          # bf16 output
                w = F.softmax(logits, dim=1, dtype=torch.float)
                w, ids = torch.topk(w, _k, dim=-1)
                w = w / w.sum(dim=-1, keepdim=True)
                return logits, w, ids                                           # fp32 weights, as HF's
            set_fwd(g, fwd)
    else:
        raise KeyError(bug)
    return undo, None


if __name__ == "__main__":
    sys.exit("library module: used by bench/verdicts/hf_bugs.py")
