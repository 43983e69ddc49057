#include "compare/replay_device.h"

#include "compare/teacher_forcing.h"
#include "reference/attention.h"
#include "reference/matmul.h"
#include "util/error.h"

#ifdef HYORACLE_HAVE_CUDA
#include "compare/replay_cuda.h"
#endif

namespace hyoracle::compare {

namespace {

// The reference's functions, precision exact.
class CpuDevice final : public ReplayDevice {
 public:
  explicit CpuDevice(int threads) : threads_(threads) {}
  std::string name() const override { return "cpu"; }
  Tensor<double> linear(const Tensor<double>& x, const Tensor<double>& w) override { return linear_once(x, w); }
  Tensor<double> linear_once(const Tensor<double>& x, const Tensor<double>& w) override {
    return hyoracle::linear(Tensor<double>({x.numel() / w.cols(), w.cols()}, x.data), w, threads_);
  }
  double dot_conditioning(const Tensor<double>& a, const Tensor<double>& w) override {
    return compare::dot_conditioning(Tensor<double>({a.numel() / w.cols(), w.cols()}, a.data), w, threads_);
  }
  Tensor<double> mlp(const Tensor<double>& u, const MlpWeights<double>& w, bool fp8) override {
    return swiglu_mlp(u, w, threads_, fp8);
  }
  Tensor<double> expert(const Tensor<double>& x, const ExpertStore<double>& experts, int64_t e, bool fp8) override {
    return swiglu_mlp(x, experts.get(e, scratch_), threads_, fp8);
  }
  Tensor<double> routed_experts(const Tensor<double>& u, const RouterOutput<double>& r, const ExpertStore<double>& experts,
                                bool fp8) override {
    return hyoracle::routed_experts(u, r, experts, threads_, fp8);
  }
  Tensor<double> attention(const Tensor<double>& q, const Tensor<double>& k, const Tensor<double>& v,
                           const std::vector<int64_t>& pos, const std::vector<int64_t>& kpos) override {
    return hyoracle::attention(q, k, v, pos, kpos, Numerics{Precision::exact, threads_});
  }
  double attention_gain(const Tensor<double>& q, const Tensor<double>& k, const Tensor<double>& v,
                        const std::vector<int64_t>& pos, const std::vector<int64_t>& kpos) override {
    return attention_rounding_gain(q, k, v, pos, kpos);
  }
  void release_weights() override { scratch_ = MlpWeights<double>{}; }

 private:
  int threads_;
  MlpWeights<double> scratch_;
};

}  // namespace

std::unique_ptr<ReplayDevice> make_cpu_replay_device(int threads) { return std::make_unique<CpuDevice>(threads); }

std::unique_ptr<ReplayDevice> make_replay_device(const std::string& device, int threads) {
  if (device.empty() || device == "cpu") return make_cpu_replay_device(threads);
  if (device != "cuda") fail("--device: \"" + device + "\" is not one of cpu, cuda");
#ifdef HYORACLE_HAVE_CUDA
  return make_cuda_replay_device(threads);
#else
  fail("--device cuda: this hyoracle was built without CUDA (nvcc was not found when it was configured)");
#endif
}

}  // namespace hyoracle::compare
