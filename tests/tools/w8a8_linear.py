#!/usr/bin/env python3
"""Independent check of the W8A8 reference mode on layer 0 of a per-tensor static FP8 checkpoint.

    w8a8_linear.py FP8_DIR DUMP_DIR

DUMP_DIR is a float64 dump of `hyoracle run --fp8-activations` on FP8_DIR. For layer 0's q, k, v
and o projections this recomputes, from the dump's own inputs (input_norm, attn.context) and the
checkpoint's bytes, what a W8A8 engine computes:

    x_hat = s_in * E4M3(x / s_in)         s_in: the projection's input_scale (F32 [1])
    y     = x_hat @ (q_w * s_w)^T          q_w: the E4M3 weight, s_w its weight_scale

and requires the dump's projection to agree to rel-L2 <= 1e-13, and to differ from the
unquantized product x @ W^T by more than 1e-3 (the quantization really ran). When layer 0 is
dense the MLP is checked too: mlp.out = Q(silu(Q(u) Wg^T) * (Q(u) Wu^T)) Wd^T with u = post_norm.

Written from the format definitions, not from hyoracle's C++: E4M3FN values come from
fp8_dequant.e4m3_table(); E4M3(z) is the nearest finite E4M3 value to z, ties to the even code
(mantissa LSB 0), |z| > 448 saturating to +-448 (the OCP specification's saturating conversion,
what engines' static quantization kernels do).

Exit status 0 when every check holds, 1 when one fails or an input is bad, 77 without numpy.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    import numpy as np
    import fp8_dequant as fd
except ImportError:  # pragma: no cover
    print("w8a8_linear.py: numpy is not installed", file=sys.stderr)
    sys.exit(77)


def e4m3_round(z):
    """Nearest finite E4M3FN value of each element of float64 array z; ties to the even code."""
    table = fd.e4m3_table()
    codes = np.arange(0x7F)  # the non-negative finite codes 0x00 .. 0x7E, increasing in value
    pos = table[codes]
    a = np.minimum(np.abs(z), 448.0)
    hi = np.searchsorted(pos, a, side="left").clip(1, len(pos) - 1)
    lo = hi - 1
    d_lo, d_hi = a - pos[lo], pos[hi] - a  # exact: neighbours within a factor 2, or 0
    pick_hi = (d_hi < d_lo) | ((d_hi == d_lo) & (codes[hi] % 2 == 0))
    exact = pos[hi] == a
    v = np.where(exact | pick_hi, pos[hi], pos[lo])
    return np.where(z < 0, -v, v)


def quantize(x, s):
    return s * e4m3_round(x / s)


def rel_l2(a, b):
    return float(np.linalg.norm((a - b).ravel()) / np.linalg.norm(b.ravel()))


def main(ck_dir, dump_dir):
    config = json.load(open(os.path.join(ck_dir, "config.json")))
    qc = config.get("quantization_config", {})
    if qc.get("activation_scheme") != "static" or qc.get("weight_block_size") is not None:
        raise ValueError("%s: a per-tensor static FP8 checkpoint is needed" % ck_dir)
    W = fd.load_all(ck_dir)
    manifest = json.load(open(os.path.join(dump_dir, "manifest.json")))
    if manifest["producer"].get("activations") != "fp8-static":
        raise ValueError("%s: producer.activations is not \"fp8-static\"" % dump_dir)
    D = {}
    for f in sorted(os.listdir(dump_dir)):
        if f.endswith(".safetensors"):
            D.update(fd.read_safetensors(os.path.join(dump_dir, f)))

    def act(name):
        dt, shape, raw = D[name]
        if dt != "F64":
            raise ValueError("%s: %s is %s, expected F64" % (dump_dir, name, dt))
        a = fd.as_array(dt, shape, raw)
        return a.reshape(shape[0], -1)

    def weight(name):
        dt, shape, raw = W[name + ".weight"]
        if dt != "F8_E4M3":
            raise ValueError("%s.weight is %s, expected F8_E4M3" % (name, dt))
        sdt, sshape, sraw = W[name + ".weight_scale"]
        w = fd.dequantize(fd.as_array(dt, shape, raw), fd.as_array(sdt, sshape, sraw), None)
        idt, ishape, iraw = W[name + ".input_scale"]
        return w, float(fd.as_array(idt, ishape, iraw).reshape(()))

    failures = []

    def check(label, got, want, unquantized):
        e, u = rel_l2(got, want), rel_l2(unquantized, want)
        ok = e <= 1e-13 and u > 1e-3
        print("%-28s rel-L2 vs independent W8A8 %.3g (<= 1e-13), unquantized differs by %.3g (> 1e-3): %s"
              % (label, e, u, "ok" if ok else "FAIL"))
        if not ok:
            failures.append(label)

    p = "model.layers.0."
    x = act("layers.0.input_norm")
    for proj in ("q", "k", "v"):
        w, s = weight(p + "self_attn.%s_proj" % proj)
        check("layers.0.attn.%s" % proj, act("layers.0.attn.%s" % proj), quantize(x, s) @ w.T, x @ w.T)
    w, s = weight(p + "self_attn.o_proj")
    ctx = act("layers.0.attn.context")
    check("layers.0.attn.out", act("layers.0.attn.out"), quantize(ctx, s) @ w.T, ctx @ w.T)
    if p + "mlp.gate_proj.weight" in W:
        u = act("layers.0.post_norm")
        (wg, sg), (wu, su), (wd, sd) = (weight(p + "mlp.%s_proj" % n) for n in ("gate", "up", "down"))
        g, up = quantize(u, sg) @ wg.T, quantize(u, su) @ wu.T
        h = g / (1 + np.exp(-g)) * up
        g0, up0 = u @ wg.T, u @ wu.T
        check("layers.0.mlp.out", act("layers.0.mlp.out"), quantize(h, sd) @ wd.T, (g0 / (1 + np.exp(-g0)) * up0) @ wd.T)
    return 1 if failures else 0


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        sys.exit(0 if len(sys.argv) == 2 else 2)
    try:
        sys.exit(main(sys.argv[1], sys.argv[2]))
    except (KeyError, ValueError, OSError) as e:
        print("w8a8_linear.py: error: %s" % e, file=sys.stderr)
        sys.exit(1)
