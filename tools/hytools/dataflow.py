"""The layer's dataflow table (tools/dataflow.json, written by `hyoracle dataflow` from
reference/dataflow.h; a test keeps the two equal): the one source of the canonical names, their
execution order and their columns. Standard library only."""

from __future__ import annotations

import functools
import json
import os


@functools.lru_cache(maxsize=1)
def load_dataflow() -> dict:
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "dataflow.json")
    with open(path) as f:
        j = json.load(f)
    if j.get("format") != "hyoracle.dataflow" or j.get("version") != 1:
        raise ValueError(f"{path}: not a hyoracle.dataflow version 1 file")
    return j
