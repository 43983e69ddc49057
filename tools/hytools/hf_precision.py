"""Precision control of an HF transformers run: strict fp32 settings (no TF32), the
TorchFunctionMode that promotes HF's hard-coded float32 casts to float64 (and audits or counts
dtypes), and the preparation of a float64-loaded model for the exact math."""

from __future__ import annotations

import functools
import re
from collections import OrderedDict

from lazy_import import torch  # imported on first use


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


def rpr_knobs():
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
    base^(-2i/d) (HF builds it in float32 at construction; base = theta, or for rope type
    "dynamic" with an alpha (Hunyuan v1's NTK-alpha) theta * alpha^(d / (d - 2))), and hold the F32
    e_score_correction_bias (hy_v3) or router weight mlp.gate.wg (Hunyuan v1) as float64 (exact:
    every float32 value is a float64 value). Returns a dict describing what was done."""
    cfg = model.config
    done = {"inv_freq": []}
    rp = getattr(cfg, "rope_parameters", None) or {}
    theta = float(rp.get("rope_theta", getattr(cfg, "rope_theta", None)))
    rtype = rp.get("rope_type", "default")
    d = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    base, alpha = theta, None
    if rtype == "dynamic" and rp.get("alpha"):
        alpha = float(rp["alpha"])
        base = theta * alpha ** (d / (d - 2))
    elif rtype != "default":
        raise ValueError(f"exact mode supports rope_type default (or dynamic with alpha) only, got {rtype}")
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
        inv = torch.pow(torch.tensor(base, dtype=torch.float64, device=dev), -(i2 / d))
        old = rot.inv_freq.detach().clone()
        rot.inv_freq = inv.clone()
        if isinstance(getattr(rot, "original_inv_freq", None), torch.Tensor):
            rot.original_inv_freq = inv.clone()
        entry = {"module": rname, "theta": theta, "dim": d, "old_dtype": str(old.dtype),
                 "max_abs_change": float((old.double() - inv).abs().max())}
        if alpha is not None:
            entry.update(alpha=alpha, base=base)
        done["inv_freq"].append(entry)
    nb = 0
    for layer in model.model.layers:
        mlp = layer.mlp
        if hasattr(mlp, "e_score_correction_bias"):
            b = mlp.e_score_correction_bias
            done.setdefault("bias_dtype_before", str(b.dtype))
            mlp.e_score_correction_bias = b.detach().to(torch.float64)
            nb += 1
    done["bias_buffers_to_f64"] = nb
    # Hunyuan v1's router (mlp.gate.wg) is built in fp32 whatever the model dtype; its fp32 input
    # cast is promoted to f64, so hold the weight as f64 too (exact, as for the bias above).
    wgs = [l.mlp.gate.wg for l in model.model.layers if hasattr(getattr(l.mlp, "gate", None), "wg")]
    if wgs:
        done["router_wg_dtype_before"] = str(wgs[0].weight.dtype)
        for wg in wgs:
            wg.to(torch.float64)
        done["router_wg_to_f64"] = len(wgs)
    return done


