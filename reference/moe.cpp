#include "reference/moe.h"

#include <algorithm>
#include <cstring>

#include <sys/mman.h>
#include <unistd.h>

#include "util/parallel.h"

namespace hyoracle {

namespace {
// Drops this process's resident copy of mmapped file pages [p, p+n) (the page cache keeps
// them), so expanding the experts one after another does not accumulate 7 GB of mapped bf16
// in the resident set of a full-size Hy3 layer.
void release_pages(const uint8_t* p, uint64_t n) {
  const uintptr_t page = uintptr_t(::sysconf(_SC_PAGESIZE));
  const uintptr_t begin = uintptr_t(p) & ~(page - 1), end = (uintptr_t(p) + n + page - 1) & ~(page - 1);
  ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

// Decodes a stored weight into `out`, reusing its buffer (no allocation once warm).
template <class S>
void decode_into(const WeightRef& r, Tensor<S>& out) {
  out.shape = r.shape();
  int64_t n = 1;
  for (int64_t s : out.shape) n *= s;
  out.data.resize(static_cast<size_t>(n));
  if (r.info->dtype != DType::BF16) {
    out = Checkpoint::decode<S>(r);
    return;
  }
  const uint8_t* p = r.file->data(*r.info) + 2 * r.row0 * (r.info->numel() / r.info->shape[0]);
  for (int64_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, p + 2 * i, 2);
    out.data[i] = S(bf16_to_float(h));
  }
  release_pages(p, uint64_t(2 * n));
}
}  // namespace

template <class S>
const MlpWeights<S>& ExpertStore<S>::get(int64_t e, MlpWeights<S>& scratch) const {
  if (!resident.empty()) return resident.at(size_t(e));
  const auto& r = refs.at(size_t(e));
  decode_into(r[0], scratch.gate);
  decode_into(r[1], scratch.up);
  decode_into(r[2], scratch.down);
  scratch.gate_in = r[0].input_scale, scratch.up_in = r[1].input_scale, scratch.down_in = r[2].input_scale;
  return scratch;
}

template <class S>
Tensor<S> routed_experts(const Tensor<S>& u, const RouterOutput<S>& r, const ExpertStore<S>& experts, int threads,
                         bool fp8_activations) {
  const int64_t T = u.rows(), H = u.cols(), k = r.k, E = experts.count();
  // Group: for each expert, the (token, weight) pairs routed to it, in token order.
  std::vector<std::vector<std::pair<int64_t, S>>> groups(static_cast<size_t>(E));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = 0; j < k; ++j) {
      const int64_t e = r.ids[t * k + j];
      if (e < 0 || e >= E) fail("routed_experts: expert id " + std::to_string(e) + " out of range");
      groups[e].push_back({t, r.weights.data[t * k + j]});
    }
  std::vector<int64_t> active;
  for (int64_t e = 0; e < E; ++e)
    if (!groups[e].empty()) active.push_back(e);

  // Experts run in waves of up to 8 per thread, taken dynamically by the workers (one expert
  // per task, expanded into that worker's reused scratch, its GEMMs single-threaded); after
  // each wave the outputs are added in ascending expert index. Every expert's arithmetic and
  // the order of the additions are the same for any thread count: bit-identical results by
  // construction. Memory: one expanded expert per worker plus one wave's outputs.
  const int64_t workers = std::max<int64_t>(1, threads);
  const int64_t wave = 8 * workers;
  std::vector<MlpWeights<S>> scratch(static_cast<size_t>(workers));
  std::vector<Tensor<S>> y(static_cast<size_t>(wave));
  Tensor<S> out({T, H});
  for (size_t w0 = 0; w0 < active.size(); w0 += size_t(wave)) {
    const int64_t n = std::min<int64_t>(wave, int64_t(active.size() - w0));
    parallel_for_workers(n, threads, [&](int64_t s, int worker) {
      const auto& g = groups[active[w0 + s]];
      Tensor<S> x({int64_t(g.size()), H});
      for (size_t i = 0; i < g.size(); ++i) std::copy_n(u.row(g[i].first), H, x.row(int64_t(i)));
      y[s] = swiglu_mlp(x, experts.get(active[w0 + s], scratch[worker]), 1, fp8_activations);
    });
    for (int64_t s = 0; s < n; ++s) {
      const auto& g = groups[active[w0 + s]];
      for (size_t i = 0; i < g.size(); ++i) {
        S* o = out.row(g[i].first);
        const S* yi = y[s].row(int64_t(i));
        for (int64_t h = 0; h < H; ++h) o[h] += g[i].second * yi[h];
      }
    }
  }
  return out;
}

template <class S>
MoeOutput<S> moe_block(const Tensor<S>& u, const Tensor<S>& w_router, const Tensor<S>& expert_bias,
                       const ExpertStore<S>& experts, const MlpWeights<S>& shared, int64_t k, double scaling,
                       bool renormalize, const Numerics& num, RouterKind kind) {
  MoeOutput<S> m;
  m.router = route(u, w_router, expert_bias, k, scaling, renormalize, num, kind);
  m.routed = routed_experts(u, m.router, experts, num.threads, num.fp8_activations);
  if (shared.gate.numel() > 0) m.shared = swiglu_mlp(u, shared, num.threads, num.fp8_activations);
  else m.shared = Tensor<S>(u.shape);
  m.out = Tensor<S>(m.routed.shape);
  for (int64_t i = 0; i < m.out.numel(); ++i) m.out.data[i] = m.routed.data[i] + m.shared.data[i];
  return m;
}

template struct ExpertStore<double>;
template struct ExpertStore<float>;
template Tensor<double> routed_experts<double>(const Tensor<double>&, const RouterOutput<double>&,
                                               const ExpertStore<double>&, int, bool);
template Tensor<float> routed_experts<float>(const Tensor<float>&, const RouterOutput<float>&, const ExpertStore<float>&,
                                             int, bool);
template MoeOutput<double> moe_block<double>(const Tensor<double>&, const Tensor<double>&, const Tensor<double>&,
                                             const ExpertStore<double>&, const MlpWeights<double>&, int64_t, double,
                                             bool, const Numerics&, RouterKind);
template MoeOutput<float> moe_block<float>(const Tensor<float>&, const Tensor<float>&, const Tensor<float>&,
                                           const ExpertStore<float>&, const MlpWeights<float>&, int64_t, double, bool,
                                           const Numerics&, RouterKind);

}  // namespace hyoracle
