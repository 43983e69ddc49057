#!/usr/bin/env python3
"""A CPU stand-in for hf_worker.py that tests the harness's plumbing without torch or a GPU:

    VERDICTS_WORKER=bench/verdicts/fake_worker.py VERDICTS_HYORACLE=build/tools/hyoracle \\
        python3 bench/verdicts/harness.py tiny --out /tmp/v --cuda off

Same PLAN/STATUS protocol. Each "honest" dump is `hyoracle run --precision exact` (float64, so it
must pass); a module-only dump keeps only the module-hook tensors; a "bug" dump is the honest
one with its EXPECTED tensor perturbed (floats x (1 + eps or 0.05), ids: one expert swapped) so
compare must name exactly that tensor. Not a model of the bugs: a test of scheduling, reports,
tables, expected.json and packing. Pure Python."""

from __future__ import annotations

import array
import json
import os
import shutil
import struct
import subprocess
import sys
import time
from collections import OrderedDict

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "tools"))
from hytools.module_names import (MODULE_AFTER_LAYERS, MODULE_BEFORE_LAYERS,  # noqa: E402 (standard library only)
                                  layer_module_suffixes)

# What a module-only dump keeps (the dataflow table's module column).
MODULE_SUFFIXES = set(layer_module_suffixes(True)) | set(layer_module_suffixes(False))
TOP = set(MODULE_BEFORE_LAYERS) | set(MODULE_AFTER_LAYERS) | {"generate.tokens", "generate.logits"}
CODES = {"F64": "d", "F32": "f", "I64": "q", "I32": "i"}


def read(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    h = json.loads(raw[8:8 + n])
    h.pop("__metadata__", None)
    return OrderedDict((k, (v["dtype"], v["shape"], raw[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]]))
                       for k, v in h.items())


def write(path, tensors):
    header, blobs, off = OrderedDict(), [], 0
    for k, (dt, shape, b) in tensors.items():
        header[k] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)) + hb + b"".join(blobs))


def is_module_name(name):
    base = name.split(".", 2)[2] if name.startswith("steps.") else name
    if base in TOP:
        return True
    if base.startswith("layers."):
        return base.split(".", 2)[2] in MODULE_SUFFIXES
    return False


def perturb(dt, shape, b, factor):
    a = array.array(CODES[dt])
    a.frombytes(b)
    if dt in ("F64", "F32"):
        for i in range(len(a)):
            a[i] *= factor
    else:  # ids [T, k]: token 0's first expert replaced by one it did not choose
        k = shape[-1]
        row = set(a[:k])
        a[0] = next(e for e in range(10 ** 6) if e not in row)
    return a.tobytes()


def main(argv):
    plan = json.load(open(argv[0]))
    hy = os.environ.get("VERDICTS_HYORACLE", "hyoracle")
    toks = ",".join(map(str, plan["tokens"]))
    for m in plan["models"]:
        honest = None
        for d in m["dumps"]:
            t0 = time.time()
            rec = {"variant": d["variant"], "config": m["name"], "kind": d["kind"], "bug": d.get("bug")}
            try:
                if honest is None:
                    honest = d["out"] + ".exact"
                    subprocess.run([hy, "run", "--model", plan["ckpt"], "--tokens", toks, "--generate",
                                    str(plan["generate"]), "--dump-steps", "--precision", "exact", "--dump", honest],
                                   check=True, stdout=subprocess.DEVNULL)
                os.makedirs(d["out"], exist_ok=True)
                man = json.load(open(os.path.join(honest, "manifest.json")))
                t = read(os.path.join(honest, "activations.safetensors"))
                if d["kind"] == "modules":
                    t = OrderedDict((k, v) for k, v in t.items() if is_module_name(k))
                if d.get("bug"):
                    exp = d["expected"]
                    dt, shape, b = t[exp]
                    t[exp] = (dt, shape, perturb(dt, shape, b, 1 + float(d["params"].get("eps", 0.05))))
                    rec.update(hf_first_difference={"tensor": exp}, inert=False, effect_rel_l2=0.05, patch_calls=1)
                write(os.path.join(d["out"], "activations.safetensors"), t)
                man["producer"]["name"] = "fake-engine"
                man.pop("file_checks", None)  # the copied checks describe the exact run's file, not this one
                man["hf_run"] = {"dump_kind": d["kind"], "planted_bug": d.get("bug")}
                json.dump(man, open(os.path.join(d["out"], "manifest.json"), "w"), indent=1)
                rec.update(ok=True, experts_implementation="fake")
            except Exception as e:  # noqa: BLE001
                rec.update(ok=False, error=repr(e))
            rec["seconds"] = round(time.time() - t0, 2)
            with open(argv[1], "a") as f:
                f.write(json.dumps(rec) + "\n")
        if honest:
            shutil.rmtree(honest, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
