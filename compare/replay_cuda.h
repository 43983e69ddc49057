// replay_cuda.h: the cuda ReplayDevice (replay_device.h), built only with HYORACLE_HAVE_CUDA.
#pragma once
#include <memory>

#include "compare/replay_device.h"

namespace hyoracle::compare {

// One-line Error "--device cuda: ..." when no CUDA device can be used.
std::unique_ptr<ReplayDevice> make_cuda_replay_device(int threads);

// Kernels of replay_cuda_kernels.cu (device pointers, the context's stream).
namespace replay_kernels {
// y[i] = |x[i]|
void abs_into(const double* x, int64_t n, double* y);
// Σ x[i]², returned to the host (synchronises).
double sum_squares(const double* x, int64_t n);
// One query head's rows of the attention gain (teacher_forcing.h, attention_rounding_gain): s holds
// the raw products q_i·k_j [rows, Tk] (row stride Tk); each row i is turned in place into
// P_ij = softmax_j(s_ij · scale) over keys with kpos[j] <= qpos[i], and a[i, j] = P_ij² (s_ij·scale)²
// (0 where masked). qpos [rows], kpos [Tk] on the device.
void softmax_gain_rows(double* s, double* a, int64_t rows, int64_t Tk, double scale, const int64_t* qpos,
                       const int64_t* kpos);
// Adds to acc[0..2] (device) the rows' terms: acc[0] += Σ_i (Σ_j a_ij vv_j − 2 ctx_i·av_i + ‖ctx_i‖² Σ_j a_ij),
// acc[1] += Σ_ij P_ij² vv_j, acc[2] += Σ_i ‖ctx_i‖². p, a [rows, Tk]; vv [Tk]; ctx, av [rows, d].
void gain_terms(const double* p, const double* a, const double* vv, const double* ctx, const double* av, int64_t rows,
                int64_t Tk, int64_t d, double* acc);
}  // namespace replay_kernels

}  // namespace hyoracle::compare
