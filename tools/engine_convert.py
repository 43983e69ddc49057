#!/usr/bin/env python3
"""Convert SGLang dumper files or vLLM forward-hook dumps of a Hy3 (`hy_v3`) run into a hyoracle
dump (DUMP_FORMAT.md, version 1).

    python3 tools/engine_convert.py --from sglang|vllm DIR --config CONFIG.json --out DUMP
        [--tp N] [--steps A:B] [--checkpoint CKPT] [--generated 5,7,...] [--ignore REGEX]...

Input: a directory of `.pt` files as SGLang's dumper writes them (python/sglang/srt/debug_utils/
dumper.py: one file per dumped tensor, named `step=S___rank=R___dump_index=I___name=N___...pt`,
holding `{"value": tensor, "meta": {...}}`; the older dumper's `forward_pass_id=F___rank=R___
name=N___dump_index=I.pt` holding the bare tensor is read too), or as `tools/vllm_hooks.py` writes
them from a vLLM model (the same layout). Tensor names are those of the dumper's non-intrusive
mode (`DUMPER_NON_INTRUSIVE_MODE=all`): `non_intrusive__<module path>.output[.i]` and
`.inputs.<i>`, module paths of the engines' `HYV3ForCausalLM` (docs/engine-dumps.md lists the
sources).

What the conversion undoes (docs/engine-dumps.md has the table):
- fused QKV: `self_attn.qkv_proj.output` of TP rank r is [T, (nq/tp + 2·max(1, nkv/tp))·d] laid
  out q | k | v; heads of the ranks are concatenated in rank order (KV heads replicated over
  tp/nkv ranks when nkv < tp are taken once);
- fused gate/up: `gate_up_proj.output` of rank r is [gate_r | up_r], I/tp columns each; it has no
  canonical name, so it is checked (silu(gate)·up against `down_proj`'s input) and not written;
- fused residual + RMSNorm: a decoder layer returns (hidden, residual); layers.L.out =
  hidden + residual (one rounding in the dump's dtype, as the engines' fused add kernels do);
  `post_attention_layernorm` returns (post_norm, resid_mid);
- tensor parallelism: column-parallel outputs concatenated, row-parallel partial sums with
  reduce_results=False (shared experts, SGLang's routed experts) summed over ranks in float64
  and rounded once to the dump's dtype, replicated tensors taken from the lowest rank;
- batching: each forward pass (dumper step) must hold one sequence; the first selected step is
  the prefill, each later one a decode step `steps.S.*` with one token.

With `--checkpoint CKPT` top-k ids are ordered by corrected score (sigmoid + the checkpoint's
expert_bias), else by weight, and the manifest records `model.weights_fingerprint` of CKPT's
safetensors files (hytools/checkpoint.py defines it).

Anything the converter does not know (a module that is not part of the Hy3 model, a tensor whose
shape does not fit the config) stops it with one line naming the file, the tensor and what was
expected, exit status 2. `--ignore REGEX` skips engine tensor names on purpose.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# The converter lives in hytools (convert_rules, convert_read, convert_tp, convert_assemble,
# convert); its entry points are re-exported here for `import engine_convert`.
from hytools.convert import convert, parse_steps  # noqa: E402,F401
from hytools.convert_read import Sizes, scan  # noqa: E402,F401
from hytools.convert_rules import PREFIX, ConvertError, classify  # noqa: E402,F401


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--from", dest="engine", required=True, choices=["sglang", "vllm"])
    ap.add_argument("src", help="directory of the engine's .pt dump files")
    ap.add_argument("--config", required=True, help="the model's config.json")
    ap.add_argument("--out", required=True, help="output hyoracle dump directory")
    ap.add_argument("--tp", type=int, default=1, help="tensor-parallel size of the run (default 1)")
    ap.add_argument("--steps", default=None, help="A:B: dumper steps to use; the first is the prefill")
    ap.add_argument("--checkpoint", default=None,
                    help="checkpoint dir: order top-k by corrected score (expert_bias); record model.weights_fingerprint")
    ap.add_argument("--generated", default=None, help="comma-separated generated tokens (writes generate.tokens)")
    ap.add_argument("--ignore", action="append", default=[], help="regex of engine tensor names to skip")
    ap.add_argument("--engine-version", default="unknown")
    ap.add_argument("--device", default="unknown")
    a = ap.parse_args(argv)
    try:
        gen = None
        if a.generated is not None:
            try:
                gen = [int(x) for x in a.generated.split(",") if x.strip()]
            except ValueError:
                raise ConvertError(f"--generated {a.generated}: expected comma-separated integers")
        s = convert(a.src, a.engine, a.config, a.out, tp=a.tp, steps=parse_steps(a.steps),
                    checkpoint=a.checkpoint, generated=gen, ignore=a.ignore,
                    engine_version=a.engine_version, device=a.device)
    except ConvertError as e:
        print(f"engine_convert: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # never a traceback for an input: one line, exit 2
        msg = str(e).splitlines()[0] if str(e) else ""
        print(f"engine_convert: {a.src}: cannot convert ({type(e).__name__}: {msg}); input this converter "
              f"does not understand, or a bug in it", file=sys.stderr)
        return 2
    print(f"engine_convert: wrote {a.out}: {s['tensors']} tensors from {s['files_used']} files "
          f"(steps {s['steps'][0]}..{s['steps'][-1]}, {s['files_skipped_known']} known files without a "
          f"canonical name skipped, {s['gate_up_checked']} gate/up blocks checked)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
