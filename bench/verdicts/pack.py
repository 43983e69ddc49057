#!/usr/bin/env python3
"""Pack what explains a harness run into one small file for the trip back from the device:

    python3 bench/verdicts/pack.py WORK OUT [EXTRA_FILE...]

OUT/details.tar.gz holds WORK's logs, status.jsonl and plan.json files, every compare report with
its per-token rel-L2 arrays dropped (at T=1024 they are most of a report's size), the table JSONs
found in OUT (removed from OUT afterwards, so few files come back) and EXTRA_FILEs. No dumps."""

from __future__ import annotations

import io
import json
import os
import sys
import tarfile


def slim(obj):
    if isinstance(obj, dict):
        return {k: slim(v) for k, v in obj.items() if k != "token_rel_l2"}
    if isinstance(obj, list):
        return [slim(v) for v in obj]
    return obj


def main(argv):
    work, out = argv[0], argv[1]
    extra = argv[2:]
    tables = [os.path.join(out, f) for f in sorted(os.listdir(out)) if f.endswith(".json")] if os.path.isdir(out) else []
    dest = os.path.join(out, "details.tar.gz")
    with tarfile.open(dest, "w:gz") as tf:
        for root, dirs, files in os.walk(work):
            dirs[:] = [d for d in dirs if d not in ("dumps", "ref", "engine-dumps", "tree")
                       and not d.startswith("ckpt-")]
            for fn in files:
                p = os.path.join(root, fn)
                rel = os.path.join("work", os.path.relpath(p, work))
                if fn.endswith(".safetensors") or os.path.getsize(p) > 64 << 20:
                    continue
                if fn.endswith(".json") and os.sep + "compare" + os.sep in p:
                    try:
                        data = json.dumps(slim(json.load(open(p))), indent=1).encode()
                    except ValueError:
                        data = open(p, "rb").read()
                    ti = tarfile.TarInfo(rel)
                    ti.size = len(data)
                    tf.addfile(ti, io.BytesIO(data))
                elif fn.endswith((".log", ".jsonl", ".json", ".cmd")):
                    tf.add(p, arcname=rel)
        for p in tables + [e for e in extra if os.path.exists(e)]:
            tf.add(p, arcname=os.path.basename(p))
    for p in tables + [e for e in extra if os.path.exists(e)]:
        os.remove(p)
    print(f"pack: {dest} ({os.path.getsize(dest)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
