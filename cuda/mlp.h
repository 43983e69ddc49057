// mlp.h: the SwiGLU MLP on the GPU (docs/model.md §4.5, R10): dense layer 0 and the shared
// expert (the routed experts use the same swiglu step between two grouped GEMMs, moe.h).
//
//   [g ; v] = u · W_gate_upᵀ                        u [T, H], W_gate_up [2I, H] (gate rows first)
//   a       = T( T(SiLU(g)) · v ),  SiLU(z) = z / (1 + e^(−z))   (fp32)
//   MLP(u)  = a · W_downᵀ                           W_down [H, I] -> [T, H]
// GEMMs through cuBLAS (matmul.h), outputs rounded to T; accumulation fp32. T = double (the fp64
// path): weights held as bf16 (weight_t) and expanded per product, DGEMM, no rounding: the
// reference's exact mode, a = (g / (1 + e^(−g))) · v in double.
#pragma once
#include "cuda/device.h"

namespace hyoracle::cuda {

template <class T>
struct MlpWeights {
  DeviceTensor<weight_t<T>> gate_up;  // [2I, H]: rows 0..I-1 gate_proj, I..2I-1 up_proj
  DeviceTensor<weight_t<T>> down;     // [H, I]
};

// a[r, :] = T(T(SiLU(gu[r, 0:I])) · gu[r, I:2I])      gu [R, 2I] -> a [R, I]
template <class T>
void swiglu(const DeviceTensor<T>& gate_up, DeviceTensor<T>& a);

template <class T>
void swiglu_mlp(const DeviceTensor<T>& u, const MlpWeights<T>& w, DeviceTensor<T>& y);

}  // namespace hyoracle::cuda
