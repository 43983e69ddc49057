// sink.h: where the forward pass reports its intermediate tensors, under canonical names
// (DUMP_FORMAT.md). The dump writer is one sink; tests use others.
#pragma once
#include <string>
#include <vector>

#include "io/dtype.h"
#include "util/tensor.h"

namespace hyoracle {

class ActivationSink {
 public:
  virtual ~ActivationSink() = default;
  virtual void put(const std::string& name, const Tensor<double>& t) = 0;
  virtual void put(const std::string& name, const Tensor<float>& t) = 0;
  // Integer tensors (token and expert ids), with the dtype a dump stores them in: the producer
  // takes it from the dataflow table (dataflow::int_dtype_of), so no sink guesses it from a name.
  virtual void put_ints(const std::string& name, const std::vector<int64_t>& shape, const std::vector<int64_t>& v,
                        DType stored) = 0;
};

// A sink plus a name prefix ("" for prefill, "steps.S." for decode step S). Without a sink
// every call is a no-op, so the forward pass costs nothing extra when nobody listens.
struct Recorder {
  ActivationSink* sink = nullptr;
  std::string prefix;

  bool active() const { return sink != nullptr; }
  // Records t under prefix+name, optionally with another shape of the same element count.
  template <class S>
  void operator()(const std::string& name, const Tensor<S>& t, std::vector<int64_t> shape = {}) const {
    if (!sink) return;
    if (shape.empty()) return sink->put(prefix + name, t);
    Tensor<S> r(std::move(shape), t.data);
    sink->put(prefix + name, r);
  }
  void ints(const std::string& name, const std::vector<int64_t>& shape, const std::vector<int64_t>& v,
            DType stored) const {
    if (sink) sink->put_ints(prefix + name, shape, v, stored);
  }
};

}  // namespace hyoracle
