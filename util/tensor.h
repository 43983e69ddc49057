// tensor.h: the plain tensor every layer takes and returns.
//
// A Tensor<S> is a shape and a dense row-major std::vector<S>; nothing else (no strides, no
// views, no device). S is double for the `exact` and `hf` precision modes and float for `fp32`.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "util/error.h"

namespace hyoracle {

// Product of the dimensions; fails on a negative dimension or on overflow past 2^62.
inline int64_t numel_of(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) fail("negative dimension in tensor shape");
    if (d != 0 && n > (int64_t(1) << 62) / d) fail("tensor element count overflows 2^62");
    n *= d;
  }
  return n;
}

inline std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

template <class S>
struct Tensor {
  std::vector<int64_t> shape;
  std::vector<S> data;

  Tensor() = default;
  explicit Tensor(std::vector<int64_t> shape_) : shape(std::move(shape_)), data(numel_of(shape), S(0)) {}
  Tensor(std::vector<int64_t> shape_, std::vector<S> data_) : shape(std::move(shape_)), data(std::move(data_)) {
    if (numel_of(shape) != int64_t(data.size())) fail("Tensor: data size does not match shape " + shape_str(shape));
  }

  int64_t numel() const { return int64_t(data.size()); }
  int64_t dim(size_t i) const { return shape.at(i); }
  // Number of rows when the tensor is read as [rows, last dim].
  int64_t rows() const { return shape.empty() || shape.back() == 0 ? 0 : numel() / shape.back(); }
  int64_t cols() const { return shape.empty() ? 1 : shape.back(); }
  S* row(int64_t r) { return data.data() + r * cols(); }
  const S* row(int64_t r) const { return data.data() + r * cols(); }
};

// Converts element type (double <-> float); rounding to nearest when narrowing.
template <class To, class From>
Tensor<To> cast(const Tensor<From>& x) {
  Tensor<To> y;
  y.shape = x.shape;
  y.data.assign(x.data.begin(), x.data.end());
  return y;
}

}  // namespace hyoracle
