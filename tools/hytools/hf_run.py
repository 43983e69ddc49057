"""One HF run under the recorder: prefill plus greedy decode steps with the KV cache, then the
checks and the manifest of the dump it writes (dump_model)."""

from __future__ import annotations

from collections import OrderedDict

from dump_io import write_dump
from hytools.checkpoint import sha256_file
from hytools.families import family_or_none, forward_names
from hytools.hf_precision import PromoteFp32Mode, rpr_knobs, set_strict_fp
from hytools.hf_recorder import Recorder, canonical_order, is_moe
from hytools.hf_recorder_hunyuan import HunyuanRecorder
from hytools.manifest import model_section, new_manifest, producer_section
from hytools.module_names import module_names
from lazy_import import torch  # imported on first use


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
               exact_f64=None, census=False, dump_kind=None, before_step=None, weights_dir=None):
    """Run the model on token_ids (+ N greedy steps) with hooks and write a hyoracle dump.

    checkpoint: a label recorded as model.checkpoint (the path as the user gave it).
    weights_dir: the checkpoint directory the model was loaded from: its weights fingerprint is
            recorded as model.weights_fingerprint (hytools.checkpoint.weights_fingerprint).

    exact_f64: None = decide from the model dtype (float64 -> promote fp32 casts and audit).
    census: for non-f64 runs, record where floating tensors of a dtype other than the model's
            are produced (a map of HF's fp32 islands).
    dump_kind: None (the goldens' full dump, manifest unchanged), "full" or "modules" (module-only:
            forward hooks on modules only, module_names.py); recorded as hf_run.dump_kind.
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
    fam = family_or_none(model.config.model_type)
    hunyuan = fam is not None and fam.family == "hunyuan_v1"
    rec = (HunyuanRecorder if hunyuan else Recorder)(model, audit_mode=mode, kind=kind)
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
    moe_flags = [is_moe(l) for l in model.model.layers]
    n_steps = generate_n - 1 if (generate_n > 0 and record_steps) else 0
    if hunyuan:  # HF has no cross-layer attention: every layer owns its K/V
        def names_of(flags, prefix=""):
            return forward_names("hunyuan_v1", [(f, True) for f in flags], prefix, modules_only=kind != "full")
    else:
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
    producer = producer_section("hf-transformers", transformers.__version__, _device_name(dev), dname, precision,
                                mode_name or ("generate" if generate_n > 0 else "prefill"))
    if hunyuan:  # whose code computed it (io/family.h): HF's class, HF's semantics
        producer["class"] = type(model).__name__
        producer["semantics"] = fam.semantics
    model_info = model_section(cfg.model_type, cfg.num_hidden_layers,
                               config_sha256=sha256_file(config_path) if config_path else None,
                               checkpoint=checkpoint, weights_dir=weights_dir)
    if hunyuan:  # as hyoracle's own writer records them (io/dump.cpp); orders the dump's tensors
        for k, v in (("family", fam.family), ("semantics", fam.semantics), ("cla_share_factor", 1)):
            model_info[k] = v
    manifest = new_manifest(producer, model_info, token_ids)
    if generate_n > 0:
        manifest["generate"] = OrderedDict(n=generate_n, rule="greedy argmax, ties to the lowest index",
                                           kv_cache=True, steps_recorded=n_steps)
    # the router of the first MoE layer (hy_v3: layer 1, after the dense layer 0)
    probe = "layers.1.moe.router_logits"
    if hunyuan:
        probe = f"layers.{moe_flags.index(True)}.moe.router_logits" if True in moe_flags else None
    run_info = OrderedDict(
        torch=torch.__version__,
        attn_implementation=getattr(cfg, "_attn_implementation", None),
        experts_implementation=getattr(cfg, "_experts_implementation", "<no knob>"),
        tf32=False, float32_matmul_precision=torch.get_float32_matmul_precision(),
        reduced_precision_reduction=rpr_knobs(),
        topk_order="descending softmax probability, ties to the lower expert id" if hunyuan else
        "descending corrected score (score + e_score_correction_bias), ties to the lower expert id",
        router_dtype=str(st[probe].dtype).replace("torch.", "") if probe in st else None)
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


