// op_cases.h: the one table of CUDA op cases that tests/cuda checks against the CPU reference and
// bench/cuda times, so that every benchmarked shape is also a tested one. Header only, no CUDA
// or GoogleTest: the tests and the benchmarks each bring their own inputs, bounds and timing.
//
// Attention (cuda/attention.h): queries at positions past .. past+T-1 over the first
// Tc = past + T + extra rows of a KV cache (the `extra` keys lie beyond every query's position, so
// they are masked: a kernel that reads them shows up as an error); q [T, nq, d], k/v [Tc, nkv, d],
// context [T, nq·d]. The odd sizes (1, 3, 7, 33, 129, 257 queries, caches that are no multiple
// of a key tile, every head dim the tensor-core kernels are built for, GQA groups of 1 to 8) hit
// the partial tiles, row groups and splits; the Hy-MT2-30B-A3B sizes (32 query heads, 4 KV heads,
// d = 128) are the ones the benchmark compares with torch SDPA.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace hyoracle::cases {

struct AttentionCase {
  int64_t T, past, extra, nq, nkv, d;
  // The Hy-MT2 sizes only: the benchmark's key of the case, which is also the key of
  // bench/cuda/sdpa_baseline.py's line for it where that script times the shape; "" otherwise.
  const char* key = "";

  int64_t Tc() const { return past + T + extra; }
  bool model_size() const { return key[0] != '\0'; }
  std::string name() const {
    return "T=" + std::to_string(T) + " past=" + std::to_string(past) + " Tc=" + std::to_string(Tc()) +
           " nq=" + std::to_string(nq) + " nkv=" + std::to_string(nkv) + " d=" + std::to_string(d);
  }
  // Query rows the reference is computed for: all of them, or, where that would cost more than
  // 2^31 multiply-adds, the first, middle and last (the last sees every visible key).
  std::vector<int64_t> checked_rows() const {
    std::vector<int64_t> rows;
    if (double(T) * double(past + T) * double(nq) * double(d) <= 2147483648.0) {
      for (int64_t i = 0; i < T; ++i) rows.push_back(i);
    } else {
      rows = {0, T / 2, T - 1};
    }
    return rows;
  }
};

inline const std::vector<AttentionCase>& attention_cases() {
  static const std::vector<AttentionCase> c{
      // Odd sizes.
      {1, 0, 0, 8, 1, 128},
      {1, 4095, 0, 32, 4, 128},
      {7, 0, 0, 32, 4, 128},
      {33, 0, 0, 8, 8, 128},
      {129, 0, 0, 32, 4, 128},
      {257, 0, 0, 8, 1, 128},
      {257, 300, 3, 16, 2, 128},
      {33, 40, 5, 8, 1, 128},
      {7, 5, 0, 4, 4, 32},
      {129, 3, 0, 16, 2, 16},
      {33, 0, 0, 8, 1, 48},
      {257, 0, 0, 8, 8, 64},
      {1, 999, 0, 8, 1, 16},
      {33, 17, 2, 6, 2, 32},
      {1, 70, 0, 16, 2, 64},
      {3, 700, 0, 32, 4, 128},
      // Hy-MT2 sizes: prefill of 4096 and 1024 tokens, a chunk of 512 after 3584 cached, and
      // decode over caches of 4096, 32768 (67 MB) and 131072 positions.
      {4096, 0, 0, 32, 4, 128, "prefill4096"},
      {1024, 0, 0, 32, 4, 128, "prefill1024"},
      {512, 3584, 0, 32, 4, 128, "chunk512after3584"},
      {1, 4095, 0, 32, 4, 128, "decode4096"},
      {1, 32767, 0, 32, 4, 128, "decode32768"},
      {1, 131071, 0, 32, 4, 128, "decode131072"},
  };
  return c;
}

// The case of benchmark key `key`; nullptr when the table has none.
inline const AttentionCase* attention_case(const std::string& key) {
  for (const AttentionCase& c : attention_cases())
    if (key == c.key) return &c;
  return nullptr;
}

}  // namespace hyoracle::cases
