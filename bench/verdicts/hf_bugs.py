"""Planted bugs for HF transformers' HYV3ForCausalLM (and, through hf_bugs_hunyuan.py,
HunYuanMoEV1ForCausalLM), applied at run time (as
tools/make_hf_goldens.py's apply_bug does for the goldens' bugs): module forwards replaced,
forward (pre-)hooks, one weight slice changed and restored, or a decode-step hook for
tools/hf_dump.run_forward_and_generate. Every patch works on HF's fast paths (sdpa attention,
grouped_mm experts) as well as on eager: none replaces an attention or experts kernel.
Definitions and expected tensors: variants.py. Needs torch."""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F


def moe_layers(model):
    return [(L, l.mlp) for L, l in enumerate(model.model.layers)
            if hasattr(l.mlp, "experts") and hasattr(l.mlp, "gate")]


def crop_cache(past, n):
    """Cut a DynamicCache back to its first n positions (every layer)."""
    if hasattr(past, "crop"):
        past.crop(n)
    elif hasattr(past, "layers"):
        for lay in past.layers:
            lay.keys = lay.keys[..., :n, :]
            lay.values = lay.values[..., :n, :]
    elif hasattr(past, "key_cache"):
        for i in range(len(past.key_cache)):
            past.key_cache[i] = past.key_cache[i][..., :n, :]
            past.value_cache[i] = past.value_cache[i][..., :n, :]
    else:
        raise RuntimeError(f"cannot crop a {type(past).__name__}")
    got = past.get_seq_length()
    if got != n:
        raise RuntimeError(f"cache crop to {n} left {got} positions")


def _experts_args(args, kwargs):
    """(hidden_states, top_k_index, top_k_weights) of an experts call, wherever they were passed."""
    names = ("hidden_states", "top_k_index", "top_k_weights")
    vals = list(args[:3]) + [kwargs.get(n) for n in names[len(args[:3]):]]
    if any(v is None for v in vals):
        raise RuntimeError(f"experts called with {len(args)} args and kwargs {sorted(kwargs)}")
    return vals


def expert_output(experts, x, e):
    """Expert e's FFN output for rows x [N, H], in fp32 (gate rows first in gate_up_proj, as the
    goldens verified; transposed storage handled)."""
    H = x.shape[-1]
    gu, dn = experts.gate_up_proj[e].float(), experts.down_proj[e].float()
    flag = bool(getattr(experts, "experts_are_transposed", False) or getattr(experts, "is_transposed", False))
    # storage [2I, H] / [H, I] (HF's), or transposed [H, 2I] / [I, H]: by shape where it tells
    gu_t = (gu.shape[0] == H) if gu.shape[0] != gu.shape[1] else flag
    dn_t = (dn.shape[1] == H) if dn.shape[0] != dn.shape[1] else flag
    a = x.float() @ (gu if gu_t else gu.t())
    gate, up = a.chunk(2, dim=-1)
    h = experts.act_fn(gate) * up
    y = h @ (dn if dn_t else dn.t())
    if y.shape[-1] != H:
        raise RuntimeError(f"expert output has {y.shape[-1]} columns, hidden size {H}")
    return y


def most_used_expert(topk_ids):
    """The expert id chosen for the most tokens ([T, k] ids; ties to the lower id) and its count."""
    ids = torch.as_tensor(topk_ids).long().flatten()
    counts = torch.bincount(ids)
    e = int(torch.argmax(counts))
    return e, int(counts[e])


def apply(model, bug, params, state):
    """Plant `bug` in a loaded model. state["calls"] counts the patch's effective calls.
    Returns (undo callbacks, before_step or None). The Hunyuan v1 bugs are hf_bugs_hunyuan.py's."""
    import hf_bugs_hunyuan
    if bug in hf_bugs_hunyuan.BUGS:
        return hf_bugs_hunyuan.apply(model, bug, params, state)
    layers = model.model.layers
    undo = []
    before_step = None
    state.setdefault("calls", 0)

    def set_fwd(mod, fn):
        mod.forward = fn
        undo.append(lambda m=mod: m.__dict__.pop("forward", None))

    def hook(mod, fn, pre=False):
        """fn(module, args, kwargs[, output]); torch < 2.0 has no with_kwargs: kwargs = {} there
        (HF calls the experts module positionally)."""
        try:
            h = (mod.register_forward_pre_hook(fn, with_kwargs=True) if pre
                 else mod.register_forward_hook(fn, with_kwargs=True))
        except TypeError:
            if pre:
                def plain(m, args, _fn=fn):
                    r = _fn(m, args, {})
                    return None if r is None else r[0]
                h = mod.register_forward_pre_hook(plain)
            else:
                h = mod.register_forward_hook(lambda m, args, out, _fn=fn: _fn(m, args, {}, out))
        undo.append(h.remove)

    if bug == "decode-pos-behind":
        def before_step(s, past, T):
            state["calls"] += 1
            dev = next(model.parameters()).device
            return {"position_ids": torch.tensor([[T + s - 2]], dtype=torch.long, device=dev)}
    elif bug == "kv-cache-drop-last":
        def before_step(s, past, T):
            dev = next(model.parameters()).device
            if s >= 2:
                state["calls"] += 1
                crop_cache(past, past.get_seq_length() - 1)
            return {"position_ids": torch.tensor([[T + s - 1]], dtype=torch.long, device=dev)}
    elif bug == "router-bias-bf16":
        import inspect
        for L, moe in moe_layers(model):
            g = moe.gate
            of = g.forward
            if len(inspect.signature(of).parameters) < 2:
                raise RuntimeError("router forward takes no bias argument")

            def fwd(hidden_states, *a, _of=of, **kw):
                state["calls"] += 1
                if a:
                    a = (a[0].to(torch.bfloat16),) + tuple(a[1:])
                else:
                    key = [x for x in kw if "bias" in x][0]
                    kw[key] = kw[key].to(torch.bfloat16)
                return _of(hidden_states, *a, **kw)
            set_fwd(g, fwd)
    elif bug == "expert-weights":
        experts = layers[params["layer"]].mlp.experts
        e = int(params["expert"])
        dn = experts.down_proj
        with torch.no_grad():
            saved = dn.data[e].clone()
            dn.data[e] = (saved.float() * float(params["scale"])).to(dn.dtype)

        def restore(dn=dn, e=e, saved=saved):
            with torch.no_grad():
                dn.data[e].copy_(saved)
        undo.append(restore)

        def count(m, args, kwargs):
            _, idx, _ = _experts_args(args, kwargs)
            if bool((idx == e).any()):
                state["calls"] += 1
        hook(experts, count, pre=True)
    elif bug == "combine-weights":
        for L, moe in moe_layers(model):
            def pre(m, args, kwargs):
                state["calls"] += 1
                if len(args) >= 3:
                    args = tuple(args[:2]) + (torch.roll(args[2], 1, dims=-1),) + tuple(args[3:])
                else:
                    kwargs = dict(kwargs)
                    kwargs["top_k_weights"] = torch.roll(kwargs["top_k_weights"], 1, dims=-1)
                return args, kwargs
            hook(moe.experts, pre, pre=True)
    elif bug == "head-scale":
        at = layers[params["layer"]].self_attn
        op = at.o_proj
        d = int(getattr(at, "head_dim", None) or model.config.head_dim)
        h, eps = int(params["head"]), float(params["eps"])
        sl = slice(h * d, (h + 1) * d)
        of = op.forward

        def fwd(x, _of=of):
            state["calls"] += 1
            y = _of(x)
            extra = F.linear(x[..., sl].float(), op.weight[:, sl].float()) * eps
            return (y.float() + extra).to(y.dtype)
        set_fwd(op, fwd)
    elif bug == "expert-scale":
        experts = layers[params["layer"]].mlp.experts
        e, eps = int(params["expert"]), float(params["eps"])

        def post(m, args, kwargs, out):
            x, idx, w = _experts_args(args, kwargs)
            mask = idx == e
            rows = mask.any(dim=-1).nonzero().flatten()
            if rows.numel() == 0:
                return None
            state["calls"] += 1
            we = (w.float() * mask.float()).sum(dim=-1)[rows]
            y = expert_output(m, x[rows], e) * we[:, None]
            out = out.clone()
            out[rows] = (out[rows].float() + eps * y).to(out.dtype)
            return out
        hook(experts, post)
    else:
        raise KeyError(bug)
    return undo, before_step


def undo_all(undo):
    for fn in reversed(undo):
        fn()


if __name__ == "__main__":
    sys.exit("library module: used by bench/verdicts/hf_worker.py")
