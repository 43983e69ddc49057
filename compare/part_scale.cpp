#include "compare/part_scale.h"

#include <cmath>

namespace hyoracle::compare {

PartScaleFit::PartScaleFit(int64_t parts, const Tensor<double>& residual)
    : e_(residual), n_(residual.cols()), num_(size_t(parts)), den_(size_t(parts)), var_(size_t(parts)),
      rows_(size_t(parts)) {
  var_row_.resize(size_t(e_.rows()));
  for (int64_t t = 0; t < e_.rows(); ++t) {
    double s = 0;
    for (int64_t i = 0; i < n_; ++i) s += e_.row(t)[i] * e_.row(t)[i];
    var_row_[size_t(t)] = n_ > 0 ? s / double(n_) : 0;
  }
}

void PartScaleFit::add(int64_t part, int64_t row, const double* c, double composed) {
  const double* e = e_.row(row);
  double ec = 0, cc = 0;
  for (int64_t i = 0; i < n_; ++i) ec += e[i] * c[i], cc += c[i] * c[i];
  num_[size_t(part)] += ec;
  den_[size_t(part)] += cc;
  var_[size_t(part)] += var_row_[size_t(row)] * cc + (composed * cc) * (composed * cc);
  rows_[size_t(part)] += 1;
}

std::vector<PartScale> PartScaleFit::fits() const {
  std::vector<PartScale> out;
  for (size_t j = 0; j < num_.size(); ++j) {
    if (rows_[j] == 0 || den_[j] <= 0) continue;
    PartScale p;
    p.part = int64_t(j);
    p.rows = rows_[j];
    p.alpha = num_[j] / den_[j];
    p.sigma = std::sqrt(var_[j]) / den_[j];
    out.push_back(p);
  }
  return out;
}

const PartScale* worst_part(const std::vector<PartScale>& fits, double floor, double z_limit) {
  const PartScale* worst = nullptr;
  for (const PartScale& p : fits)
    if (std::fabs(p.alpha) > floor && std::fabs(p.z()) > z_limit && (!worst || std::fabs(p.alpha) > std::fabs(worst->alpha)))
      worst = &p;
  return worst;
}

}  // namespace hyoracle::compare
