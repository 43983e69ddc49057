"""Undoing the engines' fused and tensor-parallel layouts: pure functions over tensors, looked up
through this module by convert_assemble (so a test can plant a bug in one of them)."""

from __future__ import annotations

from hytools.convert_rules import ConvertError
from lazy_import import torch  # imported on first use


def local_heads(n_total, tp):
    """Heads per TP rank: n/tp, or 1 when n < tp (KV heads replicated over tp/n ranks)."""
    return max(1, n_total // tp)


def check_tp_split(n_total, tp, what):
    if n_total >= tp and n_total % tp:
        raise ConvertError(f"{what}: {n_total} heads do not split over --tp {tp}")
    if n_total < tp and tp % n_total:
        raise ConvertError(f"{what}: --tp {tp} is not a multiple of {n_total} heads")


def gather_heads(shards, n_total, tp):
    """Per-rank head blocks [T, n_r, d] (rank order) -> [T, n_total, d]. With n_total >= tp rank r
    holds heads [r·n_r, (r+1)·n_r); with n_total < tp head h lives on ranks h·tp/n .. and the
    first of them is taken."""
    if n_total >= tp:
        return torch.cat(shards, dim=1)
    rep = tp // n_total
    return torch.cat([shards[h * rep] for h in range(n_total)], dim=1)


def split_qkv(t, nq_r, nkv_r, d):
    """One rank's fused qkv_proj output [T, (nq_r + 2·nkv_r)·d], laid out q | k | v (vLLM and
    SGLang: qkv.split([q_size, kv_size, kv_size], -1)) -> q [T, nq_r, d], k, v [T, nkv_r, d]."""
    T = t.shape[0]
    q, k, v = t.split([nq_r * d, nkv_r * d, nkv_r * d], dim=-1)
    return q.reshape(T, nq_r, d), k.reshape(T, nkv_r, d), v.reshape(T, nkv_r, d)


def split_gate_up(t, width):
    """One rank's MergedColumnParallelLinear([I, I]) output [T, 2·width] -> (gate, up)."""
    return t[:, :width], t[:, width:]


def layer_out(hidden, residual):
    """A decoder layer's (hidden, residual) -> the residual stream after the layer,
    hidden + residual, rounded once to their dtype (the add of the next fused add-RMSNorm)."""
    return hidden + residual


def partial_sum(parts):
    """Row-parallel partial outputs of the TP ranks -> their sum, accumulated in float64 and
    rounded once to the parts' dtype."""
    acc = parts[0].to(torch.float64)
    for p in parts[1:]:
        acc = acc + p.to(torch.float64)
    return acc.to(parts[0].dtype)


def order_topk(ids, weights, corrected=None):
    """Reorder each row of top-k ids / weights by descending corrected score corrected[t, id]
    ([T, E]) or, without it, by descending weight; exact ties to the lower id. ids, weights
    [T, k]. Returns (ids as I32, weights)."""
    ids = ids.long()
    out_i, out_w = torch.empty_like(ids), torch.empty_like(weights)
    for t in range(ids.shape[0]):
        row = ids[t].tolist()
        vals = corrected[t, ids[t]].tolist() if corrected is not None else weights[t].tolist()
        order = sorted(range(len(row)), key=lambda j: (-vals[j], row[j]))
        out_i[t] = ids[t, order]
        out_w[t] = weights[t, order]
    return out_i.to(torch.int32), out_w


def act_tolerance(dtype):
    """rel-L2 bound of silu(gate)·up against the engine's activation output: a few roundings of
    the dtype (a [gate | up] swap gives an error of order 1)."""
    return {torch.float64: 1e-9, torch.float32: 1e-4}.get(dtype, 5e-2)

