#include "cuda/moe.h"

#include <cstdlib>

#include "cuda/elementwise.h"
#include "cuda/expert_sort.cuh"

namespace hyoracle::cuda {

namespace {

constexpr int kSortThreads = 1024;

__global__ void __launch_bounds__(kSortThreads) sort_kernel(const int32_t* __restrict__ ids, int k, SortTargets o) {
  __shared__ SortSmem sm;
  sort_rows_block(sm, ids, k, o);
}

// The sort of many slots in three launches over chunks of kSortChunk slots (one block each):
// counts[c][g] = slots of chunk c routed to group g; then one block turns the column sums into the
// layout and counts[c][g] into chunk c's first row in group g (row_offset[g] + the rows of earlier
// chunks); then each chunk scatters its slots from there. Same layout as sort_rows_block; rows of
// a group come chunk by chunk (any order within a chunk).
constexpr int kSortChunk = 4096;
__global__ void __launch_bounds__(kSortThreads) sort_count_kernel(const int32_t* __restrict__ ids, SortTargets o,
                                                                  int32_t* __restrict__ counts) {
  __shared__ int hist[kSortMaxGroups];
  const int G = o.groups(), lo = blockIdx.x * kSortChunk, hi = min(o.n, lo + kSortChunk);
  for (int g = threadIdx.x; g < G; g += blockDim.x) hist[g] = 0;
  __syncthreads();
  for (int i = lo + threadIdx.x; i < hi; i += blockDim.x) atomicAdd(&hist[ids[i]], 1);
  __syncthreads();
  for (int g = threadIdx.x; g < G; g += blockDim.x) counts[int64_t(blockIdx.x) * G + g] = hist[g];
}
__global__ void __launch_bounds__(kSortThreads) sort_scan_kernel(SortTargets o, int chunks, int32_t* __restrict__ counts) {
  __shared__ SortSmem sm;
  const int G = o.groups();
  for (int g = threadIdx.x; g < G; g += blockDim.x) {
    int total = g < o.E ? 0 : o.extra;
    for (int c = 0; c < chunks; ++c) total += counts[int64_t(c) * G + g];
    sm.count[g] = total;
  }
  __syncthreads();
  write_layout(sm, G, o);
  __syncthreads();
  for (int g = threadIdx.x; g < G; g += blockDim.x) {
    int row = sm.cursor[g];
    for (int c = 0; c < chunks; ++c) {
      const int here = counts[int64_t(c) * G + g];
      counts[int64_t(c) * G + g] = row;
      row += here;
    }
  }
}
__global__ void __launch_bounds__(kSortThreads) sort_scatter_kernel(const int32_t* __restrict__ ids, int k, SortTargets o,
                                                                    const int32_t* __restrict__ first) {
  __shared__ SortSmem sm;
  const int G = o.groups(), lo = blockIdx.x * kSortChunk, hi = min(o.n, lo + kSortChunk);
  for (int g = threadIdx.x; g < G; g += blockDim.x) sm.cursor[g] = first[int64_t(blockIdx.x) * G + g];
  __syncthreads();
  scatter_rows(sm, ids, lo, hi, k, o);
}

// Block (t, c): routed[t, h] = T(Σ_j w[t, j]·Y[row(t, j), h]), slots in ascending expert id; with a
// shared group (Y rows n + t): shared[t, h] = Y[n + t, h], out[t, h] = T(routed + shared).
// kV consecutive h per thread (kV = 8: 16-byte loads and stores, H % 8 == 0), kCombineThreads·kV
// columns per block; the k slot loads of a thread are independent (all in flight at once).
// A = acc_t<T>: fp32, or double on the fp64 path (then no rounding: the reference's exact mode).
constexpr int kCombineThreads = 256;
template <class T, int kV, class A = acc_t<T>>
__global__ void __launch_bounds__(kCombineThreads) combine_kernel(const T* __restrict__ y, const int32_t* __restrict__ ids,
                                                                  const A* __restrict__ w,
                                                                  const int32_t* __restrict__ row_of, int k, int64_t H,
                                                                  int64_t n, bool has_shared, T* routed, T* shared, T* out) {
  const int64_t t = blockIdx.x;
  __shared__ int rows[64];
  __shared__ A wt[64];
  if (threadIdx.x == 0) {
    int order[64];
    for (int j = 0; j < k; ++j) order[j] = j;
    for (int a = 1; a < k; ++a)  // insertion sort of the k slots by expert id
      for (int b = a; b > 0 && ids[t * k + order[b]] < ids[t * k + order[b - 1]]; --b) {
        const int tmp = order[b];
        order[b] = order[b - 1];
        order[b - 1] = tmp;
      }
    for (int j = 0; j < k; ++j) rows[j] = row_of[t * k + order[j]], wt[j] = w[t * k + order[j]];
  }
  __syncthreads();
  for (int64_t h0 = (int64_t(blockIdx.y) * kCombineThreads + threadIdx.x) * kV; h0 < H;
       h0 += int64_t(gridDim.y) * kCombineThreads * kV) {
    A acc[kV];
#pragma unroll
    for (int e = 0; e < kV; ++e) acc[e] = A(0);
    for (int j = 0; j < k; ++j) {
      const T* yr = y + int64_t(rows[j]) * H + h0;
      if constexpr (kV == 8) {
        const uint4 v = *reinterpret_cast<const uint4*>(yr);
        const T* vt = reinterpret_cast<const T*>(&v);
#pragma unroll
        for (int e = 0; e < kV; ++e) acc[e] = fmaf(wt[j], to_f32(vt[e]), acc[e]);
      } else if constexpr (std::is_same_v<T, double>) {
        acc[0] = fma(wt[j], yr[0], acc[0]);
      } else {
        acc[0] = fmaf(wt[j], to_f32(yr[0]), acc[0]);
      }
    }
    __align__(16) T r[kV], sh[kV], o[kV];
#pragma unroll
    for (int e = 0; e < kV; ++e) r[e] = narrow<T>(acc[e]);
    if (has_shared) {
      if constexpr (kV == 8) *reinterpret_cast<uint4*>(sh) = *reinterpret_cast<const uint4*>(y + (n + t) * H + h0);
      else sh[0] = y[(n + t) * H + h0];
#pragma unroll
      for (int e = 0; e < kV; ++e) o[e] = narrow<T>(widen(r[e]) + widen(sh[e]));
    }
    if constexpr (kV == 8) {
      *reinterpret_cast<uint4*>(routed + t * H + h0) = *reinterpret_cast<const uint4*>(r);
      if (has_shared) {
        *reinterpret_cast<uint4*>(shared + t * H + h0) = *reinterpret_cast<const uint4*>(sh);
        *reinterpret_cast<uint4*>(out + t * H + h0) = *reinterpret_cast<const uint4*>(o);
      }
    } else {
      routed[t * H + h0] = r[0];
      if (has_shared) shared[t * H + h0] = sh[0], out[t * H + h0] = o[0];
    }
  }
}

// The routed experts and, when `shared` is given, the shared expert as one more group; writes
// routed, and (with shared) shared_out and out. `sorted`: the sort of r already made (decode's
// route_and_sort), else made here.
template <class T>
void experts_forward(const DeviceTensor<T>& u, const RouterOutputOf<acc_t<T>>& r, const ExpertSort* sorted, const ExpertWeights<T>& ex,
                     const MlpWeights<T>* shared, DeviceTensor<T>& routed, DeviceTensor<T>* shared_out,
                     DeviceTensor<T>* out) {
  const int64_t T_ = u.rows(), H = u.cols(), k = r.k, E = ex.count(), I2 = ex.gate_up.dim(1), I = I2 / 2;
  if (k > 64) fail("cuda routed_experts: num_experts_per_tok > 64 is not supported");
  if (routed.numel() != T_ * H || ex.gate_up.dim(2) != H || ex.down.dim(1) != H || ex.down.dim(2) != I)
    fail("cuda routed_experts: u " + shape_str(u.shape) + ", gate_up " + shape_str(ex.gate_up.shape) + ", down " +
         shape_str(ex.down.shape) + " do not match");
  if (!T_) return;
  const int64_t n = T_ * k, extra = shared ? T_ : 0;
  const ExpertSort s = sorted ? *sorted : sort_by_expert(r, E, extra);
  DeviceTensor<T> act({n + extra, I}), y({n + extra, H});
  // Distinct experts per token (top-k): no routed group holds more than T rows, the shared one T.
  using W = weight_t<T>;
  grouped_gemm(u.data(), s.token.data(), GroupWeights<W>{ex.gate_up.data(), E, shared ? shared->gate_up.data() : nullptr, I2, H},
               s.layout, T_, GroupEpilogue::swiglu, act.data());
  grouped_gemm(act.data(), nullptr, GroupWeights<W>{ex.down.data(), E, shared ? shared->down.data() : nullptr, H, I},
               s.layout, T_, GroupEpilogue::store, y.data());
  T* sh = shared ? shared_out->data() : nullptr;
  T* o = shared ? out->data() : nullptr;
  // 16-byte path: H % 8 == 0 keeps every row start 16-byte aligned (cudaMallocAsync bases are).
  const bool vec = sizeof(T) == 2 && H % 8 == 0;
  const int64_t per_block = int64_t(kCombineThreads) * (vec ? 8 : 1);
  const dim3 grid{unsigned(T_), unsigned(std::min<int64_t>((H + per_block - 1) / per_block, 65535))};
  if constexpr (sizeof(T) == 2) {
    if (vec) {
      combine_kernel<T, 8><<<grid, kCombineThreads, 0, gpu().stream>>>(y.data(), r.ids.data(), r.weights.data(),
                                                                        s.row_of.data(), int(k), H, n, shared != nullptr,
                                                                        routed.data(), sh, o);
      check_launch("routed_experts combine");
      return;
    }
  }
  combine_kernel<T, 1><<<grid, kCombineThreads, 0, gpu().stream>>>(y.data(), r.ids.data(), r.weights.data(),
                                                                    s.row_of.data(), int(k), H, n, shared != nullptr,
                                                                    routed.data(), sh, o);
  check_launch("routed_experts combine");
}

}  // namespace

namespace {
// The buffers of a sort of n slots over E experts (+ extra shared rows), and where a kernel writes it.
ExpertSort allocate_sort(int64_t n, int64_t E, int64_t extra, SortTargets* o) {
  const int64_t G = E + (extra > 0 ? 1 : 0);
  if (G > kSortMaxGroups)
    fail("cuda sort_by_expert: at most " + std::to_string(kSortMaxGroups) + " groups, got " + std::to_string(G));
  ExpertSort s;
  s.layout.groups = G;
  s.layout.max_rows = n + extra;
  s.layout.row_offset = DeviceTensor<int32_t>({G + 1});
  s.layout.tile_offset = DeviceTensor<int32_t>({G + 1});
  const int64_t max_tiles = max_row_tiles(s.layout);
  s.layout.tile_group = DeviceTensor<int32_t>({max_tiles});
  s.token = DeviceTensor<int32_t>({n + extra});
  s.row_of = DeviceTensor<int32_t>({n});
  *o = SortTargets{s.layout.row_offset.data(), s.layout.tile_offset.data(), s.layout.tile_group.data(), s.token.data(),
                   s.row_of.data(), int(n), int(E), int(extra), int(max_tiles)};
  return s;
}
}  // namespace

template <class A>
ExpertSort sort_by_expert(const RouterOutputOf<A>& r, int64_t E, int64_t extra) {
  SortTargets o;
  ExpertSort s = allocate_sort(r.ids.numel(), E, extra, &o);
  const int k = int(std::max<int64_t>(r.k, 1));
  const int64_t chunks = (o.n + kSortChunk - 1) / kSortChunk;
  if (chunks <= 2) {  // one block is as quick, and one launch (decode, small prefill)
    sort_kernel<<<1, kSortThreads, 0, gpu().stream>>>(r.ids.data(), k, o);
    check_launch("sort_by_expert");
    return s;
  }
  const int64_t G = s.layout.groups;
  DeviceTensor<int32_t> counts({chunks, G});
  sort_count_kernel<<<unsigned(chunks), kSortThreads, 0, gpu().stream>>>(r.ids.data(), o, counts.data());
  check_launch("sort_by_expert (count)");
  sort_scan_kernel<<<1, kSortThreads, 0, gpu().stream>>>(o, int(chunks), counts.data());
  check_launch("sort_by_expert (scan)");
  sort_scatter_kernel<<<unsigned(chunks), kSortThreads, 0, gpu().stream>>>(r.ids.data(), k, o, counts.data());
  check_launch("sort_by_expert (scatter)");
  return s;
}

template <class T>
void routed_experts(const DeviceTensor<T>& u, const RouterOutputOf<acc_t<T>>& r, const ExpertWeights<T>& experts,
                    DeviceTensor<T>& out) {
  experts_forward<T>(u, r, nullptr, experts, nullptr, out, nullptr, nullptr);
}

template <class T>
MoeOutput<T> moe_block(const DeviceTensor<T>& u, const DeviceTensor<float>& w_router, const DeviceTensor<float>& bias,
                       const ExpertWeights<T>& experts, const MlpWeights<T>& shared, int64_t k, double scaling,
                       bool renormalize, RouterKind kind) {
  MoeOutput<T> m;
  m.routed = DeviceTensor<T>(u.shape);
  m.shared = DeviceTensor<T>(u.shape);
  m.out = DeviceTensor<T>(u.shape);
  const int64_t T_ = u.rows(), E = experts.count(), I = experts.gate_up.dim(1) / 2;
  const bool fold = !shared.gate_up.empty() && shared.gate_up.dim(0) == 2 * I && shared.down.dim(1) == I;
  // Decode: router and sort in one launch (HYORACLE_MOE_UNFUSED_ROUTE=1 takes the separate
  // launches, for tests and benchmarks).
  // The fp64 path has no fused decode router (its grouped products synchronise anyway).
  if constexpr (!std::is_same_v<T, double>) {
    const char* unfused = std::getenv("HYORACLE_MOE_UNFUSED_ROUTE");
    if (fold && T_ >= 1 && T_ <= kRouteSortMaxT && E + 1 <= kSortMaxGroups && !(unfused && *unfused == '1')) {
      SortTargets o;
      const ExpertSort s = allocate_sort(T_ * k, E, T_, &o);
      m.router = route_and_sort(u, w_router, bias, k, scaling, renormalize, o, kind);
      experts_forward(u, m.router, &s, experts, &shared, m.routed, &m.shared, &m.out);
      return m;
    }
  }
  m.router = route(u, w_router, bias, k, scaling, renormalize, kind);
  if (fold) {  // the shared expert as one more group of the grouped GEMMs; combine adds it
    experts_forward<T>(u, m.router, nullptr, experts, &shared, m.routed, &m.shared, &m.out);
    return m;
  }
  routed_experts(u, m.router, experts, m.routed);
  if (!shared.gate_up.empty()) swiglu_mlp(u, shared, m.shared);
  else check(cudaMemsetAsync(m.shared.data(), 0, size_t(u.numel()) * sizeof(T), gpu().stream), "moe_block: memset");
  add(m.routed, m.shared, m.out);
  return m;
}

template ExpertSort sort_by_expert<float>(const RouterOutputOf<float>&, int64_t, int64_t);
template ExpertSort sort_by_expert<double>(const RouterOutputOf<double>&, int64_t, int64_t);
template void routed_experts<double>(const DeviceTensor<double>&, const RouterOutputOf<double>&,
                                     const ExpertWeights<double>&, DeviceTensor<double>&);
template MoeOutput<double> moe_block<double>(const DeviceTensor<double>&, const DeviceTensor<float>&,
                                             const DeviceTensor<float>&, const ExpertWeights<double>&,
                                             const MlpWeights<double>&, int64_t, double, bool, RouterKind);
template void routed_experts<float>(const DeviceTensor<float>&, const RouterOutput&, const ExpertWeights<float>&,
                                    DeviceTensor<float>&);
template void routed_experts<bf16>(const DeviceTensor<bf16>&, const RouterOutput&, const ExpertWeights<bf16>&,
                                   DeviceTensor<bf16>&);
template void routed_experts<fp16>(const DeviceTensor<fp16>&, const RouterOutput&, const ExpertWeights<fp16>&,
                                   DeviceTensor<fp16>&);
template MoeOutput<float> moe_block<float>(const DeviceTensor<float>&, const DeviceTensor<float>&, const DeviceTensor<float>&,
                                           const ExpertWeights<float>&, const MlpWeights<float>&, int64_t, double, bool, RouterKind);
template MoeOutput<bf16> moe_block<bf16>(const DeviceTensor<bf16>&, const DeviceTensor<float>&, const DeviceTensor<float>&,
                                         const ExpertWeights<bf16>&, const MlpWeights<bf16>&, int64_t, double, bool, RouterKind);
template MoeOutput<fp16> moe_block<fp16>(const DeviceTensor<fp16>&, const DeviceTensor<float>&, const DeviceTensor<float>&,
                                         const ExpertWeights<fp16>&, const MlpWeights<fp16>&, int64_t, double, bool, RouterKind);

}  // namespace hyoracle::cuda
