// rope.h: rotary position embedding, NeoX / rotate-half pairing (docs/model.md §4.3).
//
//   inv_freq[i] = θ^(-2i/d),  φ[p, i] = p · inv_freq[i],  i = 0 .. d/2-1
//   for each head vector x [d] at position p, with a = x[0:d/2], b = x[d/2:d]:
//     out[i]       = a[i]·cos φ[p,i] − b[i]·sin φ[p,i]
//     out[i + d/2] = b[i]·cos φ[p,i] + a[i]·sin φ[p,i]
// Dimension j pairs with j + d/2 (not 2i with 2i+1). Shapes: x [T, heads, d], positions [T].
// Angles: exact mode in double (inv_freq = 1 / θ^(2i/d)); hf and fp32 modes as HF computes them:
// inv_freq = fp32(1 / fp32(θ^fp32(2i/d))), φ = fp32(fp32(p)·inv_freq), cos/sin rounded to fp32.
#pragma once
#include <vector>

#include "reference/numerics.h"
#include "util/tensor.h"

namespace hyoracle {

template <class S>
struct RopeTable {
  int64_t half = 0;     // d/2
  std::vector<S> cos;   // [T, d/2]
  std::vector<S> sin;   // [T, d/2]
};

template <class S>
RopeTable<S> rope_table(const std::vector<int64_t>& positions, int64_t head_dim, double theta, const Numerics& num);

// Rotates every head of x [T, heads, d] in place by the angles of table row t.
template <class S>
void apply_rope(Tensor<S>& x, const RopeTable<S>& table);

}  // namespace hyoracle
