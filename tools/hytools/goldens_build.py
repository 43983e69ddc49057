"""The CPU commands of make_hf_goldens.py: build (seed search, checkpoints, build.json), check
(re-derive the weights, compare bytes and sha256) and post (margins.json and bugs/README.md from
the dumps on disk)."""

from __future__ import annotations

import json
import os
from collections import OrderedDict

from dump_io import read_dump
from hytools.checkpoint import read_checkpoint, read_config, sha256_file
from hytools.goldens_bugs import write_bugs_readme
from hytools.goldens_compare import margins_from_dump
from hytools.goldens_fixtures import FIXTURES, GENERATE_N, MIN_MARGIN, make_config, make_weights, write_checkpoint
from hytools.goldens_reference import ref_generate, ref_margins
from lazy_import import torch  # imported on first use


def cmd_build(args):
    for name, f in FIXTURES.items():
        if args.only and name not in args.only:
            continue
        cfg = make_config(name)
        tried = []
        for seed in f["seeds"]:
            W = make_weights(name, seed)
            full, toks, rows, steps = ref_generate(W, cfg, f["prompt"], GENERATE_N)
            m = ref_margins(cfg, full, rows, steps)
            ok = m["min_router"] >= MIN_MARGIN and m["min_logit"] >= MIN_MARGIN and m["bias_changes_selection"] > 0
            tried.append({"seed": seed, "min_router": m["min_router"], "min_logit": m["min_logit"],
                          "bias_changes_selection": m["bias_changes_selection"], "accepted": ok})
            print(f"{name} seed {seed}: min router margin {m['min_router']:.3g}, min logit margin "
                  f"{m['min_logit']:.3g}, bias changes {m['bias_changes_selection']} selections -> "
                  f"{'ok' if ok else 'retry'}", flush=True)
            if ok:
                break
        else:
            raise SystemExit(f"{name}: no seed passed")
        d = os.path.join(args.fixtures, name)
        plan = write_checkpoint(name, W, d)
        files = ["config.json"] + list(plan) + (["model.safetensors.index.json"] if len(plan) > 1 else [])
        info = OrderedDict(
            fixture=name, seed=seed, generator="torch.Generator().manual_seed(seed); torch.randn float64, "
            "drawn in the tensor order of make_weights; then rounded to bf16 (expert_bias: F32)",
            torch=torch.__version__, seeds_tried=tried, prompt=f["prompt"], generate_n=GENERATE_N,
            reference=OrderedDict(tokens=toks, min_router_margin=m["min_router"],
                                  min_logit_margin=m["min_logit"],
                                  logit_margins=m["logit"],
                                  bias_changes_selection=m["bias_changes_selection"]),
            sha256=OrderedDict((fn, sha256_file(os.path.join(d, fn))) for fn in files))
        with open(os.path.join(d, "build.json"), "w") as fh:
            json.dump(info, fh, indent=2)
            fh.write("\n")
        print(f"{name}: wrote {d} with seed {seed}; reference tokens {toks}", flush=True)


def cmd_check(args):
    bad = 0
    for name in FIXTURES:
        d = os.path.join(args.fixtures, name)
        info = json.load(open(os.path.join(d, "build.json")))
        W = make_weights(name, info["seed"])
        W2 = read_checkpoint(d)
        for n, t in W.items():
            if n not in W2 or W2[n].dtype != t.dtype or not torch.equal(W2[n], t):
                print(f"{name}: {n} differs from a fresh make_weights (torch {torch.__version__})")
                bad += 1
        for fn, h in info["sha256"].items():
            if sha256_file(os.path.join(d, fn)) != h:
                print(f"{name}: sha256 of {fn} changed")
                bad += 1
    print("check:", "ok" if not bad else f"{bad} problems")
    return 1 if bad else 0



def cmd_post(args):
    """Re-derive margins.json and bugs/README.md from the dumps on disk (no GPU needed)."""
    for name in FIXTURES:
        if args.only and name not in args.only:
            continue
        d = os.path.join(args.fixtures, name)
        cfg = read_config(os.path.join(d, "config.json"))[0]
        f64 = os.path.join(d, "golden", "hf-f64")
        if os.path.exists(os.path.join(f64, "manifest.json")):
            _, dump = read_dump(f64)
            m = margins_from_dump(dump, read_checkpoint(d), cfg)
            m["seed"] = json.load(open(os.path.join(d, "build.json")))["seed"]
            with open(os.path.join(d, "golden", "margins.json"), "w") as fh:
                json.dump(m, fh, indent=2)
                fh.write("\n")
            print(f"{name}: min router margin {m['min_router_margin']:.4g}, min logit margin {m['min_logit_margin']:.4g}")
        if os.path.exists(os.path.join(d, "bugs", "bugs.json")):
            write_bugs_readme(d, name)
    return 0


