#include "moe.h"

#include "elementwise.h"

namespace hyoracle::cuda {

namespace {

constexpr int kSortThreads = 1024, kMaxGroups = 4096;

// One block: counts per group (shared-memory atomics), exclusive prefix sums of rows and of row
// tiles (warp 0, each lane a contiguous run of groups, then a shuffle scan), scatter. Group E
// (when extra > 0) holds rows n .. n+extra-1 for tokens 0 .. extra-1.
__global__ void __launch_bounds__(kSortThreads) sort_kernel(const int32_t* __restrict__ ids, int n, int k, int E, int extra,
                                                            int32_t* row_offset, int32_t* tile_offset, int32_t* token,
                                                            int32_t* row_of) {
  __shared__ int count[kMaxGroups], cursor[kMaxGroups];
  const int G = E + (extra > 0 ? 1 : 0), tid = threadIdx.x;
  for (int g = tid; g < G; g += blockDim.x) count[g] = g < E ? 0 : extra;
  __syncthreads();
  for (int i = tid; i < n; i += blockDim.x) atomicAdd(&count[ids[i]], 1);
  __syncthreads();
  if (tid < 32) {
    const int per = (G + 31) / 32, lo = min(G, tid * per), hi = min(G, lo + per);
    int rows = 0, tiles = 0;
    for (int g = lo; g < hi; ++g) rows += count[g], tiles += (count[g] + kGroupTileM - 1) / kGroupTileM;
    int rows_in = rows, tiles_in = tiles;  // inclusive scans over lanes
    for (int o = 1; o < 32; o *= 2) {
      const int r = __shfl_up_sync(0xffffffffu, rows_in, o), t = __shfl_up_sync(0xffffffffu, tiles_in, o);
      if (tid >= o) rows_in += r, tiles_in += t;
    }
    int r = rows_in - rows, t = tiles_in - tiles;
    for (int g = lo; g < hi; ++g) {
      row_offset[g] = r;
      tile_offset[g] = t;
      cursor[g] = r;
      r += count[g];
      t += (count[g] + kGroupTileM - 1) / kGroupTileM;
    }
    if (tid == 31) row_offset[G] = rows_in, tile_offset[G] = tiles_in;
  }
  __syncthreads();
  for (int i = tid; i < n; i += blockDim.x) {
    const int r = atomicAdd(&cursor[ids[i]], 1);
    token[r] = i / k;
    row_of[i] = r;
  }
  for (int t = tid; t < extra; t += blockDim.x) token[n + t] = t;
}

// One block per token: routed[t, h] = T(Σ_j w[t, j]·Y[row(t, j), h]), slots in ascending expert id;
// with a shared group (Y rows n + t): shared[t, h] = Y[n + t, h], out[t, h] = T(routed + shared).
template <class T>
__global__ void combine_kernel(const T* __restrict__ y, const int32_t* __restrict__ ids, const float* __restrict__ w,
                               const int32_t* __restrict__ row_of, int k, int64_t H, int64_t n, bool has_shared,
                               T* routed, T* shared, T* out) {
  const int64_t t = blockIdx.x;
  __shared__ int order[64];
  if (threadIdx.x == 0) {
    for (int j = 0; j < k; ++j) order[j] = j;
    for (int a = 1; a < k; ++a)  // insertion sort of the k slots by expert id
      for (int b = a; b > 0 && ids[t * k + order[b]] < ids[t * k + order[b - 1]]; --b) {
        const int tmp = order[b];
        order[b] = order[b - 1];
        order[b - 1] = tmp;
      }
  }
  __syncthreads();
  for (int64_t h = threadIdx.x; h < H; h += blockDim.x) {
    float acc = 0.0f;
    for (int jj = 0; jj < k; ++jj) {
      const int j = order[jj];
      acc = fmaf(w[t * k + j], to_f32(y[int64_t(row_of[t * k + j]) * H + h]), acc);
    }
    const T r = from_f32<T>(acc);
    routed[t * H + h] = r;
    if (has_shared) {
      const T s = y[(n + t) * H + h];
      shared[t * H + h] = s;
      out[t * H + h] = from_f32<T>(to_f32(r) + to_f32(s));
    }
  }
}

// The routed experts and, when `shared` is given, the shared expert as one more group; writes
// routed, and (with shared) shared_out and out.
template <class T>
void experts_forward(const DeviceTensor<T>& u, const RouterOutput& r, const ExpertWeights<T>& ex,
                     const MlpWeights<T>* shared, DeviceTensor<T>& routed, DeviceTensor<T>* shared_out,
                     DeviceTensor<T>* out) {
  const int64_t T_ = u.rows(), H = u.cols(), k = r.k, E = ex.count(), I2 = ex.gate_up.dim(1), I = I2 / 2;
  if (k > 64) fail("cuda routed_experts: num_experts_per_tok > 64 is not supported");
  if (routed.numel() != T_ * H || ex.gate_up.dim(2) != H || ex.down.dim(1) != H || ex.down.dim(2) != I)
    fail("cuda routed_experts: u " + shape_str(u.shape) + ", gate_up " + shape_str(ex.gate_up.shape) + ", down " +
         shape_str(ex.down.shape) + " do not match");
  if (!T_) return;
  const int64_t n = T_ * k, extra = shared ? T_ : 0;
  const ExpertSort s = sort_by_expert(r, E, extra);
  DeviceTensor<T> act({n + extra, I}), y({n + extra, H});
  // Distinct experts per token (top-k): no routed group holds more than T rows, the shared one T.
  grouped_gemm(u.data(), s.token.data(), GroupWeights<T>{ex.gate_up.data(), E, shared ? shared->gate_up.data() : nullptr, I2, H},
               s.layout, T_, GroupEpilogue::swiglu, act.data());
  grouped_gemm(act.data(), nullptr, GroupWeights<T>{ex.down.data(), E, shared ? shared->down.data() : nullptr, H, I},
               s.layout, T_, GroupEpilogue::store, y.data());
  combine_kernel<T><<<unsigned(T_), 256, 0, gpu().stream>>>(y.data(), r.ids.data(), r.weights.data(), s.row_of.data(),
                                                             int(k), H, n, shared != nullptr, routed.data(),
                                                             shared ? shared_out->data() : nullptr,
                                                             shared ? out->data() : nullptr);
  check_launch("routed_experts combine");
}

}  // namespace

ExpertSort sort_by_expert(const RouterOutput& r, int64_t E, int64_t extra) {
  const int64_t n = r.ids.numel(), G = E + (extra > 0 ? 1 : 0);
  if (G > kMaxGroups) fail("cuda sort_by_expert: at most " + std::to_string(kMaxGroups) + " groups, got " + std::to_string(G));
  ExpertSort s;
  s.layout.groups = G;
  s.layout.max_rows = n + extra;
  s.layout.row_offset = DeviceTensor<int32_t>({G + 1});
  s.layout.tile_offset = DeviceTensor<int32_t>({G + 1});
  s.token = DeviceTensor<int32_t>({n + extra});
  s.row_of = DeviceTensor<int32_t>({n});
  sort_kernel<<<1, kSortThreads, 0, gpu().stream>>>(r.ids.data(), int(n), int(std::max<int64_t>(r.k, 1)), int(E),
                                                    int(extra), s.layout.row_offset.data(), s.layout.tile_offset.data(),
                                                    s.token.data(), s.row_of.data());
  check_launch("sort_by_expert");
  return s;
}

template <class T>
void routed_experts(const DeviceTensor<T>& u, const RouterOutput& r, const ExpertWeights<T>& experts, DeviceTensor<T>& out) {
  experts_forward<T>(u, r, experts, nullptr, out, nullptr, nullptr);
}

template <class T>
MoeOutput<T> moe_block(const DeviceTensor<T>& u, const DeviceTensor<float>& w_router, const DeviceTensor<float>& bias,
                       const ExpertWeights<T>& experts, const MlpWeights<T>& shared, int64_t k, double scaling,
                       bool renormalize) {
  MoeOutput<T> m;
  m.router = route(u, w_router, bias, k, scaling, renormalize);
  m.routed = DeviceTensor<T>(u.shape);
  m.shared = DeviceTensor<T>(u.shape);
  m.out = DeviceTensor<T>(u.shape);
  const int64_t I = experts.gate_up.dim(1) / 2;
  const bool fold = !shared.gate_up.empty() && shared.gate_up.dim(0) == 2 * I && shared.down.dim(1) == I;
  if (fold) {  // the shared expert as one more group of the grouped GEMMs; combine adds it
    experts_forward(u, m.router, experts, &shared, m.routed, &m.shared, &m.out);
    return m;
  }
  routed_experts(u, m.router, experts, m.routed);
  if (!shared.gate_up.empty()) swiglu_mlp(u, shared, m.shared);
  else check(cudaMemsetAsync(m.shared.data(), 0, size_t(u.numel()) * sizeof(T), gpu().stream), "moe_block: memset");
  add(m.routed, m.shared, m.out);
  return m;
}

template void routed_experts<float>(const DeviceTensor<float>&, const RouterOutput&, const ExpertWeights<float>&,
                                    DeviceTensor<float>&);
template void routed_experts<bf16>(const DeviceTensor<bf16>&, const RouterOutput&, const ExpertWeights<bf16>&,
                                   DeviceTensor<bf16>&);
template void routed_experts<fp16>(const DeviceTensor<fp16>&, const RouterOutput&, const ExpertWeights<fp16>&,
                                   DeviceTensor<fp16>&);
template MoeOutput<float> moe_block<float>(const DeviceTensor<float>&, const DeviceTensor<float>&, const DeviceTensor<float>&,
                                           const ExpertWeights<float>&, const MlpWeights<float>&, int64_t, double, bool);
template MoeOutput<bf16> moe_block<bf16>(const DeviceTensor<bf16>&, const DeviceTensor<float>&, const DeviceTensor<float>&,
                                         const ExpertWeights<bf16>&, const MlpWeights<bf16>&, int64_t, double, bool);
template MoeOutput<fp16> moe_block<fp16>(const DeviceTensor<fp16>&, const DeviceTensor<float>&, const DeviceTensor<float>&,
                                         const ExpertWeights<fp16>&, const MlpWeights<fp16>&, int64_t, double, bool);

}  // namespace hyoracle::cuda
