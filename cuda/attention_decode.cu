// attention_decode: the split-KV decode kernel (cuda/attention_decode.cuh) in the form measured
// fastest, and the scratch its partials live in.
#include <algorithm>
#include <string>
#include <type_traits>
#include <vector>

#include "cuda/attention.h"
#include "cuda/attention_decode.cuh"

namespace hyoracle::cuda {

namespace attn {

float* decode_scratch(int64_t floats, DeviceTensor<float>& local) {
  static std::vector<DeviceTensor<float>>* kept = new std::vector<DeviceTensor<float>>();  // never destroyed
  if (!kept->empty() && kept->back().numel() >= floats) return kept->back().data();
  cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
  check(cudaStreamIsCapturing(gpu().stream, &st), "attention decode: capture status");
  if (st != cudaStreamCaptureStatusNone) {
    local = DeviceTensor<float>({floats});
    return local.data();
  }
  kept->push_back(DeviceTensor<float>({std::max<int64_t>(floats, kept->empty() ? 0 : 2 * kept->back().numel())}));
  return kept->back().data();
}

}  // namespace attn

namespace {
// What attention_decode uses: the ring form with 3 stages at about one block per SM, the fastest
// measured (bench/cuda/NOTES.md; ring3 and ring4 at one block per SM tied, the register form and
// two blocks per SM 3-4 % slower; bench/cuda/attention_variants.cu builds the others).
constexpr int kDecodeStages = 3;
constexpr int64_t kDecodeBlocksPerSm = 1;
}  // namespace

template <class T>
void attention_decode(const DeviceTensor<T>& q, const DeviceTensor<T>& k_cache, const DeviceTensor<T>& v_cache, int64_t Tc,
                      const DeviceTensor<int64_t>& q_pos, DeviceTensor<T>& context) {
  using namespace attn;
  check_shapes(q.shape, k_cache.shape, v_cache.shape, Tc, q_pos.numel(), context.numel());
  if constexpr (std::is_same_v<T, float>) {
    fail("cuda attention_decode: the tensor-core kernel takes bf16 or fp16 (fp32 uses the exact kernel)");
  } else {
    if (!attention_mma_supported(q, k_cache, v_cache, context))
      fail("cuda attention_decode: needs head_dim in {16, 32, 48, 64, 128} and 16-byte aligned buffers, got head_dim " +
           std::to_string(q.dim(2)));
    decode_launch(q, k_cache, v_cache, Tc, q_pos, context, kDecodeBlocksPerSm, [](auto dc, const DecodeArgs<T>& a) {
      launch_decode_ring<T, decltype(dc)::value, kDecodeStages>(a);
    });
  }
}

template void attention_decode<float>(const DeviceTensor<float>&, const DeviceTensor<float>&, const DeviceTensor<float>&, int64_t, const DeviceTensor<int64_t>&, DeviceTensor<float>&);
template void attention_decode<bf16>(const DeviceTensor<bf16>&, const DeviceTensor<bf16>&, const DeviceTensor<bf16>&, int64_t, const DeviceTensor<int64_t>&, DeviceTensor<bf16>&);
template void attention_decode<fp16>(const DeviceTensor<fp16>&, const DeviceTensor<fp16>&, const DeviceTensor<fp16>&, int64_t, const DeviceTensor<int64_t>&, DeviceTensor<fp16>&);

}  // namespace hyoracle::cuda
