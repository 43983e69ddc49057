#!/usr/bin/env python3
"""Write a hyoracle activation dump (docs: DUMP_FORMAT.md, version 1) from an HF transformers
`HYV3ForCausalLM` (model_type `hy_v3`).

The module attaches forward hooks (and two light function wrappers) to a loaded model, runs one
prefill over the prompt and, optionally, N greedy decode steps with the KV cache, and writes

    <out>/manifest.json
    <out>/activations.safetensors

with the canonical tensor names of DUMP_FORMAT.md, batch 1, leading dimension T, HF's internal
layouts undone (heads [T, n, d], router top-k reordered, batch dimension dropped).

Library use (the same code dumps patched "planted bug" models):

    import hf_dump
    hf_dump.set_strict_fp()                       # no TF32, "highest" fp32 matmul precision
    model, info = hf_dump.load_model(ckpt, "bfloat16", device="cuda")
    summary = hf_dump.dump_model(model, token_ids, out_dir, generate_n=5,
                                 precision="bf16", config_path=ckpt + "/config.json")

For a float64 run (precision "exact") call `prepare_exact_f64(model)` after loading; `dump_model`
then runs the forward under `PromoteFp32Mode`, which rewrites every hard-coded float32 cast of
the HF code (`.float()`, `.to(torch.float32)`, `dtype=torch.float32`) to float64 and audits that
every floating tensor produced during the forward is float64.

CLI:
    python3 tools/hf_dump.py CHECKPOINT_DIR OUT_DIR --tokens 1,2,3 --dtype bfloat16 \
        [--generate 5] [--device cuda] [--no-steps] [--kind full|modules] \
        [--attn-implementation sdpa] [--experts-implementation grouped_mm|default]

Module-only mode (`--kind modules`, `dump_model(..., dump_kind="modules")`) records only what
forward hooks on modules give (no function wrappers): embed, per layer input_norm, attn.q_norm,
attn.k_norm, attn.out, post_norm, moe.router_logits/topk_ids/topk_weights/routed_out/shared_out,
mlp.out, out, then final_norm and logits (plus input ids, generate.* and the steps.S.* copies).

Needs torch, transformers (with hy_v3) and nothing else: the safetensors writer is built in.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import sys
from collections import OrderedDict
from contextlib import contextmanager

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lazy_import import torch  # noqa: E402  (imported on first use: --help works without torch)
# The one dump writer/reader of the Python tools; re-exported for make_hf_goldens.py.
from dump_io import (canonical_dtype, canonical_names, dump_order, order_key, read_dump,  # noqa: E402,F401
                     read_safetensors, sha256_file, write_dump, write_safetensors)

# --------------------------------------------------------------------------------------------
# precision control
# --------------------------------------------------------------------------------------------

def set_strict_fp():
    """No TF32 anywhere, "highest" float32 matmul precision, deterministic algorithms where cheap."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    for knob in ("allow_bf16_reduced_precision_reduction", "allow_fp16_reduced_precision_reduction"):
        try:
            setattr(torch.backends.cuda.matmul, knob, False)
        except (AttributeError, AssertionError):  # older torch
            pass
    torch.set_float32_matmul_precision("highest")


def _rpr_knobs():
    out = OrderedDict()
    for k in ("allow_bf16_reduced_precision_reduction", "allow_fp16_reduced_precision_reduction"):
        try:
            out[k] = getattr(torch.backends.cuda.matmul, k)
        except (AttributeError, AssertionError):
            out[k] = None
    return out


def _fname(func) -> str:
    n = getattr(func, "__name__", None)
    if n in (None, "__get__", "__set__"):
        q = getattr(func, "__qualname__", None) or repr(func)
        return q
    return n


@functools.lru_cache(maxsize=None)
def _promote_fp32_mode_class():
    """The TorchFunctionMode subclass below, defined on first use (importing needs no torch)."""
    from torch.overrides import TorchFunctionMode

    class PromoteFp32Mode(TorchFunctionMode):
        """A TorchFunctionMode for float64 runs and for dtype census.

        promote=True: every float32 dtype argument of a torch call (`.to(torch.float32)`,
            `dtype=torch.float32`, `.float()`) is rewritten to float64. This neutralises HF's
            hard-coded fp32 casts: RMSNorm's `.to(torch.float32)`, RoPE's `.float()` positions and
            `inv_freq.to(dtype=torch.float)`, the router's `F.linear(h.float(), W.float())`, the eager
            softmax's `dtype=torch.float32`, and any other such cast.
        expect: if set (a dtype), every floating tensor returned by a torch call whose dtype differs
            is recorded in `violations` (function, dtype, module path, shape).
        census: record, per (module path with layer indices starred, function, dtype), how many
            floating outputs had a dtype other than `census_ref` (used to map where HF computes fp32
            in a bf16 run).
        `paused` suspends everything (the recorder's own bookkeeping runs paused).
        """

        def __init__(self, promote=False, expect=None, census_ref=None, module_stack=None):
            super().__init__()
            self.promote = promote
            self.expect = expect
            self.census_ref = census_ref
            self.module_stack = module_stack if module_stack is not None else []
            self.paused = False
            self.violations = []
            self.n_violations = 0
            self.n_checked = 0
            self.census = {}
            self.n_promoted = 0
            self.promoted_at = {}

        def _note_promotion(self, func):
            self.n_promoted += 1
            key = f"{self._where()} | {_fname(func)}"
            self.promoted_at[key] = self.promoted_at.get(key, 0) + 1

        def _swap(self, v, func=None):
            if v is torch.float32:
                self._note_promotion(func)
                return torch.float64
            return v

        def _where(self):
            if not self.module_stack:
                return "<top>"
            return re.sub(r"\.\d+(?=\.|$)", ".*", self.module_stack[-1])

        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if self.paused:
                return func(*args, **kwargs)
            if self.promote:
                if func is torch.Tensor.float:
                    self._note_promotion(func)
                    func, args = torch.Tensor.to, (args[0], torch.float64) + tuple(args[1:])
                else:
                    args = tuple(self._swap(a, func) for a in args)
                    kwargs = {k: self._swap(v, func) for k, v in kwargs.items()}
            out = func(*args, **kwargs)
            if self.expect is not None or self.census_ref is not None:
                outs = out if isinstance(out, (tuple, list)) else (out,)
                for o in outs:
                    if isinstance(o, torch.Tensor) and o.is_floating_point():
                        self.n_checked += 1
                        if self.expect is not None and o.dtype != self.expect:
                            self.n_violations += 1
                            if len(self.violations) < 50:
                                self.violations.append({"func": _fname(func), "dtype": str(o.dtype),
                                                        "module": self._where(), "shape": list(o.shape)})
                        if self.census_ref is not None and o.dtype != self.census_ref:
                            key = f"{self._where()} | {_fname(func)} -> {str(o.dtype).replace('torch.', '')}"
                            self.census[key] = self.census.get(key, 0) + 1
            return out

    return PromoteFp32Mode


def PromoteFp32Mode(**kwargs):  # noqa: N802  (a class in all but its definition time)
    """A new PromoteFp32Mode(**kwargs); see the class in _promote_fp32_mode_class."""
    return _promote_fp32_mode_class()(**kwargs)


def prepare_exact_f64(model):
    """Make a float64-loaded model compute the exact math: recompute RoPE inv_freq in double as
    theta^(-2i/d) (HF builds it in float32 at construction), and hold the F32
    e_score_correction_bias as float64 (exact: every float32 value is a float64 value).
    Returns a dict describing what was done."""
    cfg = model.config
    done = {"inv_freq": []}
    rp = getattr(cfg, "rope_parameters", None) or {}
    theta = float(rp.get("rope_theta", getattr(cfg, "rope_theta", None)))
    rtype = rp.get("rope_type", "default")
    if rtype != "default":
        raise ValueError(f"exact mode supports rope_type default only, got {rtype}")
    d = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    rots = [(n, m) for n, m in model.named_modules() if isinstance(getattr(m, "inv_freq", None), torch.Tensor)]
    if not rots:
        raise RuntimeError("no module with an inv_freq buffer found")
    for rname, rot in rots:
        if rot.inv_freq.numel() * 2 != d:
            raise RuntimeError(f"{rname}.inv_freq has {rot.inv_freq.numel()} entries, head_dim {d}")
        if float(getattr(rot, "attention_scaling", 1.0)) != 1.0:
            raise ValueError("attention_scaling != 1 for default rope?")
        dev = rot.inv_freq.device
        i2 = torch.arange(0, d, 2, dtype=torch.float64, device=dev)
        inv = torch.pow(torch.tensor(theta, dtype=torch.float64, device=dev), -(i2 / d))
        old = rot.inv_freq.detach().clone()
        rot.inv_freq = inv.clone()
        if isinstance(getattr(rot, "original_inv_freq", None), torch.Tensor):
            rot.original_inv_freq = inv.clone()
        done["inv_freq"].append({"module": rname, "theta": theta, "dim": d, "old_dtype": str(old.dtype),
                                 "max_abs_change": float((old.double() - inv).abs().max())})
    nb = 0
    for layer in model.model.layers:
        mlp = layer.mlp
        if hasattr(mlp, "e_score_correction_bias"):
            b = mlp.e_score_correction_bias
            done.setdefault("bias_dtype_before", str(b.dtype))
            mlp.e_score_correction_bias = b.detach().to(torch.float64)
            nb += 1
    done["bias_buffers_to_f64"] = nb
    return done


# --------------------------------------------------------------------------------------------
# model loading
# --------------------------------------------------------------------------------------------

DTYPES = ("float64", "float32", "bfloat16")  # canonical names (dump_io.canonical_dtype); torch.<name>


def load_model(ckpt_dir, dtype, device="cuda", attn_implementation="eager",
               experts_implementation="eager"):
    """from_pretrained with eager attention and eager experts (the default, used for the goldens),
    or with HF's fast paths: attn_implementation="sdpa" (or another name HF knows) and
    experts_implementation="grouped_mm" / "batched_mm", or None for HF's own default. Returns
    (model, info) where info holds HF's loading info (missing/unexpected keys...) and the knobs
    actually in effect. Raises if any key is missing, or if the attention implementation in effect
    is not the one asked for."""
    from transformers import HYV3ForCausalLM

    td = getattr(torch, canonical_dtype(dtype)) if isinstance(dtype, str) else dtype
    info = {"requested": {"dtype": str(td), "attn_implementation": attn_implementation,
                          "experts_implementation": experts_implementation}, "notes": []}
    kw = dict(attn_implementation=attn_implementation, output_loading_info=True)
    if experts_implementation is None:  # HF's default experts implementation
        tries = [dict(dtype=td), dict(torch_dtype=td)]
    else:
        tries = [dict(dtype=td, experts_implementation=experts_implementation),
                 dict(torch_dtype=td, experts_implementation=experts_implementation),
                 dict(dtype=td), dict(torch_dtype=td)]
    last = None
    for extra in tries:
        try:
            model, linfo = HYV3ForCausalLM.from_pretrained(ckpt_dir, **kw, **extra)
            info["from_pretrained_kwargs"] = sorted(list(kw) + list(extra))
            break
        except TypeError as e:  # unknown kwarg
            last = e
            info["notes"].append(f"from_pretrained rejected {sorted(extra)}: {e}")
    else:
        raise last
    def _norm(v):
        if isinstance(v, (set, list, tuple)):
            v = [str(x) for x in v]
            return sorted(v)
        return str(v)
    linfo = {k: _norm(v) for k, v in dict(linfo).items()}
    info["loading_info"] = linfo
    missing = linfo.get("missing_keys") or []
    if missing:
        raise RuntimeError(f"HF reports missing keys: {missing}")
    cfg = model.config
    if experts_implementation == "eager" and attn_implementation == "eager":
        # the goldens' path, unchanged: eager experts forced, eager attention required
        if hasattr(cfg, "_experts_implementation") and cfg._experts_implementation != "eager":
            info["notes"].append(f"_experts_implementation was {cfg._experts_implementation!r}; forced 'eager'")
            try:
                model.set_experts_implementation("eager")
            except Exception:
                cfg._experts_implementation = "eager"
        info["attn_implementation"] = getattr(cfg, "_attn_implementation", None)
        info["experts_implementation"] = getattr(cfg, "_experts_implementation", "<no knob>")
        if info["attn_implementation"] != "eager":
            raise RuntimeError(f"attention implementation is {info['attn_implementation']!r}, not eager")
        for m in model.modules():
            c = getattr(m, "config", None)
            if c is not None and hasattr(c, "_experts_implementation") and c._experts_implementation != "eager":
                raise RuntimeError(f"experts implementation {c._experts_implementation!r} on {type(m).__name__}")
    else:
        if experts_implementation is not None and getattr(cfg, "_experts_implementation", None) != experts_implementation:
            info["notes"].append(f"_experts_implementation was {getattr(cfg, '_experts_implementation', None)!r}; "
                                 f"set to {experts_implementation!r}")
            set_experts_implementation(model, experts_implementation)
        info["attn_implementation"] = getattr(cfg, "_attn_implementation", None)
        info["experts_implementation"] = experts_implementation_in_effect(model)
        if attn_implementation is not None and info["attn_implementation"] != attn_implementation:
            raise RuntimeError(f"attention implementation is {info['attn_implementation']!r}, "
                               f"not {attn_implementation!r}")
    model.eval()
    model.to(device)
    return model, info


def set_experts_implementation(model, name):
    """Switch the experts implementation of a loaded model ("eager", "grouped_mm", "batched_mm"):
    HF's setter where it has one, else the config attribute every experts module reads per call."""
    try:
        model.set_experts_implementation(name)
    except Exception:  # noqa: BLE001  (no setter in this transformers, or it refused)
        pass
    seen = set()
    for m in [model] + list(model.modules()):
        c = getattr(m, "config", None)
        if c is not None and id(c) not in seen and hasattr(c, "_experts_implementation"):
            seen.add(id(c))
            if c._experts_implementation != name:
                c._experts_implementation = name
    got = experts_implementation_in_effect(model)
    if got != name:
        raise RuntimeError(f"could not set the experts implementation to {name!r} (in effect: {got!r})")


def experts_implementation_in_effect(model):
    """The experts implementation the MoE blocks' experts modules will use (their config's
    _experts_implementation; "<no knob>" when this transformers has none; "mixed: ..." if they differ)."""
    vals = set()
    for m in model.modules():
        if hasattr(m, "gate_up_proj") and hasattr(m, "down_proj"):
            c = getattr(m, "config", None) or model.config
            vals.add(str(getattr(c, "_experts_implementation", "<no knob>")))
    if not vals:
        return str(getattr(model.config, "_experts_implementation", "<no knob>"))
    return vals.pop() if len(vals) == 1 else "mixed: " + ",".join(sorted(vals))


# --------------------------------------------------------------------------------------------
# canonical names
# --------------------------------------------------------------------------------------------

def _is_moe(layer) -> bool:
    return hasattr(layer.mlp, "experts") and hasattr(layer.mlp, "gate")


def canonical_order(model_or_layers, prefix="") -> list:
    """Canonical tensor names of one forward, in execution order (a model, its layers, or one
    bool per layer saying whether it is an MoE layer)."""
    layers = model_or_layers.model.layers if hasattr(model_or_layers, "model") else model_or_layers
    return canonical_names([l if isinstance(l, bool) else _is_moe(l) for l in layers], prefix)


# The tensors a module-only dump holds per layer: what forward hooks on modules alone give (an
# SGLang dumper in non-intrusive mode, a vLLM hook): no RoPE outputs, no attention context, no
# q/k/v projections, no residual midpoint, no router scores.
MODULE_LAYER_SUFFIXES = ["input_norm", "attn.q_norm", "attn.k_norm", "attn.out", "post_norm"]
MODULE_MOE_SUFFIXES = ["moe.router_logits", "moe.topk_ids", "moe.topk_weights", "moe.routed_out", "moe.shared_out"]
MODULE_TAIL_SUFFIXES = ["mlp.out", "out"]
DUMP_KINDS = ("full", "modules")


def module_names(moe_flags, prefix="") -> list:
    """Tensor names of one forward in a module-only dump, in execution order."""
    names = [prefix + "input_ids", prefix + "embed"]
    for L, is_moe in enumerate(moe_flags):
        p = f"{prefix}layers.{L}."
        names += [p + s for s in MODULE_LAYER_SUFFIXES]
        if is_moe:
            names += [p + s for s in MODULE_MOE_SUFFIXES]
        names += [p + s for s in MODULE_TAIL_SUFFIXES]
    names += [prefix + "final_norm", prefix + "logits"]
    return names


# --------------------------------------------------------------------------------------------
# the recorder
# --------------------------------------------------------------------------------------------

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
        self.k = self.cfg.num_experts_per_tok
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

    def _hook(self, module, fn, pre=False):
        if pre:
            h = module.register_forward_pre_hook(fn)
        else:
            h = module.register_forward_hook(fn)
        self.handles.append(h)

    # ---- hooks -------------------------------------------------------------------------------
    def _attach(self):
        model = self.model
        # module path stack (for the dtype audit)
        for name, mod in model.named_modules():
            def pre(m, i, _n=name):
                self.module_stack.append(_n)

            def post(m, i, o, _n=name):
                if self.module_stack and self.module_stack[-1] == _n:
                    self.module_stack.pop()
            self._hook(mod, pre, pre=True)
            self._hook(mod, post)

        def out_hook(name, ndim):
            def fn(m, i, o):
                if self.enabled:
                    with self._paused():
                        self._put(name, _strip_batch(_first_tensor(o), ndim))
            return fn

        def in_hook(name, ndim):
            def fn(m, i):
                if self.enabled:
                    with self._paused():
                        self._put(name, _strip_batch(i[0], ndim))
            return fn

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
            if _is_moe(layer):
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


# --------------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------------

def _device_name(dev):
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return "cpu"


def greedy(logits_row):
    """argmax, ties to the lowest index (torch.argmax returns the first maximal index)."""
    return int(torch.argmax(logits_row).item())


def logit_margin(row):
    v = torch.topk(row.double(), 2).values
    return float(v[0] - v[1])


def run_forward_and_generate(model, token_ids, generate_n, rec: Recorder | None, record_steps=True,
                             before_step=None):
    """Prefill + N-1 decode steps with the KV cache; greedy. Returns (tokens, logits_rows).
    before_step(s, past, T): called before decode step s (1..N-1) with the cache and the prompt
    length; it may change the cache and returns extra keyword arguments for that model call (or
    None). Used to plant decode-time bugs (tools: bench/verdicts)."""
    dev = next(model.parameters()).device
    ids = torch.tensor([token_ids], dtype=torch.long, device=dev)
    if rec is not None:
        rec.prefix = ""
        rec.enabled = True
    out = model(input_ids=ids, use_cache=True)
    if rec is not None:
        rec.finish_step()
        rec.enabled = False
    tokens, rows = [], []
    if generate_n <= 0:
        return tokens, rows
    row = out.logits[0, -1].detach()
    rows.append(row.to("cpu").clone())
    tokens.append(greedy(row))
    past = out.past_key_values
    for s in range(1, generate_n):
        nxt = torch.tensor([[tokens[-1]]], dtype=torch.long, device=dev)
        if rec is not None and record_steps:
            rec.prefix = f"steps.{s}."
            rec.enabled = True
        extra = (before_step(s, past, len(token_ids)) or {}) if before_step is not None else {}
        out = model(input_ids=nxt, past_key_values=past, use_cache=True, **extra)
        if rec is not None:
            rec.finish_step()
            rec.enabled = False
        past = out.past_key_values
        row = out.logits[0, -1].detach()
        rows.append(row.to("cpu").clone())
        tokens.append(greedy(row))
    return tokens, rows


def dump_model(model, token_ids, out_dir, generate_n=0, *, precision, config_path=None,
               checkpoint=None, mode_name=None, record_steps=True, extra_manifest=None,
               exact_f64=None, census=False, dump_kind=None, before_step=None):
    """Run the model on token_ids (+ N greedy steps) with hooks and write a hyoracle dump.

    exact_f64: None = decide from the model dtype (float64 -> promote fp32 casts and audit).
    census: for non-f64 runs, record where floating tensors of a dtype other than the model's
            are produced (a map of HF's fp32 islands).
    dump_kind: None (the goldens' full dump, manifest unchanged), "full" or "modules" (module-only:
            forward hooks on modules only, MODULE_*_SUFFIXES); recorded as hf_run.dump_kind.
    before_step: see run_forward_and_generate (decode-time bug patches).
    Returns a summary dict (tokens, margins, audit, ...)."""
    kind = dump_kind or "full"
    set_strict_fp()
    p0 = next(model.parameters())
    mdtype = p0.dtype
    dev = p0.device
    if exact_f64 is None:
        exact_f64 = mdtype == torch.float64
    stack = []
    mode = None
    if exact_f64:
        mode = PromoteFp32Mode(promote=True, expect=torch.float64, module_stack=stack)
    elif census:
        mode = PromoteFp32Mode(promote=False, census_ref=mdtype, module_stack=stack)
    rec = Recorder(model, audit_mode=mode, kind=kind)
    old_default = torch.get_default_dtype()
    try:
        with torch.no_grad():
            if mode is not None:
                if exact_f64:
                    torch.set_default_dtype(torch.float64)
                with mode:
                    tokens, rows = run_forward_and_generate(model, token_ids, generate_n, rec, record_steps,
                                                            before_step)
            else:
                tokens, rows = run_forward_and_generate(model, token_ids, generate_n, rec, record_steps,
                                                        before_step)
    finally:
        torch.set_default_dtype(old_default)
        rec.close()

    T = len(token_ids)
    st = rec.store
    st["input_ids"] = torch.tensor(token_ids, dtype=torch.int64)
    for s in range(1, generate_n if record_steps else 1):
        st[f"steps.{s}.input_ids"] = torch.tensor([tokens[s - 1]], dtype=torch.int64)
    if generate_n > 0:
        st["generate.tokens"] = torch.tensor(tokens, dtype=torch.int64)
        st["generate.logits"] = torch.stack(rows, 0)
    moe_flags = [_is_moe(l) for l in model.model.layers]
    n_steps = generate_n - 1 if (generate_n > 0 and record_steps) else 0
    names_of = canonical_order if kind == "full" else module_names
    expected = names_of(moe_flags)
    for s in range(1, n_steps + 1):
        expected += names_of(moe_flags, prefix=f"steps.{s}.")
    missing = [n for n in expected if n not in st]
    if missing:
        raise RuntimeError(f"dump incomplete, missing {missing[:10]} ... ({len(missing)})")
    if kind != "full":
        extra_names = sorted(set(st) - set(expected) - {"generate.tokens", "generate.logits"})
        if extra_names:
            raise RuntimeError(f"module-only dump holds non-module tensors {extra_names[:10]}")
    # shape checks
    cfg = model.config
    H, V = cfg.hidden_size, cfg.vocab_size
    assert tuple(st["embed"].shape) == (T, H)
    assert tuple(st["logits"].shape) == (T, V)
    assert tuple(st["layers.0.attn.k_norm"].shape) == (T, rec.nkv, rec.d)
    if kind == "full":
        assert tuple(st["layers.0.attn.q"].shape) == (T, rec.nq, rec.d)
        assert tuple(st["layers.0.attn.q_rope"].shape) == (T, rec.nq, rec.d)
        assert tuple(st["layers.0.attn.context"].shape) == (T, rec.nq * rec.d)
    else:
        assert tuple(st["layers.0.attn.q_norm"].shape) == (T, rec.nq, rec.d)
    import transformers
    dname = {torch.float64: "float64", torch.float32: "float32", torch.bfloat16: "bfloat16"}[mdtype]
    manifest = OrderedDict()
    manifest["format"] = "hyoracle.dump"
    manifest["version"] = 1
    manifest["producer"] = OrderedDict(
        name="hf-transformers", version=transformers.__version__, device=_device_name(dev),
        dtype=dname, precision=precision,
        mode=mode_name or ("generate" if generate_n > 0 else "prefill"))
    model_info = OrderedDict(model_type=cfg.model_type)
    if config_path:
        model_info["config_sha256"] = sha256_file(config_path)
    model_info["num_hidden_layers"] = cfg.num_hidden_layers
    if checkpoint:
        model_info["checkpoint"] = checkpoint
    manifest["model"] = model_info
    manifest["input"] = OrderedDict(token_ids=list(token_ids), position_offset=0)
    if generate_n > 0:
        manifest["generate"] = OrderedDict(n=generate_n, rule="greedy argmax, ties to the lowest index",
                                           kv_cache=True, steps_recorded=n_steps)
    run_info = OrderedDict(
        torch=torch.__version__,
        attn_implementation=getattr(cfg, "_attn_implementation", None),
        experts_implementation=getattr(cfg, "_experts_implementation", "<no knob>"),
        tf32=False, float32_matmul_precision=torch.get_float32_matmul_precision(),
        reduced_precision_reduction=_rpr_knobs(),
        topk_order="descending corrected score (score + e_score_correction_bias), ties to the lower expert id",
        router_dtype=str(st["layers.1.moe.router_logits"].dtype).replace("torch.", "")
        if "layers.1.moe.router_logits" in st else None)
    if exact_f64:
        run_info["fp32_casts_promoted_to_f64"] = True
        run_info["f64_audit"] = {"floating_outputs_checked": mode.n_checked,
                                 "non_f64_outputs": mode.n_violations,
                                 "casts_rewritten": mode.n_promoted,
                                 "rewritten_at": dict(sorted(mode.promoted_at.items())),
                                 "examples": mode.violations[:10]}
    if kind != "full":
        pass  # no q_rope in a module-only dump
    elif rec.eager_calls == 0:
        run_info["q_rope_source"] = "apply_rotary_pos_emb wrapper"
    else:
        run_info["q_rope_source"] = "eager_attention_forward inputs"
    if dump_kind is not None:
        run_info["dump_kind"] = dump_kind
    if extra_manifest:
        run_info.update(extra_manifest)
    manifest["hf_run"] = run_info
    write_dump(out_dir, st, manifest)

    summary = {"tokens": tokens, "router": {}, "logit_margins": [logit_margin(r) for r in rows],
               "eager_calls": rec.eager_calls, "rope_calls": rec.rope_calls}
    for prefix, per in rec.router_info.items():
        for L, inf in per.items():
            summary["router"].setdefault(L, {})[prefix or "prefill"] = {
                "margins": inf["margins"].tolist() if inf["margins"] is not None else None,
                "set_matches_tiebreak_rule": inf["set_matches_tiebreak_rule"]}
    if mode is not None and exact_f64:
        summary["f64_audit"] = run_info["f64_audit"]
    if mode is not None and census:
        summary["dtype_census"] = dict(sorted(mode.census.items()))
    return summary


def _dtype_arg(text):
    """argparse type of --dtype: any spelling to the canonical name."""
    try:
        return canonical_dtype(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("out")
    ap.add_argument("--tokens", required=True, help="comma-separated token ids")
    ap.add_argument("--dtype", default="bfloat16", type=_dtype_arg, choices=sorted(DTYPES),
                    help="bfloat16 (default), float32 or float64; any case, also bf16, fp32, fp64")
    ap.add_argument("--generate", type=int, default=0)
    ap.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    ap.add_argument("--no-steps", action="store_true", help="do not record steps.S.* activations")
    ap.add_argument("--attn-implementation", default="eager",
                    help="eager (default, the goldens'), sdpa, ... (HF's attn_implementation)")
    ap.add_argument("--experts-implementation", default="eager",
                    help="eager (default), grouped_mm, batched_mm, or 'default' for HF's own choice")
    ap.add_argument("--kind", default=None, choices=["full", "modules"],
                    help="full (every canonical tensor) or modules (module forward hooks only); "
                         "recorded as hf_run.dump_kind (absent: the goldens' full dump)")
    a = ap.parse_args(argv)
    if a.device is None:
        a.device = "cuda" if torch.cuda.is_available() else "cpu"
    set_strict_fp()
    ei = None if a.experts_implementation == "default" else a.experts_implementation
    model, info = load_model(a.checkpoint, a.dtype, a.device, attn_implementation=a.attn_implementation,
                             experts_implementation=ei)
    print(json.dumps(info, indent=1))
    extra = {}
    if a.dtype == "float64":
        extra["exact_prep"] = prepare_exact_f64(model)
    prec = {"float64": "exact", "float32": "fp32", "bfloat16": "bf16"}[a.dtype]
    toks = [int(x) for x in a.tokens.split(",") if x.strip()]
    s = dump_model(model, toks, a.out, a.generate, precision=prec,
                   config_path=os.path.join(a.checkpoint, "config.json"), checkpoint=a.checkpoint,
                   record_steps=not a.no_steps, extra_manifest=extra, dump_kind=a.kind)
    print(json.dumps({"tokens": s["tokens"], "logit_margins": s["logit_margins"]}))


if __name__ == "__main__":
    main()
