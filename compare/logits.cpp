#include "compare/logits.h"

#include <algorithm>
#include <cmath>

#include "reference/model.h"

namespace hyoracle::compare {

namespace {
// log-softmax of one row, in double; with `p`, also the probabilities p_i = e_i / Σe,
// e_i = exp(x_i − max x) (one exp per element for both).
std::vector<double> log_softmax(const double* x, int64_t n, std::vector<double>* p = nullptr) {
  double mx = -INFINITY;
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, x[i]);
  std::vector<double> l(static_cast<size_t>(n));
  double z = 0;
  for (int64_t i = 0; i < n; ++i) z += (l[size_t(i)] = std::exp(x[i] - mx));
  if (p) {
    p->resize(size_t(n));
    for (int64_t i = 0; i < n; ++i) (*p)[size_t(i)] = l[size_t(i)] / z;
  }
  const double lz = mx + std::log(z);
  for (int64_t i = 0; i < n; ++i) l[size_t(i)] = x[i] - lz;
  return l;
}

// KL(p || q) = Σ p_i (log p_i − log q_i) from p, log p and log q.
double kl_from_log_softmax(const std::vector<double>& p, const std::vector<double>& lp, const std::vector<double>& lq) {
  double kl = 0;
  for (size_t i = 0; i < lp.size(); ++i)
    if (p[i] > 0) kl += p[i] * (lp[i] - lq[i]);
  return std::max(0.0, kl);
}
}  // namespace

double kl_divergence_row(const double* r, const double* y, int64_t n) {
  std::vector<double> p;
  const std::vector<double> lp = log_softmax(r, n, &p);
  return kl_from_log_softmax(p, lp, log_softmax(y, n));
}

bool in_top_n(const double* row, int64_t V, int64_t id, int64_t n) {
  if (id < 0 || id >= V) return false;
  int64_t above = 0;
  for (int64_t v = 0; v < V; ++v)
    if (row[v] > row[id] || (row[v] == row[id] && v < id)) ++above;
  return above < n;
}

std::vector<std::pair<int64_t, double>> top_n_logits(const double* row, int64_t V, int64_t n) {
  std::vector<int64_t> ids(static_cast<size_t>(V));
  for (int64_t v = 0; v < V; ++v) ids[size_t(v)] = v;
  const size_t keep = size_t(std::clamp<int64_t>(n, 0, V));
  std::partial_sort(ids.begin(), ids.begin() + std::ptrdiff_t(keep), ids.end(),
                    [&](int64_t x, int64_t y) { return row[x] > row[y] || (row[x] == row[y] && x < y); });
  std::vector<std::pair<int64_t, double>> top;
  for (size_t j = 0; j < keep; ++j) top.emplace_back(ids[j], row[ids[j]]);
  return top;
}

void logits_agreement(const Tensor<double>& r, const Tensor<double>& y, LogitsSummary& s) {
  const int64_t V = r.cols();
  logits_agreement(r.rows(), V, [&](int64_t t, double* rr, double* yy) {
    std::copy_n(r.row(t), V, rr);
    std::copy_n(y.row(t), V, yy);
  }, s);
}

void logits_agreement(int64_t T, int64_t V, const std::function<void(int64_t, double*, double*)>& read_row,
                      LogitsSummary& s) {
  s.present = true;
  s.positions = T;
  s.top1_agree = 0;
  std::vector<double> kls, p, r(static_cast<size_t>(V)), y(static_cast<size_t>(V));
  double dp2 = 0;
  for (int64_t t = 0; t < T; ++t) {
    read_row(t, r.data(), y.data());
    const int64_t ar = argmax(r.data(), V), ay = argmax(y.data(), V);
    s.top1_agree += ar == ay;
    const std::vector<double> lp = log_softmax(r.data(), V, &p), lq = log_softmax(y.data(), V);
    kls.push_back(kl_from_log_softmax(p, lp, lq));
    const double dp = p[size_t(ar)] - std::exp(lq[size_t(ar)]);
    dp2 += dp * dp;
  }
  if (T == 0) return;
  double sum = 0;
  for (double k : kls) sum += k;
  s.kl_mean = sum / double(T);
  std::vector<double> sorted = kls;
  std::sort(sorted.begin(), sorted.end());
  s.kl_max = sorted.back();
  s.kl_p99 = sorted[size_t(std::min<int64_t>(T - 1, int64_t(std::ceil(0.99 * double(T))) - 1))];
  s.dp_rms = std::sqrt(dp2 / double(T));
}

void generation_agreement(const std::vector<int64_t>& a, const std::vector<int64_t>& b, const Tensor<double>& ra,
                          const Tensor<double>& rb, double noise, LogitsSummary& s, int64_t top_n) {
  s.generated = int64_t(std::min(a.size(), b.size()));
  s.first_token_divergence = -1;
  for (int64_t i = 0; i < s.generated; ++i)
    if (a[size_t(i)] != b[size_t(i)]) {
      s.first_token_divergence = i;
      break;
    }
  if (s.first_token_divergence < 0) return;
  const int64_t i = s.first_token_divergence;
  s.divergence_token_baseline = a[size_t(i)];
  s.divergence_token_target = b[size_t(i)];
  if (rb.rows() > i) s.divergence_top_target = top_n_logits(rb.row(i), rb.cols(), top_n);
  if (ra.rows() <= i) return;
  s.divergence_top_baseline = top_n_logits(ra.row(i), ra.cols(), top_n);
  const int64_t V = ra.cols();
  const double* row = ra.row(i);
  const int64_t top = argmax(row, V);
  double second = -INFINITY;
  for (int64_t v = 0; v < V; ++v)
    if (v != top) second = std::max(second, row[v]);
  s.divergence_margin = row[top] - second;
  s.divergence_noise = 2 * noise;  // both logits of the pair move
  s.divergence_near_tie = s.divergence_margin <= s.divergence_noise;
  s.divergence_in_top_n = in_top_n(row, V, b[size_t(i)], top_n) &&
                          (rb.rows() <= i || in_top_n(rb.row(i), V, a[size_t(i)], top_n));
}

}  // namespace hyoracle::compare
