"""Loading an HF transformers model for a dump (HYV3ForCausalLM, or another class the config's
family names: hytools/families.py), and choosing its attention and experts implementations
(eager for the goldens, or HF's fast paths)."""

from __future__ import annotations

from dump_io import canonical_dtype
from lazy_import import torch  # imported on first use


DTYPES = ("float64", "float32", "bfloat16")  # canonical names (dump_io.canonical_dtype); torch.<name>


def load_model(ckpt_dir, dtype, device="cuda", attn_implementation="eager",
               experts_implementation="eager", model_class="HYV3ForCausalLM"):
    """from_pretrained with eager attention and eager experts (the default, used for the goldens),
    or with HF's fast paths: attn_implementation="sdpa" (or another name HF knows) and
    experts_implementation="grouped_mm" / "batched_mm", or None for HF's own default. Returns
    (model, info) where info holds HF's loading info (missing/unexpected keys...) and the knobs
    actually in effect. Raises if any key is missing, or if the attention implementation in effect
    is not the one asked for. model_class: the name of the transformers class to load with."""
    import transformers

    cls = getattr(transformers, model_class)

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
            model, linfo = cls.from_pretrained(ckpt_dir, **kw, **extra)
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


