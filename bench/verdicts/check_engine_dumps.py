#!/usr/bin/env python3
"""Judge the committed tiny engine dumps (fixtures/<fx>/engine-dumps/, made on the GPU machine by
`harness.py tiny`) with the current hyoracle: make the exact reference once per fixture, compare
every variant with and without --model, and check the verdict and first divergence against
expected.json (from each bug's definition).

    python3 bench/verdicts/check_engine_dumps.py HYORACLE [--fixtures fixtures] [--json OUT]
        [--mode model|nomodel|both]

Exit 0 when every variant meets its expectation, 1 otherwise, 77 (skipped) when no fixture has
engine dumps yet. Pure Python."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import table  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("hyoracle")
    ap.add_argument("--fixtures", default=os.path.join(ROOT, "fixtures"))
    ap.add_argument("--json", default=None)
    ap.add_argument("--mode", choices=["model", "nomodel", "both"], default="both")
    a = ap.parse_args(argv)
    modes = table.MODES if a.mode == "both" else (a.mode,)
    found = [fx for fx in sorted(os.listdir(a.fixtures))
             if os.path.exists(os.path.join(a.fixtures, fx, "engine-dumps", "expected.json"))]
    if not found:
        print("no fixtures/*/engine-dumps/expected.json: skipped")
        return 77
    results, bad = [], 0
    with tempfile.TemporaryDirectory() as tmp:
        for fx in found:
            fxd = os.path.join(a.fixtures, fx)
            ed = os.path.join(fxd, "engine-dumps")
            exp = json.load(open(os.path.join(ed, "expected.json")))
            variants = exp["variants"]
            first = next(iter(variants))
            G = json.load(open(os.path.join(ed, first, "manifest.json")))["generate"]["n"]
            ref = os.path.join(tmp, fx + "-ref")
            subprocess.run([a.hyoracle, "run", "--model", fxd, "--tokens-from", os.path.join(ed, first), "--generate",
                            str(G), "--dump-steps", "--precision", "exact", "--dump", ref],
                           check=True, stdout=subprocess.DEVNULL, timeout=300)
            for v, e in variants.items():
                want = "pass" if e["expected_verdict"] == "pass" else e["expected_first_divergence"]
                for mode in modes:
                    jp = os.path.join(tmp, f"{fx}-{v}-{mode}.json")
                    cmd = [a.hyoracle, "compare", ref, os.path.join(ed, v), "--json", jp, "-q"]
                    if mode == "model":
                        cmd += ["--model", fxd]
                    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
                    rep = table.read_report(jp)
                    res = table.judge(want, rep["verdict"], rep["first"])
                    bad += res != "OK"
                    results.append({"fixture": fx, "variant": v, "mode": mode, "expected": want,
                                    "verdict": rep["verdict"], "first": rep["first"], "result": res})
                    print(f"{res:<7} {fx}/{v} [{mode}]: expected {want}; compare: {rep['verdict']} "
                          f"{rep['first'] or ''}", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)
    print(f"{len(results) - bad} passed, {bad} failed")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
