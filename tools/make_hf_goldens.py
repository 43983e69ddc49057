#!/usr/bin/env python3
"""Build hyoracle's tiny random hy_v3 checkpoints and their HF transformers golden dumps.

    python3 tools/make_hf_goldens.py build  [--fixtures fixtures]   # CPU, torch only
    python3 tools/make_hf_goldens.py device [--fixtures fixtures]   # GPU machine, needs transformers
    python3 tools/make_hf_goldens.py check  [--fixtures fixtures]   # re-derive weights, compare sha256
    python3 tools/make_hf_goldens.py post   [--fixtures fixtures]   # margins.json + bugs/README.md from dumps

`build` writes, for every fixture in FIXTURES, a checkpoint in the ORIGINAL HF on-disk layout
(docs/model.md §3.1, not transformers' fused layout) plus config.json, choosing the first seed from
the fixture's seed list whose float64 forward (this file's own plain-torch reference,
`ref_forward`) has router margins (k-th minus (k+1)-th corrected score, every MoE layer, every
prompt token and decode step) and greedy logit margins (top-1 minus top-2) of at least MIN_MARGIN.
It records the seed and the files' sha256 in fixtures/<name>/build.json.

`device` loads each checkpoint with `HYV3ForCausalLM.from_pretrained` (eager attention, eager
experts, no TF32) and writes golden dumps with tools/hf_dump.py:

    fixtures/<name>/golden/hf-f64    float64, HF's hard-coded fp32 casts promoted to f64 (exact)
    fixtures/<name>/golden/hf-f32    stock float32
    fixtures/<name>/golden/hf-bf16   stock bfloat16
    fixtures/<name>/golden/margins.json, summary.json
    fixtures/<name>/bugs/<bug>/      bf16 dumps of deliberately patched ("planted bug") models

and checks the float64 HF dump tensor by tensor against `ref_forward`. Every dump's manifest
records the checkpoint's `model.weights_fingerprint`.

The code lives in tools/hytools (goldens_fixtures, goldens_reference, goldens_compare,
goldens_bugs, goldens_build, goldens_device); this script is its command line.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hytools.goldens_bugs import BUGS, apply_bug, write_bugs_readme  # noqa: E402,F401
from hytools.goldens_build import cmd_build, cmd_check, cmd_post  # noqa: E402
from hytools.goldens_compare import (compare_with_ref, first_divergence, margins_from_dump,  # noqa: E402,F401
                                     routing_flips)
from hytools.goldens_device import RUNS, cmd_device  # noqa: E402,F401
from hytools.goldens_fixtures import (FIXTURES, GENERATE_N, MIN_MARGIN, make_config, make_weights,  # noqa: E402,F401
                                      shard_plan, write_checkpoint)
from hytools.goldens_reference import ref_forward, ref_generate, ref_margins  # noqa: E402,F401


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("command", choices=["build", "device", "check", "post"])
    ap.add_argument("--fixtures", default=os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures"))
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--device", default=None)
    ap.add_argument("--no-bugs", action="store_true")
    ap.add_argument("--scratch", default="/tmp/hyoracle-goldens-scratch")
    a = ap.parse_args(argv)
    if a.command == "build":
        return cmd_build(a)
    if a.command == "check":
        return cmd_check(a)
    if a.command == "post":
        return cmd_post(a)
    return cmd_device(a)


if __name__ == "__main__":
    sys.exit(main() or 0)
