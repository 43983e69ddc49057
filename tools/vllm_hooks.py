#!/usr/bin/env python3
"""Forward hooks that write per-module `.pt` dump files from a running vLLM Hy3 model
(`vllm/model_executor/models/hy_v3.py`, `HYV3ForCausalLM`), for `tools/engine_convert.py --from
vllm`.

The files follow SGLang's dumper layout (python/sglang/srt/debug_utils/dumper.py, non-intrusive
mode), so one reader handles both engines:

    <out_dir>/step=S___rank=R___dump_index=I___name=non_intrusive__<module>.<output|inputs.i>[.j]___layer_id=L.pt
        = {"value": tensor (on the CPU), "meta": {step, rank, dump_index, name, layer_id,
                                                  tp_rank, tp_size, writer}}

- one step per call of the model's forward (the pre-hook of the root module starts it), so the
  logits that `compute_logits` produces after the forward belong to the same step;
- a tuple output with one tensor is written as `.output`, with several as `.output.0`, `.1`, ...
  (the dumper's rule): a decoder layer's (hidden, residual) pair gives `model.layers.L.output.0`
  and `.output.1`;
- `layer_id` is the decoder layer being run; it tells the layers apart for the rotary embedding
  module, which vLLM shares between layers (named after layer 0's module);
- the root's `input_ids` and `positions` are written under those names (the dumper's core
  fields);
- by default only tensors that engine_convert uses are written (`write_all=True` writes every
  module input and output).

Use, in each worker process (eager mode: no CUDA graphs, no torch.compile, since hooks do not
run inside a captured graph or a compiled region):

    import vllm_hooks
    hooks = vllm_hooks.attach(model, "/tmp/vllm_dump", tp_rank=rank, tp_size=tp)
    ... run one request (one sequence), prefill + decode steps ...
    hooks.remove()

docs/engine-dumps.md has a full example with `LLM.collective_rpc`.
"""

from __future__ import annotations

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hytools.convert_rules import PREFIX, classify  # noqa: E402
from lazy_import import torch  # noqa: E402  (imported on first use: --help works without torch)

_LAYER_RE = re.compile(r"(?:.+\.)?layers\.(\d+)$")


def _tensors(value):
    """The dumper's view of a module input/output: {suffix: tensor}."""
    if isinstance(value, torch.Tensor):
        return {"": value}
    if isinstance(value, (tuple, list)):
        ts = [t for t in value if isinstance(t, torch.Tensor)]
        if len(ts) == 1:
            return {"": ts[0]}
        return {str(i): t for i, t in enumerate(ts)}
    return {}


class Hooks:
    """Registered hooks; `remove()` takes them off. `step` counts forward calls of the root."""

    def __init__(self, model, out_dir, tp_rank, tp_size, write_all):
        self.out_dir = out_dir
        self.tp_rank = tp_rank
        self.tp_size = tp_size
        self.write_all = write_all
        self.step = -1
        self.dump_index = 0
        self.layer = None
        self.handles = []
        os.makedirs(out_dir, exist_ok=True)
        for name, mod in model.named_modules():
            m = _LAYER_RE.fullmatch(name)
            if m:
                self.handles.append(mod.register_forward_pre_hook(self._enter_layer(int(m.group(1)))))
                self.handles.append(mod.register_forward_hook(self._leave_layer()))
            if name == "":
                self.handles.append(self._root_pre_hook(mod))
            else:
                self.handles.append(mod.register_forward_pre_hook(self._inputs(name)))
            self.handles.append(mod.register_forward_hook(self._outputs(name)))

    def remove(self):
        for h in self.handles:
            h.remove()
        self.handles = []

    # ---- hooks -------------------------------------------------------------------------------
    def _enter_layer(self, L):
        def fn(mod, args):
            self.layer = L
        return fn

    def _leave_layer(self):
        def fn(mod, args, out):
            self.layer = None
        return fn

    def _root_pre_hook(self, mod):
        def start(args, kwargs):
            self.step += 1
            names = ["input_ids", "positions"]
            for i, n in enumerate(names):
                v = kwargs.get(n, args[i] if i < len(args) else None)
                if isinstance(v, torch.Tensor):
                    self._write(n, v)
            for i, a in enumerate(args):
                for k, t in _tensors(a).items():
                    self._write(".".join(p for p in (PREFIX + "inputs", str(i), k) if p), t)

        try:  # torch >= 2.0 passes keyword arguments to the hook (vLLM calls model(input_ids=...))
            return mod.register_forward_pre_hook(lambda m, a, kw: start(a, kw), with_kwargs=True)
        except TypeError:
            return mod.register_forward_pre_hook(lambda m, a: start(a, {}))

    def _inputs(self, name):
        def fn(mod, args):
            for i, a in enumerate(args):
                for k, t in _tensors(a).items():
                    self._write(PREFIX + ".".join(p for p in (name, "inputs", str(i), k) if p), t)
        return fn

    def _outputs(self, name):
        def fn(mod, args, out):
            for k, t in _tensors(out).items():
                self._write(PREFIX + ".".join(p for p in (name, "output", k) if p), t)
        return fn

    def _write(self, name, t):
        if self.step < 0:
            return
        if not self.write_all:
            c = classify(name, "vllm")
            if c is None or c[0] == "skip":
                return
        self.dump_index += 1
        tags = {"step": self.step, "rank": self.tp_rank, "dump_index": self.dump_index, "name": name}
        if self.layer is not None:
            tags["layer_id"] = self.layer
        meta = dict(tags, tp_rank=self.tp_rank, tp_size=self.tp_size, writer="hyoracle tools/vllm_hooks.py")
        fn = "___".join(f"{k}={v}" for k, v in tags.items()) + ".pt"
        torch.save({"value": t.detach().to("cpu").clone(), "meta": meta}, os.path.join(self.out_dir, fn))


def attach(model, out_dir, tp_rank=None, tp_size=None, write_all=False):
    """Hook every module of `model` (vLLM's HYV3ForCausalLM); returns a Hooks object. tp_rank /
    tp_size default to vLLM's tensor-parallel group when vLLM is importable, else 0 / 1."""
    if tp_rank is None or tp_size is None:
        try:
            from vllm.distributed import (get_tensor_model_parallel_rank,
                                          get_tensor_model_parallel_world_size)
            tp_rank = get_tensor_model_parallel_rank() if tp_rank is None else tp_rank
            tp_size = get_tensor_model_parallel_world_size() if tp_size is None else tp_size
        except Exception:  # no vLLM, or no parallel state initialised
            tp_rank = 0 if tp_rank is None else tp_rank
            tp_size = 1 if tp_size is None else tp_size
    return Hooks(model, out_dir, tp_rank, tp_size, write_all)


if __name__ == "__main__":
    # Hooks for a vLLM worker process, not a command: --help (or anything) prints how to use them.
    print(__doc__)
