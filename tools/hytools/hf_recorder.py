"""The forward hooks (and two function wrappers) that capture the canonical tensors of
DUMP_FORMAT.md from HF's HYV3ForCausalLM, with HF's internal layouts undone: heads [T, n, d],
router top-k reordered, batch dimension dropped."""

from __future__ import annotations

import sys
from collections import OrderedDict
from contextlib import contextmanager

from dump_io import canonical_names
from hytools.hf_precision import PromoteFp32Mode
from hytools.module_names import DUMP_KINDS
from lazy_import import torch  # imported on first use


def is_moe(layer) -> bool:
    return hasattr(layer.mlp, "experts") and hasattr(layer.mlp, "gate")


def canonical_order(model_or_layers, prefix="") -> list:
    """Canonical tensor names of one forward, in execution order (a model, its layers, or one
    bool per layer saying whether it is an MoE layer)."""
    layers = model_or_layers.model.layers if hasattr(model_or_layers, "model") else model_or_layers
    return canonical_names([l if isinstance(l, bool) else is_moe(l) for l in layers], prefix)


def _strip_batch(t, ndim):
    while t.dim() > ndim:
        if t.shape[0] != 1:
            raise ValueError(f"expected batch 1, got shape {tuple(t.shape)}")
        t = t[0]
    return t


def _first_tensor(out):
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)):
        for o in out:
            if isinstance(o, torch.Tensor):
                return o
    if hasattr(out, "last_hidden_state"):
        return out.last_hidden_state
    raise TypeError(f"no tensor in module output of type {type(out)}")


def _order_topk(index, weights, corrected):
    """Reorder each row of HF's unsorted top-k by descending corrected score, ties to the lower
    expert id. index [T,k] int, weights [T,k], corrected [T,E]. CPU tensors."""
    idx = index.long()
    ids_asc, p1 = torch.sort(idx, dim=1)
    c = corrected.gather(1, ids_asc)
    _, p2 = torch.sort(c, dim=1, descending=True, stable=True)
    perm = p1.gather(1, p2)
    return idx.gather(1, perm), weights.gather(1, perm)


def topk_with_tiebreak(corrected, k):
    """Reference selection on the full corrected scores: descending, ties to the lower id.
    Returns (ids [T,k], sorted_scores [T,E])."""
    E = corrected.shape[-1]
    ar = torch.arange(E).expand_as(corrected)
    vals, perm = torch.sort(corrected, dim=1, descending=True, stable=True)
    return ar.gather(1, perm)[:, :k], vals


class Recorder:
    """Attaches capture hooks to an HYV3ForCausalLM. Captures land in `self.store` under
    `self.prefix + canonical name` while `self.enabled` is true."""

    def __init__(self, model, audit_mode: PromoteFp32Mode | None = None, kind: str = "full"):
        if kind not in DUMP_KINDS:
            raise ValueError(f"dump kind {kind!r}, expected one of {DUMP_KINDS}")
        self.kind = kind
        self.model = model
        self.cfg = model.config
        self.layers = model.model.layers
        self.modeling = sys.modules[type(self.layers[0].self_attn).__module__]
        self.prefix = ""
        self.enabled = False
        self.store = OrderedDict()
        self.router_info = {}   # prefix -> layer -> dict(margins, tie_mismatch)
        self.handles = []
        self.restore = []
        self.module_stack = audit_mode.module_stack if audit_mode is not None else []
        self.mode = audit_mode
        self.rope_calls = 0
        self.eager_calls = 0
        self._rope_capture = {}
        self.nq = self.cfg.num_attention_heads
        self.nkv = self.cfg.num_key_value_heads
        self.d = getattr(self.cfg, "head_dim", None) or self.cfg.hidden_size // self.nq
        self.k = self._topk()
        self._attach()

    # ---- bookkeeping -------------------------------------------------------------------------
    @contextmanager
    def _paused(self):
        if self.mode is None:
            yield
            return
        old = self.mode.paused
        self.mode.paused = True
        try:
            yield
        finally:
            self.mode.paused = old

    def _put(self, name, t):
        key = self.prefix + name
        if key in self.store:
            raise RuntimeError(f"tensor {key} captured twice (module called twice?)")
        self.store[key] = t.detach().to("cpu").clone()

    def _heads(self, t, n, T, inp=None):
        """[1?, n, T, d] or [1?, T, n, d] -> [T, n, d]."""
        t = _strip_batch(t, 3)
        if t.shape[0] == n and t.shape[1] == T and n != T:
            return t.transpose(0, 1)
        if t.shape[0] == T and t.shape[1] == n and n != T:
            return t
        if n == T and inp is not None:
            i3 = _strip_batch(inp, 3)
            # a transposed view of a contiguous [T, n, d] tensor has stride d along dim 0
            if i3.stride(0) == self.d and i3.stride(1) == n * self.d:
                return t.transpose(0, 1)
            return t
        if n == T:
            return t.transpose(0, 1)  # HF's layout: heads before positions
        raise ValueError(f"cannot place heads in shape {tuple(t.shape)} (n={n}, T={T})")

    def _topk(self):
        """Experts per token (the family recorders override this)."""
        return self.cfg.num_experts_per_tok

    def _hook(self, module, fn, pre=False):
        if pre:
            h = module.register_forward_pre_hook(fn)
        else:
            h = module.register_forward_hook(fn)
        self.handles.append(h)

    def _attach_module_stack(self):
        """The module path stack (for the dtype audit): pushed before and popped after each module."""
        for name, mod in self.model.named_modules():
            def pre(m, i, _n=name):
                self.module_stack.append(_n)

            def post(m, i, o, _n=name):
                if self.module_stack and self.module_stack[-1] == _n:
                    self.module_stack.pop()
            self._hook(mod, pre, pre=True)
            self._hook(mod, post)

    def _out_hook(self, name, ndim):
        """A forward hook recording the module's (first) output, batch dimension dropped."""
        def fn(m, i, o):
            if self.enabled:
                with self._paused():
                    self._put(name, _strip_batch(_first_tensor(o), ndim))
        return fn

    def _in_hook(self, name, ndim):
        """A forward pre-hook recording the module's first input, batch dimension dropped."""
        def fn(m, i):
            if self.enabled:
                with self._paused():
                    self._put(name, _strip_batch(i[0], ndim))
        return fn

    # ---- hooks -------------------------------------------------------------------------------
    def _attach(self):
        model = self.model
        self._attach_module_stack()
        out_hook, in_hook = self._out_hook, self._in_hook

        self._hook(model.model.embed_tokens, out_hook("embed", 2))
        for L, layer in enumerate(self.layers):
            p = f"layers.{L}."
            at = layer.self_attn
            self._hook(layer.input_layernorm, out_hook(p + "input_norm", 2))

            full = self.kind == "full"

            def proj_hook(name, n, record=True):
                def fn(m, i, o):
                    if self.enabled:
                        with self._paused():
                            t = _strip_batch(o, 2)
                            self._cur_T = t.shape[0]
                            if record:
                                self._put(name, t.reshape(t.shape[0], n, self.d))
                return fn
            # module-only: the q_proj hook records nothing, it only tells the norm hooks T
            self._hook(at.q_proj, proj_hook(p + "attn.q", self.nq, record=full))
            if full:
                self._hook(at.k_proj, proj_hook(p + "attn.k", self.nkv))
                self._hook(at.v_proj, proj_hook(p + "attn.v", self.nkv))

            def norm_hook(name, n):
                def fn(m, i, o):
                    if self.enabled:
                        with self._paused():
                            T = self._cur_T
                            self._put(name, self._heads(o, n, T, i[0]))
                return fn
            self._hook(at.q_norm, norm_hook(p + "attn.q_norm", self.nq))
            self._hook(at.k_norm, norm_hook(p + "attn.k_norm", self.nkv))

            def attn_pre(m, i, _L=L):
                self._cur_attn = m
                self._cur_layer = _L
            self._hook(at, attn_pre, pre=True)
            if full:
                self._hook(at.o_proj, in_hook(p + "attn.context", 2), pre=True)
            self._hook(at.o_proj, out_hook(p + "attn.out", 2))
            if full:
                self._hook(layer.post_attention_layernorm, in_hook(p + "resid_mid", 2), pre=True)
            self._hook(layer.post_attention_layernorm, out_hook(p + "post_norm", 2))
            self._hook(layer.mlp, out_hook(p + "mlp.out", 2))
            if is_moe(layer):
                self._hook(layer.mlp.gate, self._router_hook(L, layer.mlp))
                self._hook(layer.mlp.experts, out_hook(p + "moe.routed_out", 2))
                self._hook(layer.mlp.shared_experts, out_hook(p + "moe.shared_out", 2))
            self._hook(layer, out_hook(p + "out", 2))
        self._hook(model.model.norm, out_hook("final_norm", 2))
        self._hook(model.lm_head, out_hook("logits", 2))

        self._cur_T = None
        self._cur_attn = None
        self._cur_layer = None

        if self.kind != "full":
            return  # module-only: forward hooks on modules, no function wrappers
        # function wrappers: RoPE application and the eager attention kernel
        md = self.modeling
        rec = self
        if hasattr(md, "eager_attention_forward"):
            orig_eager = md.eager_attention_forward

            def eager_wrapper(module, query, key, value, attention_mask, *a, **kw):
                if rec.enabled:
                    rec.eager_calls += 1
                    with rec._paused():
                        L = getattr(module, "layer_idx", rec._cur_layer)
                        T = query.shape[2]
                        rec._put(f"layers.{L}.attn.q_rope", query[0].transpose(0, 1))
                        rec._put(f"layers.{L}.attn.k_rope", key[0, :, -T:, :].transpose(0, 1))
                return orig_eager(module, query, key, value, attention_mask, *a, **kw)
            self._patch_global("eager_attention_forward", orig_eager, eager_wrapper)
        if hasattr(md, "apply_rotary_pos_emb"):
            orig_rope = md.apply_rotary_pos_emb

            def rope_wrapper(q, k, *a, **kw):
                qe, ke = orig_rope(q, k, *a, **kw)
                if rec.enabled:
                    rec.rope_calls += 1
                    with rec._paused():
                        rec._rope_capture[(rec.prefix, rec._cur_layer)] = (
                            qe.detach().to("cpu").clone(), ke.detach().to("cpu").clone())
                return qe, ke
            self._patch_global("apply_rotary_pos_emb", orig_rope, rope_wrapper)

    def _patch_global(self, name, orig, new):
        patch_function(self.modeling, self.model, name, orig, new, self.restore)

    def _router_hook(self, L, moe):
        p = f"layers.{L}."

        def fn(m, i, o):
            if not self.enabled:
                return
            with self._paused():
                outs = [x for x in (o if isinstance(o, (tuple, list)) else (o,)) if isinstance(x, torch.Tensor)]
                ints = [x for x in outs if not x.is_floating_point()]
                flts = [x for x in outs if x.is_floating_point()]
                E = moe.gate.weight.shape[0]
                logits = [x for x in flts if x.shape[-1] == E and x.shape[-1] != self.k]
                wts = [x for x in flts if x.shape[-1] == self.k]
                if len(ints) != 1:
                    raise RuntimeError(f"unexpected router outputs: {[(tuple(x.shape), x.dtype) for x in outs]}")
                index = _strip_batch(ints[0], 2)
                if len(logits) == 2 and not wts:
                    # (logits, dense per-expert weights) variant
                    wts = [_strip_batch(logits[1], 2).gather(1, index.long())]
                    logits = logits[:1]
                if len(logits) != 1 or len(wts) != 1:
                    raise RuntimeError(f"unexpected router outputs: {[(tuple(x.shape), x.dtype) for x in outs]}")
                logits = _strip_batch(logits[0], 2)
                weights = _strip_batch(wts[0], 2)
                bias = moe.e_score_correction_bias
                # identical ops to HF's router, on the same device and dtypes
                scores = torch.sigmoid(logits)
                corrected = scores + bias
                logits_c, scores_c, corr_c = logits.cpu(), scores.cpu(), corrected.cpu()
                ids, w = _order_topk(index.cpu(), weights.cpu(), corr_c)
                ref_ids, sorted_c = topk_with_tiebreak(corr_c, self.k)
                same = [set(a.tolist()) == set(b.tolist()) for a, b in zip(ids, ref_ids)]
                margins = (sorted_c[:, self.k - 1] - sorted_c[:, self.k]).double() if sorted_c.shape[1] > self.k else None
                self._put(p + "moe.router_logits", logits_c)
                if self.kind == "full":
                    self._put(p + "moe.scores", scores_c)
                self._put(p + "moe.topk_ids", ids.to(torch.int32))
                self._put(p + "moe.topk_weights", w)
                self.router_info.setdefault(self.prefix, {})[L] = {
                    "margins": margins, "set_matches_tiebreak_rule": same,
                    "corrected_dtype": str(corrected.dtype)}
        return fn

    def finish_step(self):
        """Fill q_rope/k_rope from the RoPE wrapper where the eager wrapper did not fire."""
        for (prefix, L), (qe, ke) in list(self._rope_capture.items()):
            if prefix != self.prefix:
                continue
            T = qe.shape[2]
            for nm, t, n in (("q_rope", qe, self.nq), ("k_rope", ke, self.nkv)):
                key = f"{prefix}layers.{L}.attn.{nm}"
                if key not in self.store:
                    self.store[key] = self._heads(t, n, T)
            del self._rope_capture[(prefix, L)]

    def close(self):
        for h in self.handles:
            h.remove()
        self.handles = []
        for fn in reversed(self.restore):
            fn()
        self.restore = []


def patch_function(modeling, model, name, orig, new, restore_list):
    """Replace a module-level function of the modeling module, and any instance attribute of the
    model's modules that holds the original (transformers' use_kernelized_func keeps a copy on
    each attention module). Appends undo callbacks to restore_list. Returns the count of places."""
    n = 0
    setattr(modeling, name, new)
    restore_list.append(lambda: setattr(modeling, name, orig))
    n += 1
    for mod in model.modules():
        d = vars(mod)
        for k, v in list(d.items()):
            if v is orig:
                setattr(mod, k, new)
                restore_list.append(lambda m=mod, k=k: setattr(m, k, orig))
                n += 1
            elif isinstance(v, dict):
                for kk, vv in list(v.items()):
                    if vv is orig:
                        v[kk] = new
                        restore_list.append(lambda dd=v, kk=kk: dd.__setitem__(kk, orig))
                        n += 1
    return n


