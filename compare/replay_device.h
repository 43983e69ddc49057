// replay_device.h: where teacher forcing (teacher_forcing.h) runs its expensive arithmetic.
//
// The replay's products (linear projections, router logits and lm_head; the dense and shared
// SwiGLU MLPs; the routed experts; attention; the dot-product conditioning κ and the attention
// rounding gain g that set its budgets) go through a ReplayDevice. Everything else (norms, RoPE,
// router scores, the composition logic, metrics) stays on the host.
//
//   cpu:  the reference's own functions (reference/*.h), precision exact (double). The ground
//         truth, and the default.
//   cuda: the fp64 CUDA layers (cuda/*.h, T = double) and cuBLAS DGEMM: the same formulas in IEEE
//         double, only the order of the sums differs (results agree with the CPU to a few ulp of
//         each sum, amplified by the step's conditioning). Weights are uploaded once per replayed
//         layer: bf16 / fp32 matrices as stored, expanded exactly to double on the GPU; others (FP8
//         dequantized) as the host's double values. Compiled only with HYORACLE_HAVE_CUDA.
//
// Weights: `linear` and `mlp` take host tensors whose storage lives until release_weights() (the
// layer's weights, the model's head); the device may keep them resident, keyed by address, until
// then. `linear_once` takes a temporary weight (nothing kept).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "reference/mlp.h"
#include "reference/moe.h"
#include "reference/router.h"
#include "util/tensor.h"

namespace hyoracle::compare {

class ReplayDevice {
 public:
  virtual ~ReplayDevice() = default;
  // "cpu", or "cuda (<GPU name>)".
  virtual std::string name() const = 0;
  // y = x·Wᵀ in double: x [M, K] (any leading shape with numel M·K), w [N, K] -> [M, N].
  virtual Tensor<double> linear(const Tensor<double>& x, const Tensor<double>& w) = 0;
  virtual Tensor<double> linear_once(const Tensor<double>& x, const Tensor<double>& w) = 0;
  // κ = ‖|a|·|W|ᵀ‖_F / ‖a·Wᵀ‖_F (at least 1; 1e6 when a·Wᵀ is 0 and |a|·|W|ᵀ is not).
  virtual double dot_conditioning(const Tensor<double>& a, const Tensor<double>& w) = 0;
  // reference/mlp.h's swiglu_mlp on u [T, H] (fp8: the W8A8 mode's input quantization).
  virtual Tensor<double> mlp(const Tensor<double>& u, const MlpWeights<double>& w, bool fp8) = 0;
  // Expert e of `experts` on x [R, H] (a SwiGLU of width I_e).
  virtual Tensor<double> expert(const Tensor<double>& x, const ExpertStore<double>& experts, int64_t e, bool fp8) = 0;
  // reference/moe.h's routed_experts.
  virtual Tensor<double> routed_experts(const Tensor<double>& u, const RouterOutput<double>& r,
                                        const ExpertStore<double>& experts, bool fp8) = 0;
  // reference/attention.h's attention in precision exact: q [T, nq, d] at pos, k, v [Tk, nkv, d]
  // at kpos (key j visible iff kpos[j] <= pos[i]) -> [T, nq·d].
  virtual Tensor<double> attention(const Tensor<double>& q, const Tensor<double>& k, const Tensor<double>& v,
                                   const std::vector<int64_t>& pos, const std::vector<int64_t>& kpos) = 0;
  // teacher_forcing.h's attention_rounding_gain.
  virtual double attention_gain(const Tensor<double>& q, const Tensor<double>& k, const Tensor<double>& v,
                                const std::vector<int64_t>& pos, const std::vector<int64_t>& kpos) = 0;
  // Forget every weight kept since the last call (their host storage is about to go).
  virtual void release_weights() = 0;
};

// "cpu" or "cuda"; anything else, a build without CUDA or no usable GPU: one-line Error
// "--device cuda: ...". `threads`: the CPU's reference threads (the cuda device's host fallbacks).
std::unique_ptr<ReplayDevice> make_replay_device(const std::string& device, int threads);
// The CPU device (reference functions).
std::unique_ptr<ReplayDevice> make_cpu_replay_device(int threads);

}  // namespace hyoracle::compare
