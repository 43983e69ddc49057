#!/usr/bin/env python3
"""Tests of the weights fingerprint (tools/hytools/checkpoint.py, `weights_fingerprint`) that dump
manifests record as `model.weights_fingerprint` (CTest label "tools").

    python3 tests/tools/test_weights_fingerprint.py [unittest args]

The safetensors files are written here byte by byte (standard library only) and the expected
values are computed here by hand from the definition: hashlib over the explicitly sliced bytes,
with the window offsets written out as numbers. The writers' use of the function (hf_dump.py on
the CPU stand-in of transformers) needs torch and is skipped without it.
"""

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools"))
from hytools.checkpoint import weights_fingerprint  # noqa: E402


def write_st(path, tensors, metadata=None):
    """tensors: list of (name, dtype string, shape, raw bytes), laid out in the given order."""
    header, off, blobs = {}, 0, []
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, data in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    hb = json.dumps(header).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)) + hb + b"".join(blobs))


def pattern(n, seed):
    """n bytes that differ at every offset that matters (no repeating 4 KiB blocks)."""
    return bytes((i * 131 + (i >> 8) * 7 + seed) & 0xFF for i in range(n))


def record(name, dtype, dims, n, *parts):
    """One tensor's contribution to the hash: the fields, then the sampled bytes given."""
    return (name.encode() + b"\0" + dtype.encode() + b"\0" + dims.encode() + b"\0" + str(n).encode() + b"\0"
            + b"".join(parts))


class Fingerprint(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="fingerprint_test_")
        # 40000 bytes: three windows; 12289: the smallest tensor sampled by windows; 12288: the
        # largest hashed whole; a scalar; a tiny tensor.
        self.big = pattern(40000, 1)
        self.edge = pattern(12289, 2)
        self.whole = pattern(12288, 3)
        self.scalar = pattern(4, 4)
        self.small = pattern(6, 5)

    def tearDown(self):
        shutil.rmtree(self.tmp)

    def expected(self, big=None):
        big = self.big if big is None else big
        h = hashlib.sha256()
        # bytewise name order: "a.big" < "a.edge" < "b" < "b.whole" < "model.Z" < "model.scalar"
        h.update(record("a.big", "BF16", "100,200", 40000, big[0:4096], big[17952:22048], big[35904:40000]))
        h.update(record("a.edge", "U8", "12289", 12289, self.edge[0:4096], self.edge[4096:8192],
                        self.edge[8193:12289]))
        h.update(record("b", "F16", "3", 6, self.small))
        h.update(record("b.whole", "F32", "3,1024", 12288, self.whole))
        h.update(record("model.Z", "I8", "2,0", 0))
        h.update(record("model.scalar", "F32", "", 4, self.scalar))
        return "sampled-sha256:" + h.hexdigest()

    def write_sharded(self, big=None):
        big = self.big if big is None else big
        write_st(os.path.join(self.tmp, "s1.safetensors"),
                 [("model.scalar", "F32", [], self.scalar), ("b.whole", "F32", [3, 1024], self.whole),
                  ("a.big", "BF16", [100, 200], big)], metadata={"format": "pt"})
        write_st(os.path.join(self.tmp, "s2.safetensors"),
                 [("b", "F16", [3], self.small), ("a.edge", "U8", [12289], self.edge),
                  ("model.Z", "I8", [2, 0], b"")])

    def test_single_directory_of_files_without_index(self):
        self.write_sharded()
        self.assertEqual(weights_fingerprint(self.tmp), self.expected())

    def test_index_lists_the_files(self):
        self.write_sharded()
        # a file the index does not list is not part of the checkpoint
        write_st(os.path.join(self.tmp, "stray.safetensors"), [("c", "F32", [1], b"\0\0\0\0")])
        wm = {"model.scalar": "s1.safetensors", "b.whole": "s1.safetensors", "a.big": "s1.safetensors",
              "b": "s2.safetensors", "a.edge": "s2.safetensors", "model.Z": "s2.safetensors"}
        with open(os.path.join(self.tmp, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {}, "weight_map": wm}, f)
        self.assertEqual(weights_fingerprint(self.tmp), self.expected())

    def test_only_the_sampled_bytes_count(self):
        self.write_sharded()
        before = weights_fingerprint(self.tmp)
        outside = bytearray(self.big)
        outside[5000] ^= 0xFF  # between the first and the middle window
        self.write_sharded(bytes(outside))
        self.assertEqual(weights_fingerprint(self.tmp), before)
        inside = bytearray(self.big)
        inside[20000] ^= 0xFF  # in the middle window
        self.write_sharded(bytes(inside))
        self.assertEqual(weights_fingerprint(self.tmp), self.expected(bytes(inside)))
        self.assertNotEqual(weights_fingerprint(self.tmp), before)

    def test_dtype_and_shape_are_hashed(self):
        write_st(os.path.join(self.tmp, "m.safetensors"), [("w", "F16", [2, 3], self.small)])
        a = weights_fingerprint(self.tmp)
        write_st(os.path.join(self.tmp, "m.safetensors"), [("w", "BF16", [2, 3], self.small)])
        b = weights_fingerprint(self.tmp)
        write_st(os.path.join(self.tmp, "m.safetensors"), [("w", "BF16", [3, 2], self.small)])
        c = weights_fingerprint(self.tmp)
        self.assertEqual(len({a, b, c}), 3)
        self.assertEqual(c, "sampled-sha256:" + hashlib.sha256(record("w", "BF16", "3,2", 6, self.small)).hexdigest())

    def test_bad_checkpoints_are_refused(self):
        with self.assertRaises(ValueError):  # no weights at all
            weights_fingerprint(self.tmp)
        write_st(os.path.join(self.tmp, "a.safetensors"), [("w", "U8", [2], b"ab")])
        write_st(os.path.join(self.tmp, "b.safetensors"), [("w", "U8", [2], b"cd")])
        with self.assertRaisesRegex(ValueError, "tensor w is in both"):
            weights_fingerprint(self.tmp)
        os.remove(os.path.join(self.tmp, "b.safetensors"))
        with open(os.path.join(self.tmp, "a.safetensors"), "r+b") as f:
            f.truncate(os.path.getsize(f.name) - 1)
        with self.assertRaisesRegex(ValueError, "past the end"):
            weights_fingerprint(self.tmp)

    def test_committed_fixtures(self):
        # regression values of the committed checkpoints (single file; three shards with an index)
        self.assertEqual(weights_fingerprint(os.path.join(ROOT, "fixtures", "tiny-hy3")),
                         "sampled-sha256:41e8342f7a6c40125d4d4dc22ba4e926c4ca71574f6398e993e07a0db1f312a8")
        self.assertEqual(weights_fingerprint(os.path.join(ROOT, "fixtures", "tiny-mt2")),
                         "sampled-sha256:bb99bc17a89b61c578c05fb7997ca4d3d40bc0e2ff234b887ec20e12a0b1c667")


class HfDumpRecordsIt(unittest.TestCase):
    """tools/hf_dump.py writes the fingerprint of the checkpoint it loaded (run on the CPU
    stand-in of transformers' HYV3ForCausalLM, bench/verdicts/standin)."""

    def test_hf_dump_manifest(self):
        try:
            import torch  # noqa: F401
            import numpy  # noqa: F401
        except ImportError:
            self.skipTest("torch/numpy not installed")
        ckpt = os.path.join(ROOT, "fixtures", "tiny-mt2")
        env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "bench", "verdicts", "standin"))
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "dump")
            p = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "hf_dump.py"), ckpt, out, "--tokens",
                                "5,311,77", "--dtype", "bf16", "--device", "cpu", "--kind", "modules"],
                               env=env, capture_output=True, text=True, timeout=300)
            self.assertEqual(p.returncode, 0, p.stdout[-2000:] + p.stderr[-2000:])
            with open(os.path.join(out, "manifest.json")) as f:
                model = json.load(f)["model"]
        self.assertEqual(model["weights_fingerprint"], weights_fingerprint(ckpt))
        self.assertEqual(model["checkpoint"], ckpt)


if __name__ == "__main__":
    unittest.main(verbosity=2)
