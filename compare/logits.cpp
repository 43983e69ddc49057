#include "logits.h"

#include <algorithm>
#include <cmath>

#include "model.h"

namespace hyoracle::compare {

namespace {
// log-softmax of one row, in double.
std::vector<double> log_softmax(const double* x, int64_t n) {
  double mx = -INFINITY;
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, x[i]);
  double z = 0;
  for (int64_t i = 0; i < n; ++i) z += std::exp(x[i] - mx);
  const double lz = mx + std::log(z);
  std::vector<double> l(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) l[size_t(i)] = x[i] - lz;
  return l;
}
}  // namespace

double kl_divergence_row(const double* r, const double* y, int64_t n) {
  const std::vector<double> lp = log_softmax(r, n), lq = log_softmax(y, n);
  double kl = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double p = std::exp(lp[size_t(i)]);
    if (p > 0) kl += p * (lp[size_t(i)] - lq[size_t(i)]);
  }
  return std::max(0.0, kl);
}

bool in_top_n(const double* row, int64_t V, int64_t id, int64_t n) {
  if (id < 0 || id >= V) return false;
  int64_t above = 0;
  for (int64_t v = 0; v < V; ++v)
    if (row[v] > row[id] || (row[v] == row[id] && v < id)) ++above;
  return above < n;
}

void logits_agreement(const Tensor<double>& r, const Tensor<double>& y, LogitsSummary& s) {
  const int64_t T = r.rows(), V = r.cols();
  s.present = true;
  s.positions = T;
  s.top1_agree = 0;
  std::vector<double> kls;
  double dp2 = 0;
  for (int64_t t = 0; t < T; ++t) {
    const int64_t ar = argmax(r.row(t), V), ay = argmax(y.row(t), V);
    s.top1_agree += ar == ay;
    kls.push_back(kl_divergence_row(r.row(t), y.row(t), V));
    const std::vector<double> lp = log_softmax(r.row(t), V), lq = log_softmax(y.row(t), V);
    const double dp = std::exp(lp[size_t(ar)]) - std::exp(lq[size_t(ar)]);
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
  if (ra.rows() <= i) return;
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
