#!/usr/bin/env python3
"""The realistic-scale verdicts harness: does `hyoracle compare` pass honest engine dumps and
locate planted bugs at the right first tensor? (bench/verdicts/README.md)

    python3 bench/verdicts/harness.py STAGE [STAGE...] --out DIR [options]

Stages:
  tiny   fixtures/tiny-mt2 and fixtures/tiny-hy3 with their committed prompts: honest and planted-bug
         HF dumps (module-only and full), laid out as fixtures/<fx>/engine-dumps/<variant>/ with
         expected.json, tarred to OUT/engine-dumps.tar.gz; confusion table OUT/verdicts-tiny.md
  full   a full-width Hy-MT2 checkpoint (hyoracle fixture --preset mt2-layer, 1 dense + 2 MoE layers),
         a seeded random prompt of T=1024 tokens + 5 greedy tokens; honest HF dumps (bf16 sdpa +
         grouped_mm, bf16 eager, fp32 eager; module-only and full), hyoracle's CUDA dumps if built,
         the planted bugs (bf16 fast paths); compares with and without --model; OUT/verdicts-full.md
  sweep  the sensitivity frontier (head-scale, expert-scale over a geometric eps grid, T=256);
         OUT/frontier.md
  hunyuan  one full-width Hunyuan-A13B MoE layer under transformers' hunyuan_v1_moe (fixture preset
         hunyuan-a13b-layer), HF's HunYuanMoEV1ForCausalLM honest and with planted bugs;
         OUT/verdicts-hunyuan.md (stage_hunyuan.py)
  cla    two full-width Hunyuan-Large layers with cross-layer attention (hunyuan-large-cla-layers),
         hyoracle's independent implementation of Tencent's code in bf16/fp32 on the GPU, honest and
         with planted bugs; OUT/verdicts-cla.md
The GPU machine runs it through bench/verdicts/run_on_device.sh. Exit status: 1 if any row of the
--model column is WRONG (or a stage failed), else 0.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tarfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import runner  # noqa: E402
import table  # noqa: E402
import variants as V  # noqa: E402
from pipeline import Pipeline  # noqa: E402

TINY_FIXTURES = ("tiny-mt2", "tiny-hy3")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("stages", nargs="+", choices=["tiny", "full", "sweep", "hunyuan", "cla"])
    ap.add_argument("--out", required=True, help="tables and the engine-dumps tarball go here")
    ap.add_argument("--work", default="/tmp/hyoracle-verdicts", help="dumps, reports, logs (large)")
    ap.add_argument("--hyoracle", default=os.path.join(ROOT, "build-verdicts", "tools", "hyoracle"))
    ap.add_argument("--threads", type=int, default=16, help="threads of the reference run")
    ap.add_argument("--jobs", type=int, default=4, help="compares at a time")
    ap.add_argument("--compare-threads", type=int, default=4, help="--threads of each compare --model")
    ap.add_argument("--deadline", type=float, default=480, help="seconds for each stage (full, sweep)")
    ap.add_argument("--tiny-deadline", type=float, default=240, help="seconds for the tiny stage")
    ap.add_argument("--T", type=int, default=1024, help="prompt length of the full stage")
    ap.add_argument("--generate", type=int, default=5, help="greedy tokens (G-1 recorded decode steps)")
    ap.add_argument("--seed", type=int, default=20260, help="seed of the random prompt and of the fixture")
    ap.add_argument("--sweep-T", type=int, default=256, help="prompt length of the sweep")
    ap.add_argument("--sweep-n", type=int, default=8, help="eps grid points, 0.001 .. 0.3")
    ap.add_argument("--cuda", choices=["auto", "on", "off"], default="auto",
                    help="also dump hyoracle's CUDA path (auto: when the build has CUDA)")
    ap.add_argument("--fail-fast", choices=["none", "bugs", "all"], default="bugs",
                    help="pass --fail-fast to compare for planted-bug dumps (the first divergence is "
                         "unchanged; compare stops there)")
    ap.add_argument("--variants", default=None,
                    help="comma list of row names to run in the full stage (default: all)")
    ap.add_argument("--preset", default="mt2-layer",
                    help="hyoracle fixture preset of the full/sweep checkpoint (mt2-layer; smaller ones for tests)")
    ap.add_argument("--hunyuan-preset", default="hunyuan-a13b-layer",
                    help="fixture preset of the hunyuan stage (tiny-hunyuan-a13b for tests)")
    ap.add_argument("--cla-preset", default="hunyuan-large-cla-layers",
                    help="fixture preset of the cla stage (tiny-hunyuan-large for tests)")
    ap.add_argument("--fixture-timeout", type=float, default=240)
    ap.add_argument("--worker-timeout", type=float, default=420)
    ap.add_argument("--ref-timeout", type=float, default=300)
    ap.add_argument("--cuda-timeout", type=float, default=120)
    ap.add_argument("--compare-timeout", type=float, default=300)
    ap.add_argument("--compare-timeout-nomodel", type=float, default=120)
    ap.add_argument("--keep", action="store_true", help="keep the work directory of earlier runs")
    return ap.parse_args(argv)


def cuda_built(hy):
    """Whether the hyoracle binary's build enabled CUDA: HYORACLE_CUDA on in its CMakeCache.txt and
    CUDA enabled as a language (CMakeFiles/<version>/CMakeCUDACompiler.cmake; the compiler path
    itself is not always cached)."""
    import glob
    d = os.path.dirname(os.path.dirname(os.path.abspath(hy)))
    try:
        txt = open(os.path.join(d, "CMakeCache.txt")).read()
    except OSError:
        return False
    if "HYORACLE_CUDA:BOOL=OFF" in txt:
        return False
    return bool(glob.glob(os.path.join(d, "CMakeFiles", "*", "CMakeCUDACompiler.cmake")))


def random_prompt(n, vocab, seed):
    """n token ids in [3, vocab) (0..2 are pad/bos/eos in the fixtures), seeded."""
    rng = random.Random(seed)
    return [rng.randrange(3, vocab) for _ in range(n)]


def make_fixture(args, work, dl, preset=None, moe_layers=2):
    """The full-width checkpoint: hyoracle fixture --preset mt2-layer --moe-layers 2 (MoE layers after
    the preset's one dense layer: 3 layers, layer 1 the first MoE layer); another preset with its
    own layers when moe_layers is None (the Hunyuan stages). Its own golden is not what is tested,
    so it is as cheap as the command allows: a 1-token prompt (id 5), no generation, any margin accepted,
    one seed."""
    preset = preset or args.preset
    tag = f"{moe_layers + 1}L" if moe_layers is not None else "preset"
    ckpt = os.path.join(work, f"ckpt-{preset}-{tag}-seed{args.seed}")
    cmd = [args.hyoracle, "fixture", "--preset", preset] + (["--moe-layers", str(moe_layers)] if moe_layers is not None else []) + \
          ["--prompt", "5", "--generate", "0", "--min-margin", "0", "--max-tries", "1", "--seed", str(args.seed),
           "--threads", str(args.threads)]
    stamp = ckpt + ".cmd"
    if os.path.exists(os.path.join(ckpt, "fixture.json")) and os.path.exists(stamp) and \
            open(stamp).read() == " ".join(cmd):
        return ckpt, 0.0
    log = os.path.join(work, "logs", f"fixture-{preset}.log")
    runner.run(cmd + ["--dry-run"], log, dl.cap(30))
    rc, s = runner.run(cmd + ["--out", ckpt, "--force"], log, dl.cap(args.fixture_timeout))
    if rc != 0 or not os.path.exists(os.path.join(ckpt, "config.json")):
        raise RuntimeError(f"hyoracle fixture failed ({rc}); see {log}")
    with open(stamp, "w") as f:
        f.write(" ".join(cmd))
    return ckpt, s


def fresh(path, keep=False):
    if os.path.exists(path) and not keep:
        shutil.rmtree(path)
    os.makedirs(path, exist_ok=True)
    os.makedirs(os.path.join(path, "logs"), exist_ok=True)
    return path


def stage_full(args, dl):
    work = fresh(os.path.join(args.work, "full"), args.keep)
    ckpt_root = os.path.join(args.work, "ckpt")
    os.makedirs(os.path.join(ckpt_root, "logs"), exist_ok=True)
    t = time.time()
    ckpt, fs = make_fixture(args, ckpt_root, dl)
    runner.log(f"full: checkpoint {ckpt} ({'reused' if fs == 0 else f'made in {fs:.0f} s'})", dl.t0)
    cfg = json.load(open(os.path.join(ckpt, "config.json")))
    cuda = args.cuda == "on" or (args.cuda == "auto" and cuda_built(args.hyoracle))
    rows = V.full_variants(cfg, cuda)
    if args.variants:
        keep = set(args.variants.split(",")) | {"bf16-fast-modules", "bf16-fast-full"}
        rows = [r for r in rows if r["variant"] in keep]
    tokens = random_prompt(args.T, cfg["vocab_size"], args.seed)
    p = Pipeline(name="full", hy=args.hyoracle, ckpt=ckpt, ckpt_label=os.path.basename(ckpt), tokens=tokens,
                 generate=args.generate, rows=rows, dump_dir=os.path.join(work, "dumps"), work=work, args=args,
                 deadline=dl, ref_source="bf16-fast-modules")
    p.timings["fixture"] = round(time.time() - t, 1)
    p.run(cuda_rows=[r for r in rows if r["source"] == "hyoracle-cuda"])
    shape = (" (H 2048, 32/4 heads x 128, E 128 top-8, I_e 768, V 4096; layer 0 dense, layers 1-2 MoE)"
             if args.preset == "mt2-layer" else "")
    notes = [f"Checkpoint: hyoracle fixture --preset {args.preset} --moe-layers 2 --seed {args.seed}{shape}. "
             f"Prompt: {args.T} random tokens "
             f"(seed {args.seed}), {args.generate} greedy tokens ({args.generate - 1} decode steps recorded).",
             f"Baseline: hyoracle run --precision exact --tokens-from bf16-fast-modules --generate {args.generate} "
             "--dump-steps. compare --model: teacher forcing; without: model-free budgets.",
             f"compare --fail-fast for: {args.fail_fast}. CUDA path: {'dumped' if cuda else 'not built/skipped'}.",
             f"Timings (s): {json.dumps(p.timings)}"] + p.events
    return finish(args, "verdicts-full", f"Verdicts at realistic scale ({args.preset}, T={args.T})", rows, p, notes)


def worker_notes(p):
    """Facts from the HF worker worth a line under the table."""
    out = []
    for v, n in p.notes.items():
        if "rerun_first_difference" in n:
            r = n["rerun_first_difference"]
            out.append(f"{v}: a second honest run was " + ("bitwise identical (the ground truth column is exact)"
                                                          if r is None else f"NOT identical: first difference {r}"))
        if n.get("auto_expert"):
            a = n["auto_expert"]
            out.append(f"expert-weights / expert-scale expert: {a['expert']} of layer {a['layer']} "
                       f"({a['tokens']} of the prompt's tokens routed to it)")
    impl = sorted({(n.get("config"), n.get("attn_implementation"), n.get("experts_implementation"))
                   for n in p.notes.values() if n.get("ok") and n.get("config")}, key=str)
    if impl:
        out.append("HF implementations in effect (config, attention, experts): " +
                   "; ".join(f"{c}: {a}, {e}" for c, a, e in impl))
    return out


def finish(args, stem, title, rows, p, notes):
    notes = list(notes) + worker_notes(p)
    trows = table.make_rows(rows, p.reports, p.notes)
    md = table.write_tables(args.out, stem, title, trows, notes,
                            extra={"timings": p.timings, "dumps": p.notes})
    print(table.text_table(trows), flush=True)
    print(md, flush=True)
    return table.exit_status(trows), trows


def tiny_tokens(fx_dir):
    man = json.load(open(os.path.join(fx_dir, "golden", "hf-bf16", "manifest.json")))
    return man["input"]["token_ids"], int(man["generate"]["n"])


def stage_tiny(args, dl):
    work_root = fresh(os.path.join(args.work, "tiny"), args.keep)
    dest = os.path.join(work_root, "tree")       # tar root: fixtures/<fx>/engine-dumps/<variant>/
    status, all_rows, pipes = 0, [], []
    for fx in TINY_FIXTURES:
        fx_dir = os.path.join(ROOT, "fixtures", fx)
        cfg = json.load(open(os.path.join(fx_dir, "config.json")))
        tokens, G = tiny_tokens(fx_dir)
        rows = V.tiny_variants(cfg)
        work = fresh(os.path.join(work_root, fx))
        ddir = os.path.join(dest, "fixtures", fx, "engine-dumps")
        os.makedirs(ddir, exist_ok=True)
        p = Pipeline(name=fx, hy=args.hyoracle, ckpt=fx_dir, ckpt_label=f"fixtures/{fx}", tokens=tokens,
                     generate=G, rows=rows, dump_dir=ddir, work=work, args=args, deadline=dl,
                     ref_source="honest-modules")
        p.run()
        pipes.append(p)
        trows = table.make_rows(rows, p.reports, p.notes)
        for r in trows:
            r["variant"] = f"{fx}/{r['variant']}"
        all_rows += trows
        write_expected(ddir, fx, cfg, rows, p, G)
        status |= table.exit_status(trows)
    tar = os.path.join(args.out, "engine-dumps.tar.gz")
    with tarfile.open(tar, "w:gz") as tf:
        tf.add(os.path.join(dest, "fixtures"), arcname="fixtures")
    notes = ["HF bf16, sdpa + grouped_mm (batched_mm where grouped_mm refuses the tiny shapes: see each dump's "
             "manifest hf_run.experts_implementation); the committed prompts, 5 greedy tokens.",
             f"Dumps: {os.path.basename(tar)} (extract at the repository root: fixtures/<fx>/engine-dumps/).",
             "Baseline: hyoracle run --precision exact --tokens-from honest-modules --generate 5 --dump-steps."]
    notes += sum((worker_notes(p) for p in pipes), [])
    md = table.write_tables(args.out, "verdicts-tiny", "Verdicts on the tiny fixtures", all_rows, notes)
    print(table.text_table(all_rows), flush=True)
    print(md, flush=True)
    return status, all_rows


def write_expected(ddir, fx, cfg, rows, p, G):
    """fixtures/<fx>/engine-dumps/expected.json: per variant the expected verdict and first tensor
    (from the bug's definition; "pass" where the bug changed nothing on this prompt, which the HF
    ground truth says), what compare said on the device, and the bug's definition."""
    out = {"format": "hyoracle.engine-dumps", "version": 1, "fixture": fx,
           "baseline": f"hyoracle run --model fixtures/{fx} --tokens-from <any variant> --generate {G} "
                       "--dump-steps --precision exact",
           "first_moe_layer": V.first_moe_layer(cfg), "variants": {}}
    trows = {r["variant"]: r for r in table.make_rows(rows, p.reports, p.notes)}
    for r in rows:
        v = r["variant"]
        note = p.notes.get(v) or {}
        if not note.get("ok"):
            continue
        exp = trows[v]["expected"]
        e = {"kind": r["kind"], "role": r["role"], "bug": r.get("bug"), "params": note.get("bug_params") or r["params"],
             "expected_verdict": "pass" if exp == V.PASS else "fail",
             "expected_first_divergence": None if exp == V.PASS else exp}
        if r.get("bug"):
            e["definition"] = V.BUGS[r["bug"]]["what"]
            e["why_that_tensor"] = V.BUGS[r["bug"]]["why"]
            e["hf_first_difference_vs_honest"] = note.get("hf_first_difference")
            e["inert"] = bool(note.get("inert"))
            if "expert" in note:
                e["params"] = dict(e["params"], expert=note["expert"])
        e["experts_implementation"] = note.get("experts_implementation")
        e["device_compare"] = {m: {k: trows[v][m].get(k) for k in ("verdict", "first", "result")} for m in table.MODES}
        out["variants"][v] = e
    with open(os.path.join(ddir, "expected.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


def stage_sweep(args, dl):
    work = fresh(os.path.join(args.work, "sweep"), args.keep)
    ckpt_root = os.path.join(args.work, "ckpt")
    os.makedirs(os.path.join(ckpt_root, "logs"), exist_ok=True)
    ckpt, fs = make_fixture(args, ckpt_root, dl)
    runner.log(f"sweep: checkpoint {ckpt} ({'reused' if fs == 0 else f'made in {fs:.0f} s'})", dl.t0)
    cfg = json.load(open(os.path.join(ckpt, "config.json")))
    grid = V.sweep_grid(n=args.sweep_n)
    rows = V.sweep_variants(cfg, grid)
    searches = {(bug, kind, mode): table.Bisect(len(grid))
                for bug in V.SWEEP_BUGS for kind in V.KINDS for mode in table.MODES}
    tokens = random_prompt(args.sweep_T, cfg["vocab_size"], args.seed + 1)
    p = Pipeline(name="sweep", hy=args.hyoracle, ckpt=ckpt, ckpt_label=os.path.basename(ckpt), tokens=tokens,
                 generate=args.generate, rows=rows, dump_dir=os.path.join(work, "dumps"), work=work, args=args,
                 deadline=dl, ref_source="bf16-fast-modules", searches=searches, grid=grid)
    p.run()
    floors, effects = {}, {}
    for bug in V.SWEEP_BUGS:
        tensor = V.expected_tensor(bug, "full", cfg)
        for kind in V.KINDS:
            for mode in table.MODES:
                floors[(bug, kind, mode)] = table.tensor_rel_l2(
                    p.json_path(V.honest_variant("bf16-fast", kind), mode), tensor, local=(mode == "model"))
            for eps in grid:
                n = p.notes.get(V.sweep_variant(bug, eps, kind)) or {}
                if n.get("effect_rel_l2") is not None:
                    effects[(bug, eps, kind)] = n["effect_rel_l2"]
    frows = table.frontier_rows(searches, grid, floors, effects)
    honest = [r for r in rows if r["role"] == "honest"]
    hrows = table.make_rows(honest, p.reports, p.notes)
    notes = worker_notes(p) + [f"eps grid: {grid}", f"Timings (s): {json.dumps(p.timings)}",
             "Honest bf16 fast dumps at T=%d: " % args.sweep_T +
             "; ".join(f"{r['variant']}: --model {r['model']['result']}, no model {r['nomodel']['result']}" for r in hrows)] \
        + p.events
    md = table.frontier_markdown(frows, args.sweep_T, notes)
    with open(os.path.join(args.out, "frontier.md"), "w") as f:
        f.write(md)
    with open(os.path.join(args.out, "frontier.json"), "w") as f:
        json.dump({"T": args.sweep_T, "grid": grid, "rows": frows, "honest": hrows, "timings": p.timings,
                   "dumps": p.notes, "events": p.events}, f, indent=1)
    print(md, flush=True)
    return 0 if all(r["model"]["result"] == "OK" for r in hrows) else 1, frows


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    os.makedirs(args.work, exist_ok=True)
    args.hyoracle = os.path.abspath(args.hyoracle)
    if not os.access(args.hyoracle, os.X_OK):
        print(f"harness: no hyoracle binary at {args.hyoracle}", file=sys.stderr)
        return 2
    status = 0
    for stage in args.stages:
        dl = runner.Deadline(args.tiny_deadline if stage == "tiny" else args.deadline)
        runner.log(f"=== stage {stage} (deadline {dl.left():.0f} s)")
        try:
            if stage in ("hunyuan", "cla"):
                import stage_hunyuan
                rc, _ = stage_hunyuan.run(args, dl, stage, sys.modules[__name__])
            else:
                rc, _ = {"tiny": stage_tiny, "full": stage_full, "sweep": stage_sweep}[stage](args, dl)
        except Exception:  # noqa: BLE001
            import traceback
            traceback.print_exc()
            rc = 2
        runner.log(f"=== stage {stage}: exit {rc} after {dl.elapsed():.0f} s")
        status = max(status, rc)
    return status


if __name__ == "__main__":
    sys.exit(main())
