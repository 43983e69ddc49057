"""One forward pass (one dumper step) of engine files, all TP ranks -> its canonical tensors."""

from __future__ import annotations

import os
from collections import OrderedDict, defaultdict

from hytools import convert_tp as tp_layout
from hytools.convert_rules import ConvertError
from lazy_import import torch  # imported on first use


class Assembler:
    """Turns the records of one dumper step (every TP rank) into canonical tensors, checking each
    shape against the config; counts the gate/up blocks it could check."""

    def __init__(self, sizes, engine, tp, bias_for_layer):
        self.s = sizes
        self.engine = engine
        self.tp = tp
        self.bias_for_layer = bias_for_layer
        self.gate_up_checked = 0
        self.gate_up_unchecked = 0
        tp_layout.check_tp_split(sizes.nq, tp, "num_attention_heads")
        tp_layout.check_tp_split(sizes.nkv, tp, "num_key_value_heads")
        self.nq_r = sizes.nq // tp
        self.nkv_r = tp_layout.local_heads(sizes.nkv, tp)

    # per (kind, layer, role) the records of all ranks, keyed by rank
    def forward(self, records, prefix):
        s = self.s
        groups = defaultdict(dict)
        for r in records:
            key = (r.kind, r.layer, r.role)
            if r.rank in groups[key]:
                prev = groups[key][r.rank]
                if not torch.equal(prev.value, r.value):
                    raise ConvertError(f"{r.path}: tensor {r.name}: dumped twice in step {r.step} "
                                       f"rank {r.rank} with different values ({prev.path})")
                continue
            groups[key][r.rank] = r
        out = OrderedDict()
        T = self._tokens(groups)
        info = {"T": T}

        ids = groups.pop(("input_ids", None, None), None)
        if ids:
            r = ids[min(ids)]
            out[prefix + "input_ids"] = r.value.reshape(-1).to(torch.int64)
        pos = groups.pop(("positions", None, None), None)
        info["positions"] = pos[min(pos)].value.reshape(-1).tolist() if pos else None
        sl = groups.pop(("seq_lens", None, None), None)
        if sl:
            r = sl[min(sl)]
            if r.value.numel() != 1:
                raise ConvertError(f"{r.path}: seq_lens has {r.value.numel()} entries: a batch of "
                                   f"several sequences; hyoracle dumps are batch 1 (run one request)")

        pairs = defaultdict(dict)
        gate_up = {}
        for (kind, L, role), by_rank in sorted(groups.items(), key=lambda kv: (str(kv[0][0]), -1 if kv[0][1] is None else kv[0][1], str(kv[0][2]))):
            if L is not None and not 0 <= L < s.layers:
                r = next(iter(by_rank.values()))
                raise ConvertError(f"{r.path}: tensor {r.name}: layer {L}, config has {s.layers} layers")
            name = None if L is None or role is None else f"layers.{L}.{role}"
            if kind == "repl":
                r = self._replicated(by_rank)
                out[prefix + (role if L is None else name)] = self._rows(r, T)
            elif kind == "qkv":
                ranks = self._ranks(by_rank)
                q, k, v = [], [], []
                width = (self.nq_r + 2 * self.nkv_r) * s.d
                for r in ranks:
                    t = self._rows(r, T, dims=2)
                    if t.shape[1] != width:
                        raise ConvertError(
                            f"{r.path}: tensor {r.name}: {t.shape[1]} columns, expected q|k|v = "
                            f"({self.nq_r} + 2·{self.nkv_r})·{s.d} = {width} for --tp {self.tp}")
                    a, b, c = tp_layout.split_qkv(t, self.nq_r, self.nkv_r, s.d)
                    q.append(a), k.append(b), v.append(c)
                out[prefix + f"layers.{L}.attn.q"] = tp_layout.gather_heads(q, s.nq, self.tp)
                out[prefix + f"layers.{L}.attn.k"] = tp_layout.gather_heads(k, s.nkv, self.tp)
                out[prefix + f"layers.{L}.attn.v"] = tp_layout.gather_heads(v, s.nkv, self.tp)
            elif kind in ("heads_q", "heads_kv"):
                n_tot, n_r = (s.nq, self.nq_r) if kind == "heads_q" else (s.nkv, self.nkv_r)
                shards = [self._heads(r, T, n_r) for r in self._ranks(by_rank)]
                out[prefix + name] = tp_layout.gather_heads(shards, n_tot, self.tp)
            elif kind == "cols":
                shards = []
                for r in self._ranks(by_rank):
                    t = self._rows(r, T, dims=2)
                    if t.shape[1] != self.nq_r * s.d:
                        raise ConvertError(f"{r.path}: tensor {r.name}: {t.shape[1]} columns, expected "
                                           f"{self.nq_r}·{s.d} = {self.nq_r * s.d} (heads of one rank)")
                    shards.append(t)
                out[prefix + name] = torch.cat(shards, dim=1)
            elif kind == "psum":
                out[prefix + name] = tp_layout.partial_sum([self._rows(r, T) for r in self._ranks(by_rank)])
            elif kind in ("pair_h", "pair_r", "topk_w", "topk_ids"):
                pairs[L][kind] = self._replicated(by_rank)
            elif kind in ("gate_up", "act"):
                gate_up[(L, role, kind)] = by_rank
            elif kind == "logits":
                r = self._replicated(by_rank)
                t = r.value.reshape(-1, r.value.shape[-1])
                if t.shape[1] != s.V:
                    raise ConvertError(f"{r.path}: tensor {r.name}: {t.shape[1]} columns, expected vocab_size {s.V}")
                if t.shape[0] not in (1, T):
                    raise ConvertError(f"{r.path}: tensor {r.name}: {t.shape[0]} rows, expected 1 (last token) or T = {T}")
                info["logits_row"] = t[-1].clone()
                if t.shape[0] == T:
                    out[prefix + "logits"] = t
            else:  # pragma: no cover - classify() returns only the kinds above
                raise AssertionError(kind)

        for L, p in sorted(pairs.items()):
            if "pair_h" in p or "pair_r" in p:
                if "pair_h" not in p or "pair_r" not in p:
                    r = p.get("pair_h") or p.get("pair_r")
                    raise ConvertError(f"{r.path}: tensor {r.name}: model.layers.{L}.output needs both "
                                       f"(hidden, residual) = output.0 and output.1; one is missing")
                h, res = self._rows(p["pair_h"], T), self._rows(p["pair_r"], T)
                out[prefix + f"layers.{L}.out"] = tp_layout.layer_out(h, res)
            if "topk_w" in p or "topk_ids" in p:
                if "topk_w" not in p or "topk_ids" not in p:
                    r = p.get("topk_w") or p.get("topk_ids")
                    raise ConvertError(f"{r.path}: tensor {r.name}: topk output needs weights (output.0) and ids (output.1)")
                w, i = self._rows(p["topk_w"], T, dims=2), self._rows(p["topk_ids"], T, dims=2)
                if tuple(w.shape) != (T, s.k) or tuple(i.shape) != (T, s.k):
                    raise ConvertError(f"{p['topk_ids'].path}: top-k shapes {tuple(w.shape)}, {tuple(i.shape)}, "
                                       f"expected [{T}, {s.k}] (num_experts_per_tok)")
                if i.is_floating_point() or int(i.min()) < 0 or int(i.max()) >= s.E:
                    raise ConvertError(f"{p['topk_ids'].path}: tensor {p['topk_ids'].name}: expected integer "
                                       f"expert ids in [0, {s.E})")
                corrected = None
                bias = self.bias_for_layer(L)
                logits = out.get(prefix + f"layers.{L}.moe.router_logits")
                if bias is not None and logits is not None:
                    # sigmoid score + expert_bias in fp32, as both engines' routers compute it
                    corrected = torch.sigmoid(logits.float()) + bias
                ids_o, w_o = tp_layout.order_topk(i, w, corrected)
                out[prefix + f"layers.{L}.moe.topk_ids"] = ids_o
                out[prefix + f"layers.{L}.moe.topk_weights"] = w_o
                info["topk_order"] = "corrected score" if corrected is not None else "weight"
        self._check_gate_up(gate_up, T)
        return out, info

    def _tokens(self, groups):
        ids = groups.get(("input_ids", None, None))
        if ids:
            return ids[min(ids)].value.numel()
        emb = groups.get(("repl", None, "embed"))
        if emb:
            return emb[min(emb)].value.shape[0]
        r = next(iter(next(iter(groups.values())).values()))
        raise ConvertError(f"{os.path.dirname(r.path)}: step {r.step} has neither input_ids nor "
                           f"model.embed_tokens.output: cannot tell the token count")

    def _replicated(self, by_rank):
        """A tensor every rank holds a copy of (after an all-reduce, or computed redundantly): the
        lowest rank's, after checking that the others hold the same values. Ranks that disagree are
        an engine bug worth seeing, not something to pick a side of silently."""
        first = by_rank[min(by_rank)]
        for rank in sorted(by_rank):
            r = by_rank[rank]
            if r is not first and not torch.equal(r.value, first.value):
                raise ConvertError(f"{r.path}: tensor {r.name}: rank {rank} differs from rank {first.rank} "
                                   f"({first.path}), a tensor every rank should hold the same")
        return first

    def _ranks(self, by_rank):
        """The records of ranks 0..tp-1 in rank order; any other set of ranks is an error."""
        if sorted(by_rank) != list(range(self.tp)):
            r = by_rank[min(by_rank)]
            raise ConvertError(f"{r.path}: tensor {r.name}: TP ranks {sorted(by_rank)} present, "
                               f"expected 0..{self.tp - 1} (--tp {self.tp})")
        return [by_rank[i] for i in range(self.tp)]

    def _rows(self, r, T, dims=None):
        t = r.value
        if t.dim() >= 1 and t.shape[0] != T:
            raise ConvertError(f"{r.path}: tensor {r.name}: shape {tuple(t.shape)}, expected {T} rows "
                               f"(the forward's tokens, batch 1)")
        if dims is not None and t.dim() != dims:
            raise ConvertError(f"{r.path}: tensor {r.name}: shape {tuple(t.shape)}, expected {dims} dimensions")
        if t.dim() == 2 and r.kind in ("repl", "psum") and t.shape[1] != self.s.H \
                and r.role not in ("moe.router_logits",):
            raise ConvertError(f"{r.path}: tensor {r.name}: shape {tuple(t.shape)}, expected [{T}, {self.s.H}]")
        if r.role == "moe.router_logits" and tuple(t.shape) != (T, self.s.E):
            raise ConvertError(f"{r.path}: tensor {r.name}: shape {tuple(t.shape)}, expected [{T}, {self.s.E}]")
        return t

    def _heads(self, r, T, n_r):
        """[T, n_r, d] (vLLM's per-head view), [T·n_r, d] (SGLang's reshape(-1, d)) or
        [T, n_r·d] (flat) -> [T, n_r, d]."""
        t, d = r.value, self.s.d
        if t.dim() == 3 and tuple(t.shape) == (T, n_r, d):
            return t
        if t.dim() == 2 and tuple(t.shape) == (T * n_r, d):
            return t.reshape(T, n_r, d)
        if t.dim() == 2 and tuple(t.shape) == (T, n_r * d):
            return t.reshape(T, n_r, d)
        raise ConvertError(f"{r.path}: tensor {r.name}: shape {tuple(t.shape)}, expected [{T}, {n_r}, {d}], "
                           f"[{T * n_r}, {d}] or [{T}, {n_r * d}] ({n_r} heads per rank, --tp {self.tp})")

    def _check_gate_up(self, gate_up, T):
        """gate_up_proj output [gate_r | up_r] against down_proj's input silu(gate_r)·up_r."""
        for (L, role, kind), by_rank in sorted(gate_up.items()):
            if kind != "gate_up":
                continue
            I = (self.s.dense_I if not self.s.is_moe(L) else self.s.shared_I) if role == "mlp" else self.s.shared_I
            if role == "mlp" and self.s.is_moe(L):
                r = by_rank[min(by_rank)]
                raise ConvertError(f"{r.path}: tensor {r.name}: layer {L} is an MoE layer (first_k_dense_replace "
                                   f"{self.s.first_dense}) and has no dense gate_up_proj")
            if I % self.tp:
                raise ConvertError(f"intermediate size {I} of layer {L} ({role}) does not split over --tp {self.tp}")
            w = I // self.tp
            acts = gate_up.get((L, role, "act"))
            for r in self._ranks(by_rank):
                t = self._rows(r, T, dims=2)
                if t.shape[1] != 2 * w:
                    raise ConvertError(f"{r.path}: tensor {r.name}: {t.shape[1]} columns, expected [gate | up] = "
                                       f"2·{I}/{self.tp} = {2 * w}")
                if not acts or r.rank not in acts:
                    self.gate_up_unchecked += 1
                    continue
                gate, up = tp_layout.split_gate_up(t, w)
                a = acts[r.rank]
                av = self._rows(a, T, dims=2)
                if av.shape[1] != w:
                    raise ConvertError(f"{a.path}: tensor {a.name}: {av.shape[1]} columns, expected {I}/{self.tp} = {w}")
                ref = torch.nn.functional.silu(gate.double()) * up.double()
                err = float((ref - av.double()).norm() / max(float(av.double().norm()), 1e-300))
                if err > tp_layout.act_tolerance(t.dtype):
                    raise ConvertError(f"{r.path}: tensor {r.name}: silu(gate)·up differs from {a.name} "
                                       f"(rel_l2 {err:.3g} > {tp_layout.act_tolerance(t.dtype):.0e}): the columns are not "
                                       f"[gate | up] of {w} each")
                self.gate_up_checked += 1


