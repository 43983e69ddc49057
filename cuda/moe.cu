#include "moe.h"

#include "elementwise.h"

namespace hyoracle::cuda {

namespace {

__global__ void count_kernel(const int32_t* ids, int64_t n, int32_t* counts) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    atomicAdd(&counts[ids[i]], 1);
}

// One thread: exclusive prefix sums of rows and of row tiles; resets the scatter cursors.
__global__ void scan_kernel(const int32_t* counts, int E, int32_t* row_offset, int32_t* tile_offset, int32_t* cursor) {
  if (threadIdx.x != 0 || blockIdx.x != 0) return;
  int32_t rows = 0, tiles = 0;
  for (int e = 0; e < E; ++e) {
    row_offset[e] = rows;
    tile_offset[e] = tiles;
    cursor[e] = 0;
    rows += counts[e];
    tiles += (counts[e] + kGroupTileM - 1) / kGroupTileM;
  }
  row_offset[E] = rows;
  tile_offset[E] = tiles;
}

__global__ void scatter_kernel(const int32_t* ids, int64_t n, int k, const int32_t* row_offset, int32_t* cursor,
                               int32_t* token, int32_t* row_of) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int e = ids[i];
    const int r = row_offset[e] + atomicAdd(&cursor[e], 1);
    token[r] = int32_t(i / k);
    row_of[i] = r;
  }
}

// One block per token: out[t, h] = T(Σ_j w[t, j]·Y[row(t, j), h]), slots in ascending expert id.
template <class T>
__global__ void combine_kernel(const T* y, const int32_t* ids, const float* w, const int32_t* row_of, int k, int64_t H,
                               T* out) {
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
    out[t * H + h] = from_f32<T>(acc);
  }
}

unsigned blocks_for(int64_t n) { return unsigned(std::max<int64_t>(1, std::min<int64_t>((n + 255) / 256, 4096))); }

}  // namespace

ExpertSort sort_by_expert(const RouterOutput& r, int64_t E) {
  const int64_t n = r.ids.numel();
  ExpertSort s;
  s.layout.groups = E;
  s.layout.max_rows = n;
  s.layout.row_offset = DeviceTensor<int32_t>({E + 1});
  s.layout.tile_offset = DeviceTensor<int32_t>({E + 1});
  s.token = DeviceTensor<int32_t>({n});
  s.row_of = DeviceTensor<int32_t>({n});
  DeviceTensor<int32_t> counts({E}), cursor({E});
  check(cudaMemsetAsync(counts.data(), 0, size_t(E) * 4, gpu().stream), "sort_by_expert: memset");
  if (n) count_kernel<<<blocks_for(n), 256, 0, gpu().stream>>>(r.ids.data(), n, counts.data());
  scan_kernel<<<1, 32, 0, gpu().stream>>>(counts.data(), int(E), s.layout.row_offset.data(), s.layout.tile_offset.data(),
                                          cursor.data());
  if (n)
    scatter_kernel<<<blocks_for(n), 256, 0, gpu().stream>>>(r.ids.data(), n, int(r.k), s.layout.row_offset.data(),
                                                            cursor.data(), s.token.data(), s.row_of.data());
  check_launch("sort_by_expert");
  return s;
}

template <class T>
void routed_experts(const DeviceTensor<T>& u, const RouterOutput& r, const ExpertWeights<T>& experts, DeviceTensor<T>& out) {
  const int64_t T_ = u.rows(), H = u.cols(), k = r.k, E = experts.count(), I2 = experts.gate_up.dim(1);
  if (k > 64) fail("cuda routed_experts: num_experts_per_tok > 64 is not supported");
  if (out.numel() != T_ * H || experts.down.dim(1) != H) fail("cuda routed_experts: shapes do not match");
  if (!T_) return;
  const ExpertSort s = sort_by_expert(r, E);
  DeviceTensor<T> gu({T_ * k, I2}), act({T_ * k, I2 / 2}), y({T_ * k, H});
  grouped_linear(u, s.token.data(), experts.gate_up, s.layout, gu);
  swiglu(gu, act);
  grouped_linear(act, nullptr, experts.down, s.layout, y);
  combine_kernel<T><<<unsigned(T_), 256, 0, gpu().stream>>>(y.data(), r.ids.data(), r.weights.data(), s.row_of.data(),
                                                             int(k), H, out.data());
  check_launch("routed_experts combine");
}

template <class T>
MoeOutput<T> moe_block(const DeviceTensor<T>& u, const DeviceTensor<float>& w_router, const DeviceTensor<float>& bias,
                       const ExpertWeights<T>& experts, const MlpWeights<T>& shared, int64_t k, double scaling,
                       bool renormalize) {
  MoeOutput<T> m;
  m.router = route(u, w_router, bias, k, scaling, renormalize);
  m.routed = DeviceTensor<T>(u.shape);
  routed_experts(u, m.router, experts, m.routed);
  m.shared = DeviceTensor<T>(u.shape);
  if (!shared.gate_up.empty()) swiglu_mlp(u, shared, m.shared);
  else check(cudaMemsetAsync(m.shared.data(), 0, size_t(u.numel()) * sizeof(T), gpu().stream), "moe_block: memset");
  m.out = DeviceTensor<T>(u.shape);
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
