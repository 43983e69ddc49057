// The cuda ReplayDevice (replay_device.h): the fp64 CUDA layers (cuda/*.h, T = double) and cuBLAS
// DGEMM on the host's double values.
//
// Weights. A host weight tensor (the layer's projections, norms' neighbours, the head) is uploaded
// as double on first use and kept, keyed by its host address, until release_weights(). Routed
// experts stored as BF16 or F32 are uploaded in that dtype straight from the checkpoint's mapped
// bytes and kept across layers, keyed by those bytes' address (stable while the checkpoint is
// open), while they fit in a quarter of the GPU's memory (the whole set is dropped otherwise);
// each product expands the expert exactly to double into scratch first. Experts in other dtypes
// (FP8) are decoded by the reference on the host and uploaded as double.
//
// Host fallbacks (the CPU device): the W8A8 mode's quantized inputs inside an MLP (the SwiGLU
// output is quantized too), attention whose keys are not at consecutive positions, empty inputs.
#include <cmath>
#include <unordered_map>

#include "compare/replay_cuda.h"
#include "cuda/attention.h"
#include "cuda/device.h"
#include "cuda/matmul.h"
#include "cuda/mlp.h"
#include "util/error.h"

namespace hyoracle::compare {

namespace {

using cuda::DeviceTensor;

DeviceTensor<double> to_device(const Tensor<double>& t, std::vector<int64_t> shape) {
  DeviceTensor<double> d(std::move(shape));
  if (t.numel())
    cuda::check(cudaMemcpyAsync(d.data(), t.data.data(), size_t(t.numel()) * 8, cudaMemcpyHostToDevice, cuda::gpu().stream),
                "replay upload");
  return d;
}
Tensor<double> to_host(const DeviceTensor<double>& d, std::vector<int64_t> shape) {
  Tensor<double> t(std::move(shape));
  if (t.numel())
    cuda::check(cudaMemcpyAsync(t.data.data(), d.data(), size_t(t.numel()) * 8, cudaMemcpyDeviceToHost, cuda::gpu().stream),
                "replay download");
  cuda::synchronize();
  return t;
}
// Row-major y[M, N] (ldy) = x[M, K] (ldx) · b[K, N] (ldb), double.
void dgemm_nn(const double* x, int64_t ldx, const double* b, int64_t ldb, double* y, int64_t ldy, int64_t M, int64_t N,
              int64_t K) {
  if (M == 0 || N == 0) return;
  const double alpha = 1.0, beta = 0.0;
  cuda::check(cublasDgemm(cuda::gpu().blas, CUBLAS_OP_N, CUBLAS_OP_N, int(N), int(M), int(K), &alpha, b, int(ldb), x,
                          int(ldx), &beta, y, int(ldy)),
              "replay cublasDgemm");
}

// An expert's matrix as the GPU holds it: stored bf16 / f32 bytes, or double.
struct DevWeight {
  DeviceTensor<cuda::bf16> b16;
  DeviceTensor<float> f32;
  DeviceTensor<double> f64;
  int64_t rows = 0, cols = 0;
  size_t bytes() const { return size_t(rows * cols) * (!b16.empty() ? 2 : !f32.empty() ? 4 : 8); }
  // The values in double: f64 itself, or expanded into `scratch`.
  const double* expand(DeviceTensor<double>& scratch) const {
    if (!f64.empty()) return f64.data();
    if (scratch.numel() < rows * cols) scratch = DeviceTensor<double>({rows * cols});
    if (!b16.empty()) cuda::expand_to_double(b16.data(), rows * cols, scratch.data());
    else cuda::expand_to_double(f32.data(), rows * cols, scratch.data());
    return scratch.data();
  }
};

class CudaDevice final : public ReplayDevice {
 public:
  explicit CudaDevice(int threads) : cpu_(make_cpu_replay_device(threads)) {
    name_ = "cuda (" + cuda::gpu().name + ")";
    size_t free = 0, total = 0;
    cuda::check(cudaMemGetInfo(&free, &total), "cudaMemGetInfo");
    expert_budget_ = total / 4;
  }
  std::string name() const override { return name_; }

  Tensor<double> linear(const Tensor<double>& x, const Tensor<double>& w) override {
    return product(x, resident(w).data(), w.rows(), w.cols());
  }
  Tensor<double> linear_once(const Tensor<double>& x, const Tensor<double>& w) override {
    const DeviceTensor<double> dw = to_device(w, {w.rows(), w.cols()});
    return product(x, dw.data(), w.rows(), w.cols());
  }
  double dot_conditioning(const Tensor<double>& a, const Tensor<double>& w) override {
    const int64_t N = w.rows(), K = w.cols(), M = a.numel() / K;
    const DeviceTensor<double>& dw = resident(w);
    DeviceTensor<double> da = to_device(a, {M, K}), y({M, N}), yabs({M, N}), aabs({M, K}), wabs({N, K});
    cuda::dgemm_nt(da.data(), K, dw.data(), K, y.data(), N, M, N, K);
    replay_kernels::abs_into(da.data(), M * K, aabs.data());
    replay_kernels::abs_into(dw.data(), N * K, wabs.data());
    cuda::dgemm_nt(aabs.data(), K, wabs.data(), K, yabs.data(), N, M, N, K);
    const double n_abs = replay_kernels::sum_squares(yabs.data(), M * N), n_y = replay_kernels::sum_squares(y.data(), M * N);
    if (n_y == 0) return n_abs == 0 ? 1.0 : 1e6;
    return std::max(1.0, std::sqrt(n_abs / n_y));
  }
  Tensor<double> mlp(const Tensor<double>& u, const MlpWeights<double>& w, bool fp8) override {
    if (quantizes(fp8, w.gate_in, w.up_in, w.down_in) || u.numel() == 0) return cpu_->mlp(u, w, fp8);
    const int64_t I = w.gate.rows(), H = w.gate.cols(), O = w.down.rows();
    return swiglu(u, resident(w.gate).data(), resident(w.up).data(), resident(w.down).data(), I, H, O);
  }
  Tensor<double> expert(const Tensor<double>& x, const ExpertStore<double>& experts, int64_t e, bool fp8) override {
    if (expert_quantizes(experts, e, fp8) || x.numel() == 0) return cpu_->expert(x, experts, e, fp8);
    const auto& m = expert_weights(experts, e);
    return swiglu(x, m[0].expand(s_gate_), m[1].expand(s_up_), m[2].expand(s_down_), m[0].rows, m[0].cols, m[2].rows);
  }
  Tensor<double> routed_experts(const Tensor<double>& u, const RouterOutput<double>& r, const ExpertStore<double>& experts,
                                bool fp8) override {
    const int64_t T = u.rows(), H = u.cols(), k = r.k, E = experts.count();
    bool q = false;
    for (int64_t e = 0; e < E && !q; ++e) q = expert_quantizes(experts, e, fp8);
    if (q) return cpu_->routed_experts(u, r, experts, fp8);
    // The reference's grouping (moe.cpp): per expert its (token, weight) pairs in token order; the
    // expert outputs added into the output in ascending expert index.
    std::vector<std::vector<std::pair<int64_t, double>>> groups(static_cast<size_t>(E));
    for (int64_t t = 0; t < T; ++t)
      for (int64_t j = 0; j < k; ++j) {
        const int64_t e = r.ids[size_t(t * k + j)];
        if (e < 0 || e >= E) fail("routed_experts: expert id " + std::to_string(e) + " out of range");
        groups[size_t(e)].push_back({t, r.weights.data[size_t(t * k + j)]});
      }
    Tensor<double> out({T, H});
    for (int64_t e = 0; e < E; ++e) {
      const auto& g = groups[size_t(e)];
      if (g.empty()) continue;
      Tensor<double> x({int64_t(g.size()), H});
      for (size_t i = 0; i < g.size(); ++i) std::copy_n(u.row(g[i].first), H, x.row(int64_t(i)));
      const Tensor<double> y = expert(x, experts, e, fp8);
      for (size_t i = 0; i < g.size(); ++i) {
        double* o = out.row(g[i].first);
        const double* yi = y.row(int64_t(i));
        for (int64_t h = 0; h < H; ++h) o[h] += g[i].second * yi[h];
      }
    }
    return out;
  }
  Tensor<double> attention(const Tensor<double>& q, const Tensor<double>& k, const Tensor<double>& v,
                           const std::vector<int64_t>& pos, const std::vector<int64_t>& kpos) override {
    const int64_t T = q.dim(0), nq = q.dim(1), d = q.dim(2), Tk = k.dim(0);
    if (T == 0 || Tk == 0 || !consecutive(kpos)) return cpu_->attention(q, k, v, pos, kpos);
    // attention_fp64 sees key j iff j <= q_pos[i]: positions relative to the first key.
    std::vector<int64_t> rel(pos.size());
    for (size_t i = 0; i < pos.size(); ++i) rel[i] = pos[i] - kpos[0];
    const DeviceTensor<double> dq = to_device(q, q.shape), dk = to_device(k, k.shape), dv = to_device(v, v.shape);
    const DeviceTensor<int64_t> dpos = cuda::upload_ints(rel);
    DeviceTensor<double> ctx({T, nq * d});
    cuda::attention_fp64(dq, dk, dv, Tk, dpos, ctx);
    return to_host(ctx, {T, nq * d});
  }
  double attention_gain(const Tensor<double>& q, const Tensor<double>& k, const Tensor<double>& v,
                        const std::vector<int64_t>& pos, const std::vector<int64_t>& kpos) override {
    const int64_t T = q.dim(0), nq = q.dim(1), d = q.dim(2), Tk = k.dim(0), nkv = k.dim(1), g = nq / nkv;
    if (T == 0 || Tk == 0) return cpu_->attention_gain(q, k, v, pos, kpos);
    const DeviceTensor<double> dq = to_device(q, q.shape), dk = to_device(k, k.shape), dv = to_device(v, v.shape);
    const DeviceTensor<int64_t> dpos = cuda::upload_ints(pos), dkpos = cuda::upload_ints(kpos);
    Tensor<double> vv({nkv, Tk});  // ‖v[j, m, :]‖², head-major
    for (int64_t j = 0; j < Tk; ++j)
      for (int64_t m = 0; m < nkv; ++m) {
        double s = 0;
        for (int64_t c = 0; c < d; ++c) s += v.data[size_t((j * nkv + m) * d + c)] * v.data[size_t((j * nkv + m) * d + c)];
        vv.data[size_t(m * Tk + j)] = s;
      }
    const DeviceTensor<double> dvv = to_device(vv, vv.shape);
    // Query rows in chunks so that the score matrices stay under 2 GiB each.
    const int64_t rc = std::max<int64_t>(1, std::min<int64_t>(T, (int64_t(1) << 28) / Tk));
    DeviceTensor<double> s({rc, Tk}), a({rc, Tk}), ctx({rc, d}), av({rc, d}), acc({3});
    cuda::check(cudaMemsetAsync(acc.data(), 0, 3 * sizeof(double), cuda::gpu().stream), "replay gain");
    const double scale = 1.0 / std::sqrt(double(d));
    for (int64_t n = 0; n < nq; ++n) {
      const int64_t m = n / g;
      for (int64_t i0 = 0; i0 < T; i0 += rc) {
        const int64_t R = std::min(rc, T - i0);
        cuda::dgemm_nt(dq.data() + (i0 * nq + n) * d, nq * d, dk.data() + m * d, nkv * d, s.data(), Tk, R, Tk, d);
        replay_kernels::softmax_gain_rows(s.data(), a.data(), R, Tk, scale, dpos.data() + i0, dkpos.data());
        dgemm_nn(s.data(), Tk, dv.data() + m * d, nkv * d, ctx.data(), d, R, d, Tk);
        dgemm_nn(a.data(), Tk, dv.data() + m * d, nkv * d, av.data(), d, R, d, Tk);
        replay_kernels::gain_terms(s.data(), a.data(), dvv.data() + m * Tk, ctx.data(), av.data(), R, Tk, d, acc.data());
      }
    }
    const Tensor<double> t = to_host(acc, {3});
    if (t.data[2] == 0) return 2.0;
    return std::sqrt(1.0 + (2.0 * t.data[0] + t.data[1]) / t.data[2]);
  }
  void release_weights() override {
    cuda::synchronize();
    w_.clear();
    cpu_->release_weights();
  }

 private:
  static bool quantizes(bool fp8, double a, double b, double c) { return fp8 && (a > 0 || b > 0 || c > 0); }
  static bool expert_quantizes(const ExpertStore<double>& ex, int64_t e, bool fp8) {
    if (!fp8) return false;
    if (!ex.resident.empty()) {
      const auto& m = ex.resident[size_t(e)];
      return quantizes(true, m.gate_in, m.up_in, m.down_in);
    }
    const auto& r = ex.refs[size_t(e)];
    return quantizes(true, r[0].input_scale, r[1].input_scale, r[2].input_scale);
  }
  static bool consecutive(const std::vector<int64_t>& p) {
    for (size_t j = 1; j < p.size(); ++j)
      if (p[j] != p[0] + int64_t(j)) return false;
    return true;
  }
  const DeviceTensor<double>& resident(const Tensor<double>& w) {
    auto it = w_.find(w.data.data());
    if (it != w_.end() && it->second.numel() == w.numel()) return it->second;
    return w_[w.data.data()] = to_device(w, {w.rows(), w.cols()});
  }
  Tensor<double> product(const Tensor<double>& x, const double* w, int64_t N, int64_t K) {
    const int64_t M = K ? x.numel() / K : 0;
    if (M == 0) return Tensor<double>({M, N});
    const DeviceTensor<double> dx = to_device(x, {M, K});
    DeviceTensor<double> y({M, N});
    cuda::dgemm_nt(dx.data(), K, w, K, y.data(), N, M, N, K);
    return to_host(y, {M, N});
  }
  // reference/mlp.h's swiglu_mlp on device weights: gate, up [I, H], down [O, I].
  Tensor<double> swiglu(const Tensor<double>& u, const double* gate, const double* up, const double* down, int64_t I,
                        int64_t H, int64_t O) {
    const int64_t R = u.numel() / H;
    const DeviceTensor<double> du = to_device(u, {R, H});
    DeviceTensor<double> gu({R, 2 * I}), act({R, I}), y({R, O});
    cuda::dgemm_nt(du.data(), H, gate, H, gu.data(), 2 * I, R, I, H);
    cuda::dgemm_nt(du.data(), H, up, H, gu.data() + I, 2 * I, R, I, H);
    cuda::swiglu<double>(gu, act);
    cuda::dgemm_nt(act.data(), I, down, I, y.data(), O, R, O, I);
    return to_host(y, {R, O});
  }
  const std::array<DevWeight, 3>& expert_weights(const ExpertStore<double>& ex, int64_t e) {
    const void* key = ex.resident.empty() ? static_cast<const void*>(ex.refs[size_t(e)][0].file->data(*ex.refs[size_t(e)][0].info) +
                                                                      ex.refs[size_t(e)][0].row0)
                                          : static_cast<const void*>(ex.resident[size_t(e)].gate.data.data());
    if (auto it = experts_.find(key); it != experts_.end()) return it->second;
    std::array<DevWeight, 3> m;
    if (ex.resident.empty()) {
      MlpWeights<double> host;
      bool decoded = false;
      for (int i = 0; i < 3; ++i) {
        const WeightRef& r = ex.refs[size_t(e)][size_t(i)];
        const std::vector<int64_t> sh = r.shape();
        m[size_t(i)].rows = sh[0], m[size_t(i)].cols = sh[1];
        const int64_t n = sh[0] * sh[1];
        const int64_t row_len = r.info->numel() / r.info->shape[0];
        if (r.info->dtype == DType::BF16 || r.info->dtype == DType::F32) {
          const size_t es = r.info->dtype == DType::BF16 ? 2 : 4;
          const uint8_t* p = r.file->data(*r.info) + size_t(r.row0 * row_len) * es;
          void* dst;
          if (es == 2) m[size_t(i)].b16 = DeviceTensor<cuda::bf16>({n}), dst = m[size_t(i)].b16.data();
          else m[size_t(i)].f32 = DeviceTensor<float>({n}), dst = m[size_t(i)].f32.data();
          cuda::check(cudaMemcpyAsync(dst, p, size_t(n) * es, cudaMemcpyHostToDevice, cuda::gpu().stream), "replay experts");
        } else {
          if (!decoded) ex.get(e, host), decoded = true;
          const Tensor<double>& t = i == 0 ? host.gate : i == 1 ? host.up : host.down;
          m[size_t(i)].f64 = to_device(t, {n});
        }
      }
    } else {
      const MlpWeights<double>& h = ex.resident[size_t(e)];
      int i = 0;
      for (const Tensor<double>* t : {&h.gate, &h.up, &h.down}) {
        m[size_t(i)].rows = t->rows(), m[size_t(i)].cols = t->cols();
        m[size_t(i++)].f64 = to_device(*t, {t->numel()});
      }
    }
    size_t bytes = 0;
    for (const DevWeight& w : m) bytes += w.bytes();
    if (expert_bytes_ + bytes > expert_budget_) {
      cuda::synchronize();
      experts_.clear();
      expert_bytes_ = 0;
    }
    expert_bytes_ += bytes;
    return experts_[key] = std::move(m);
  }

  std::unique_ptr<ReplayDevice> cpu_;
  std::string name_;
  std::unordered_map<const double*, DeviceTensor<double>> w_;
  std::unordered_map<const void*, std::array<DevWeight, 3>> experts_;
  size_t expert_bytes_ = 0, expert_budget_ = 0;
  DeviceTensor<double> s_gate_, s_up_, s_down_;  // an expert's matrices expanded to double
};

}  // namespace

std::unique_ptr<ReplayDevice> make_cuda_replay_device(int threads) {
  std::string why;
  if (!cuda::device_available(&why)) fail("--device cuda: no usable CUDA device (" + why + ")");
  return std::make_unique<CudaDevice>(threads);
}

}  // namespace hyoracle::compare
