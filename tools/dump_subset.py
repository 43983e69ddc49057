#!/usr/bin/env python3
"""Copy a hyoracle dump keeping only some tensors (standard library only, no torch).

    python3 tools/dump_subset.py IN_DUMP OUT_DUMP --modules
    python3 tools/dump_subset.py IN_DUMP OUT_DUMP --keep 'regex' [--keep ...]

--modules keeps what forward hooks on an engine's modules give (SGLang's dumper, a vLLM hook):
embed, input_norm, attn.q_norm, attn.k_norm, attn.out, post_norm, moe.router_logits,
moe.topk_ids, moe.topk_weights, moe.routed_out, moe.shared_out, mlp.out, out, final_norm,
logits, and the ids and generate.* tensors; no q/k/v, RoPE outputs, attention context,
resid_mid or scores. The tests use it to make partial dumps from full ones.
"""
import argparse
import json
import os
import re
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dump_io import file_check  # noqa: E402  (standard library only until a tensor is read)
from hytools.module_names import module_name_patterns  # noqa: E402  (standard library only)

MODULES = module_name_patterns()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--modules", action="store_true", help="keep what module hooks give")
    ap.add_argument("--keep", action="append", default=[], help="regex over names (steps.S. stripped)")
    a = ap.parse_args(argv)
    pats = [re.compile("^(" + p + ")$") for p in (MODULES if a.modules else []) + a.keep]
    if not pats:
        ap.error("give --modules or --keep")
    man = json.load(open(os.path.join(a.src, "manifest.json")))
    os.makedirs(a.dst, exist_ok=False)
    for f in man["files"]:
        raw = open(os.path.join(a.src, f), "rb").read()
        n = struct.unpack("<Q", raw[:8])[0]
        head = json.loads(raw[8:8 + n])
        data = raw[8 + n:]
        out_head, chunks, off = {}, [], 0
        for name, info in head.items():
            if name == "__metadata__":
                out_head[name] = info
                continue
            base = re.sub(r"^steps\.\d+\.", "", name)
            if not any(p.match(base) for p in pats):
                continue
            b, e = info["data_offsets"]
            chunks.append(data[b:e])
            out_head[name] = dict(info, data_offsets=[off, off + e - b])
            off += e - b
        hj = json.dumps(out_head, separators=(",", ":")).encode()
        hj += b" " * ((8 - len(hj) % 8) % 8)
        with open(os.path.join(a.dst, f), "wb") as o:
            o.write(struct.pack("<Q", len(hj)) + hj + b"".join(chunks))
    # The files changed: their sizes and CRCs are recomputed (readers refuse stale ones).
    if "file_checks" in man:
        man["file_checks"] = {f: file_check(os.path.join(a.dst, f)) for f in man["files"]}
    man.setdefault("producer", {})
    json.dump(man, open(os.path.join(a.dst, "manifest.json"), "w"), indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
