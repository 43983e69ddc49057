"""The layer's dataflow tables (tools/dataflow.json, written by `hyoracle dataflow` from
reference/dataflow.h; a test keeps the two equal): the one source of the canonical names, their
execution order and their columns, one table per model family ("hy_v3", "hunyuan_v1").
Standard library only."""

from __future__ import annotations

import functools
import json
import os


@functools.lru_cache(maxsize=1)
def _load_file() -> dict:
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "dataflow.json")
    with open(path) as f:
        j = json.load(f)
    if j.get("format") != "hyoracle.dataflow" or j.get("version") != 2:
        raise ValueError(f"{path}: not a hyoracle.dataflow version 2 file")
    return j


@functools.lru_cache(maxsize=None)
def load_dataflow(family: str = "hy_v3") -> dict:
    """The table of one family: its layer_steps and cached_key, with the file's model_steps,
    prev_out and kv_source."""
    j = _load_file()
    if family not in j["families"]:
        raise ValueError(f"dataflow.json: unknown family {family!r} (known: {', '.join(j['families'])})")
    out = {k: v for k, v in j.items() if k != "families"}
    out.update(j["families"][family])
    out["family"] = family
    return out


def families() -> list:
    return list(_load_file()["families"])
