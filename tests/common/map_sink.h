// map_sink.h: an ActivationSink that keeps every recorded tensor in memory as double.
#pragma once
#include <map>
#include <string>

#include "io/sink.h"

namespace hyoracle::test {

class MapSink : public ActivationSink {
 public:
  void put(const std::string& n, const Tensor<double>& t) override { tensors[n] = t; }
  void put(const std::string& n, const Tensor<float>& t) override { tensors[n] = cast<double>(t); }
  void put_ints(const std::string& n, const std::vector<int64_t>& shape, const std::vector<int64_t>& v, DType) override {
    ints[n] = v;
    shapes[n] = shape;
  }
  std::map<std::string, Tensor<double>> tensors;
  std::map<std::string, std::vector<int64_t>> ints;
  std::map<std::string, std::vector<int64_t>> shapes;
};

}  // namespace hyoracle::test
