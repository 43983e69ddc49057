#!/usr/bin/env python3
"""Independent dequantization of an FP8 (E4M3FN) hy_v3 checkpoint, for the loader's tests.

    fp8_dequant.py FP8_DIR OUT_DIR

Reads FP8_DIR/config.json and its safetensors (one file or an index) with nothing but the
standard library and numpy, and writes OUT_DIR/config.json (quantization_config removed) and
OUT_DIR/model.safetensors in which every F8_E4M3 weight is replaced by its dequantized values in
F64 and every scale tensor is dropped; all other tensors are copied byte for byte.

Written from the format definitions, not from hyoracle's C++ (docs/fp8.md):
  E4M3FN (OCP 8-bit float): sign S, exponent E (4 bits, bias 7), mantissa M (3 bits);
    E > 0: (-1)^S * 2^(E-7) * (1 + M/8); E = 0: (-1)^S * 2^-6 * M/8; S.1111.111 is NaN.
  per-tensor  (no weight_block_size): w = q * weight_scale (one float32 value)
  block-wise  (weight_block_size [b0, b1]): w[r, c] = q[r, c] * weight_scale_inv[r // b0, c // b1]
Each product is exact in float64 (a 4-bit times a 24-bit significand).

Exit status 0 on success, 77 when numpy is missing (CTest reports a skip), 1 on a bad input.
"""
import json
import os
import struct
import sys
from fractions import Fraction

try:
    import numpy as np
except ImportError:  # pragma: no cover
    print("fp8_dequant.py: numpy is not installed", file=sys.stderr)
    sys.exit(77)

# safetensors dtype name -> (numpy dtype, bytes per element); F8_E4M3 is decoded by table.
NUMPY = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "U8": "u1", "F8_E4M3": "u1"}
SIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
        "F8_E4M3": 1, "F8_E5M2": 1}


def e4m3_table():
    """The 256 E4M3FN values as float64, from the definition with exact rationals."""
    out = np.empty(256, dtype=np.float64)
    for b in range(256):
        s, e, m = b >> 7, (b >> 3) & 0xF, b & 0x7
        if e == 0xF and m == 0x7:
            out[b] = np.nan
            continue
        if e == 0:
            v = Fraction(2) ** -6 * Fraction(m, 8)
        else:
            v = Fraction(2) ** (e - 7) * (1 + Fraction(m, 8))
        out[b] = float(-v if s else v)  # exact: at most 4 significant bits
    # Spot checks against values stated in the OCP FP8 specification.
    assert out[0x7E] == 448.0 and out[0xFE] == -448.0  # largest finite
    assert out[0x08] == 2.0 ** -6 and out[0x01] == 2.0 ** -9  # smallest normal, smallest subnormal
    assert out[0x38] == 1.0 and np.isnan(out[0x7F]) and np.isnan(out[0xFF])
    return out


def read_safetensors(path):
    """name -> (dtype, shape, raw bytes)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        out[name] = (info["dtype"], list(info["shape"]), body[b:e])
    return out


def write_safetensors(path, tensors):
    """tensors: list of (name, dtype, shape, raw bytes)."""
    header, offset = {}, 0
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for _, _, _, raw in tensors:
            f.write(raw)


def load_all(d):
    index = os.path.join(d, "model.safetensors.index.json")
    files = sorted(set(json.load(open(index))["weight_map"].values())) if os.path.exists(index) else ["model.safetensors"]
    all_tensors = {}
    for fname in files:
        all_tensors.update(read_safetensors(os.path.join(d, fname)))
    return all_tensors


def as_array(dtype, shape, raw):
    return np.frombuffer(raw, dtype=NUMPY[dtype]).reshape(shape)


def dequantize(q, scale, block):
    """q: uint8 [O, I] E4M3 bytes; scale: float32 array; block: None or (b0, b1). -> float64 [O, I]."""
    w = e4m3_table()[q]
    s = scale.astype(np.float64)
    if block is None:
        if s.size != 1:
            raise ValueError("per-tensor scale with %d values" % s.size)
        return w * s.reshape(())
    b0, b1 = block
    O, I = q.shape
    if s.shape != (-(-O // b0), -(-I // b1)):
        raise ValueError("block scale of shape %s for a weight %s in blocks %s" % (s.shape, q.shape, block))
    full = np.repeat(np.repeat(s, b0, axis=0), b1, axis=1)[:O, :I]
    return w * full


def main(src, dst):
    config = json.load(open(os.path.join(src, "config.json")))
    qc = config.pop("quantization_config")
    if qc.get("quant_method") != "fp8":
        raise ValueError("quant_method %r" % qc.get("quant_method"))
    block = tuple(qc["weight_block_size"]) if qc.get("weight_block_size") is not None else None
    suffix = "_scale_inv" if block else "_scale"
    tensors = load_all(src)
    out = []
    for name in sorted(tensors):
        dtype, shape, raw = tensors[name]
        if name.endswith((".weight_scale", ".weight_scale_inv", ".input_scale")):
            continue
        if dtype == "F8_E4M3":
            sdt, sshape, sraw = tensors[name + suffix]
            if sdt != "F32":
                raise ValueError("%s%s is %s" % (name, suffix, sdt))
            w = dequantize(as_array(dtype, shape, raw), as_array(sdt, sshape, sraw), block)
            out.append((name, "F64", shape, w.astype("<f8").tobytes()))
        else:
            out.append((name, dtype, shape, raw))
    os.makedirs(dst, exist_ok=True)
    write_safetensors(os.path.join(dst, "model.safetensors"), out)
    with open(os.path.join(dst, "config.json"), "w") as f:
        json.dump(config, f, indent=2)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        sys.exit(0 if len(sys.argv) == 2 else 2)
    try:
        main(sys.argv[1], sys.argv[2])
    except (KeyError, ValueError, OSError) as e:
        print("fp8_dequant.py: error: %s" % e, file=sys.stderr)
        sys.exit(1)
