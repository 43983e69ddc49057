// The few kernels of the cuda ReplayDevice (replay_cuda.h) that cuda/ has no function for.
#include <cmath>

#include "compare/replay_cuda.h"
#include "cuda/device.h"

namespace hyoracle::compare::replay_kernels {

namespace {

constexpr int kThreads = 256;

// Block-wide sum of one double per thread (kThreads threads); the result in every thread.
__device__ double block_sum(double x, double* sh) {
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();
  if (lane == 0) sh[warp] = x;
  __syncthreads();
  double t = 0;
  for (int w = 0; w < kThreads / 32; ++w) t += sh[w];
  return t;
}
__device__ double block_max(double x, double* sh) {
  for (int o = 16; o > 0; o >>= 1) x = fmax(x, __shfl_xor_sync(0xffffffffu, x, o));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();
  if (lane == 0) sh[warp] = x;
  __syncthreads();
  double t = -INFINITY;
  for (int w = 0; w < kThreads / 32; ++w) t = fmax(t, sh[w]);
  return t;
}

__global__ void abs_kernel(const double* __restrict__ x, int64_t n, double* __restrict__ y) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = fabs(x[i]);
}

__global__ void sum_squares_kernel(const double* __restrict__ x, int64_t n, double* acc) {
  __shared__ double sh[kThreads / 32];
  double s = 0;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    s += x[i] * x[i];
  s = block_sum(s, sh);
  if (threadIdx.x == 0) atomicAdd(acc, s);
}

__global__ void softmax_gain_kernel(double* __restrict__ s, double* __restrict__ a, int64_t Tk, double scale,
                                    const int64_t* __restrict__ qpos, const int64_t* __restrict__ kpos) {
  __shared__ double sh[kThreads / 32];
  const int64_t i = blockIdx.x;
  double* si = s + i * Tk;
  double* ai = a + i * Tk;
  const int64_t p = qpos[i];
  double mx = -INFINITY;
  for (int64_t j = threadIdx.x; j < Tk; j += kThreads) {
    const double v = kpos[j] > p ? -INFINITY : si[j] * scale;
    si[j] = v;
    mx = fmax(mx, v);
  }
  mx = block_max(mx, sh);
  double z = 0;
  for (int64_t j = threadIdx.x; j < Tk; j += kThreads) z += isinf(si[j]) ? 0.0 : exp(si[j] - mx);
  z = block_sum(z, sh);
  for (int64_t j = threadIdx.x; j < Tk; j += kThreads) {
    const double v = si[j];
    const double pr = isinf(v) ? 0.0 : exp(v - mx) / z;
    si[j] = pr;
    ai[j] = pr == 0 ? 0.0 : pr * pr * v * v;
  }
}

__global__ void gain_terms_kernel(const double* __restrict__ p, const double* __restrict__ a, const double* __restrict__ vv,
                                  const double* __restrict__ ctx, const double* __restrict__ av, int64_t Tk, int64_t d,
                                  double* acc) {
  __shared__ double sh[kThreads / 32];
  const int64_t i = blockIdx.x;
  const double* pi = p + i * Tk;
  const double* ai = a + i * Tk;
  double avv = 0, asum = 0, ppv = 0;
  for (int64_t j = threadIdx.x; j < Tk; j += kThreads) {
    avv += ai[j] * vv[j];
    asum += ai[j];
    ppv += pi[j] * pi[j] * vv[j];
  }
  double cc = 0, cav = 0;
  for (int64_t c = threadIdx.x; c < d; c += kThreads) {
    cc += ctx[i * d + c] * ctx[i * d + c];
    cav += ctx[i * d + c] * av[i * d + c];
  }
  avv = block_sum(avv, sh);
  asum = block_sum(asum, sh);
  ppv = block_sum(ppv, sh);
  cc = block_sum(cc, sh);
  cav = block_sum(cav, sh);
  if (threadIdx.x == 0) {
    atomicAdd(acc + 0, avv - 2 * cav + cc * asum);
    atomicAdd(acc + 1, ppv);
    atomicAdd(acc + 2, cc);
  }
}

unsigned grid_for(int64_t n) { return unsigned(std::min<int64_t>((n + kThreads - 1) / kThreads, 8 * 1024)); }

}  // namespace

void abs_into(const double* x, int64_t n, double* y) {
  if (n <= 0) return;
  abs_kernel<<<grid_for(n), kThreads, 0, cuda::gpu().stream>>>(x, n, y);
  cuda::check_launch("replay abs");
}

double sum_squares(const double* x, int64_t n) {
  cuda::DeviceTensor<double> acc({1});
  cuda::check(cudaMemsetAsync(acc.data(), 0, sizeof(double), cuda::gpu().stream), "replay sum_squares");
  if (n > 0) {
    sum_squares_kernel<<<std::min<unsigned>(grid_for(n), 1024), kThreads, 0, cuda::gpu().stream>>>(x, n, acc.data());
    cuda::check_launch("replay sum_squares");
  }
  return cuda::download(acc).data[0];
}

void softmax_gain_rows(double* s, double* a, int64_t rows, int64_t Tk, double scale, const int64_t* qpos,
                       const int64_t* kpos) {
  if (rows <= 0 || Tk <= 0) return;
  softmax_gain_kernel<<<unsigned(rows), kThreads, 0, cuda::gpu().stream>>>(s, a, Tk, scale, qpos, kpos);
  cuda::check_launch("replay softmax_gain_rows");
}

void gain_terms(const double* p, const double* a, const double* vv, const double* ctx, const double* av, int64_t rows,
                int64_t Tk, int64_t d, double* acc) {
  if (rows <= 0) return;
  gain_terms_kernel<<<unsigned(rows), kThreads, 0, cuda::gpu().stream>>>(p, a, vv, ctx, av, Tk, d, acc);
  cuda::check_launch("replay gain_terms");
}

}  // namespace hyoracle::compare::replay_kernels
