"""A whole engine dump directory -> a hyoracle dump (the steps, the manifest, the write)."""

from __future__ import annotations

import os
import re
import struct
from collections import OrderedDict, defaultdict

from dump_io import write_dump
from hytools.convert_assemble import Assembler
from hytools.convert_read import Sizes, find_dump_dir, read_checkpoint_tensor, scan
from hytools.convert_rules import ENGINES, ConvertError
from hytools.manifest import model_section, new_manifest, producer_section
from lazy_import import torch  # imported on first use


def _dtype_name(dtype):
    """The manifest's name of a torch dtype: torch.bfloat16 -> "bfloat16" (as dump_io.canonical_dtype)."""
    return str(dtype).replace("torch.", "")


def parse_steps(text):
    m = re.fullmatch(r"(\d*):(\d*)", text or ":")
    if not m:
        raise ConvertError(f"--steps {text}: expected A:B (A inclusive, B exclusive)")
    return (int(m.group(1)) if m.group(1) else None, int(m.group(2)) if m.group(2) else None)


def convert(src, engine, config, out, tp=1, steps=None, checkpoint=None, generated=None,
            ignore=(), engine_version="unknown", device="unknown"):
    """Convert one engine dump directory; returns a summary dict. Raises ConvertError."""
    if engine not in ENGINES:
        raise ConvertError(f"--from {engine}: expected sglang or vllm")
    if tp < 1:
        raise ConvertError(f"--tp {tp}: expected a positive TP size")
    sizes = Sizes(config, engine)
    dump_dir = find_dump_dir(src)
    records, skipped, ignored = scan(dump_dir, engine, list(ignore))

    for r in records:  # meta may state the TP size
        if "tp_size" in r.tags and int(r.tags["tp_size"]) != tp:
            raise ConvertError(f"{r.path}: meta says tp_size {r.tags['tp_size']}, --tp is {tp}")

    by_step = defaultdict(list)
    for r in records:
        by_step[r.step].append(r)
    a, b = steps or (None, None)
    chosen = [s for s in sorted(by_step) if (a is None or s >= a) and (b is None or s < b)]
    if not chosen:
        raise ConvertError(f"{dump_dir}: no step in --steps range (steps present: {sorted(by_step)})")

    # rotary_emb is one module shared by all layers (get_rope caches it), so its outputs carry the
    # name of layer 0's module; the dumper's layer_id tag (or the call order) gives the layer.
    for s in chosen:
        rot = defaultdict(list)
        for r in by_step[s]:
            if r.role in ("attn.q_rope", "attn.k_rope"):
                rot[(r.rank, r.role)].append(r)
        for lst in rot.values():
            if len(lst) == 1 and "layer_id" not in lst[0].tags:
                continue
            lst.sort(key=lambda r: int(r.tags.get("dump_index", 0)))
            for i, r in enumerate(lst):
                r.layer = int(r.tags["layer_id"]) if "layer_id" in r.tags else i

    bias_cache = {}

    def bias_for_layer(L):
        if checkpoint is None:
            return None
        if L not in bias_cache:
            t = read_checkpoint_tensor(checkpoint, [f"model.layers.{L}.mlp.expert_bias",
                                                     f"model.layers.{L}.mlp.e_score_correction_bias"])
            if t is None:
                raise ConvertError(f"{checkpoint}: no model.layers.{L}.mlp.expert_bias for ordering top-k")
            bias_cache[L] = t
        return bias_cache[L]

    asm = Assembler(sizes, engine, tp, bias_for_layer)
    tensors = OrderedDict()
    logits_rows, infos = [], []
    token_ids, offset = None, 0
    for i, s in enumerate(chosen):
        prefix = "" if i == 0 else f"steps.{i}."
        t, info = asm.forward(by_step[s], prefix)
        infos.append(info)
        pos = info["positions"]
        if i == 0:
            if prefix + "input_ids" in t:
                token_ids = t[prefix + "input_ids"].tolist()
            offset = pos[0] if pos else 0
            if pos and pos != list(range(offset, offset + info["T"])):
                raise ConvertError(f"{dump_dir}: step {s}: positions {pos[:8]}... are not consecutive: not one sequence")
        else:
            if info["T"] != 1:
                raise ConvertError(f"{dump_dir}: step {s} has {info['T']} tokens; after the prefill (step {chosen[0]}) "
                                   f"every step must be one decode token (select steps with --steps A:B)")
            want = offset + infos[0]["T"] + i - 1
            if pos and pos != [want]:
                raise ConvertError(f"{dump_dir}: step {s}: position {pos}, expected [{want}] (decode step {i} of the "
                                   f"sequence prefilled in step {chosen[0]})")
            if prefix + "logits" not in t and "logits_row" in info:
                t[prefix + "logits"] = info["logits_row"].reshape(1, -1)
        if "logits_row" in info:
            logits_rows.append(info["logits_row"])
        tensors.update(t)
    if token_ids is None:
        raise ConvertError(f"{dump_dir}: step {chosen[0]} has no input_ids (the dumper's core field); cannot "
                           f"write input.token_ids")

    n = len(chosen)
    if logits_rows:
        if len(logits_rows) != n:
            raise ConvertError(f"{dump_dir}: logits_processor output in {len(logits_rows)} of {n} steps")
        tensors["generate.logits"] = torch.stack(logits_rows, 0)
    if generated is not None:
        if len(generated) != n:
            raise ConvertError(f"--generated has {len(generated)} tokens, the dump has {n} forward passes "
                               f"(prefill + {n - 1} decode steps)")
        for i in range(1, n):
            fed = tensors.get(f"steps.{i}.input_ids")
            if fed is not None and fed.tolist() != [generated[i - 1]]:
                raise ConvertError(f"--generated token {i - 1} is {generated[i - 1]}, decode step {i} was fed {fed.tolist()}")
        tensors["generate.tokens"] = torch.tensor(generated, dtype=torch.int64)

    emb = tensors.get("embed")
    dtype = _dtype_name(emb.dtype) if emb is not None else "unknown"
    try:  # with --checkpoint, model.weights_fingerprint
        model = model_section(sizes.model_type, sizes.layers, config_sha256=sizes.config_sha256,
                              weights_dir=checkpoint)
    except (OSError, ValueError, KeyError, struct.error) as e:
        raise ConvertError(f"{checkpoint}: cannot fingerprint the checkpoint's weights ({type(e).__name__}: {e})")
    manifest = new_manifest(producer_section(engine, engine_version, device, dtype, "engine",
                                             "generate" if n > 1 else "prefill"),
                            model, token_ids, offset)
    orders = sorted({i["topk_order"] for i in infos if "topk_order" in i})
    manifest["converter"] = OrderedDict(
        tool="tools/engine_convert.py", source=os.path.abspath(dump_dir), engine=engine, tp=tp,
        steps=chosen, files_used=len(records), files_skipped_known=skipped, files_ignored=ignored,
        gate_up_checked=asm.gate_up_checked, gate_up_unchecked=asm.gate_up_unchecked,
        topk_order=orders[0] if len(orders) == 1 else orders,
        layer_out="hidden + residual of the decoder layer's (hidden, residual), in the dump dtype")
    write_dump(out, tensors, manifest)
    return {"tensors": len(tensors), "steps": chosen, "files_used": len(records),
            "files_skipped_known": skipped, "gate_up_checked": asm.gate_up_checked}

