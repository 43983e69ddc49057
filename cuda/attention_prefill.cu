// attention_prefill: the tensor-core prefill kernel (cuda/attention_prefill.cuh) at the
// configuration measured fastest for each head dim.
#include <string>
#include <type_traits>

#include "cuda/attention.h"
#include "cuda/attention_prefill.cuh"

namespace hyoracle::cuda {

template <class T>
void attention_prefill(const DeviceTensor<T>& q, const DeviceTensor<T>& k_cache, const DeviceTensor<T>& v_cache, int64_t Tc,
                       const DeviceTensor<int64_t>& q_pos, DeviceTensor<T>& context) {
  using namespace attn;
  check_shapes(q.shape, k_cache.shape, v_cache.shape, Tc, q_pos.numel(), context.numel());
  if constexpr (std::is_same_v<T, float>) {
    fail("cuda attention_prefill: the tensor-core kernel takes bf16 or fp16 (fp32 uses the exact kernel)");
  } else {
    if (!attention_mma_supported(q, k_cache, v_cache, context))
      fail("cuda attention_prefill: needs head_dim in {16, 32, 48, 64, 128} and 16-byte aligned buffers, got head_dim " +
           std::to_string(q.dim(2)));
    if (!q.dim(0)) return;
    if (q.dim(2) == 128) return launch_prefill<T, 128, 4, 64, 2, 2>(q, k_cache, v_cache, Tc, q_pos, context);
    with_head_dim(q.dim(2), [&](auto dc) {
      launch_prefill<T, decltype(dc)::value, kPrefillWarps, kPrefillKeys, kPrefillStages, kPrefillTiles>(q, k_cache, v_cache, Tc,
                                                                                                      q_pos, context);
    });
  }
}

template void attention_prefill<float>(const DeviceTensor<float>&, const DeviceTensor<float>&, const DeviceTensor<float>&, int64_t, const DeviceTensor<int64_t>&, DeviceTensor<float>&);
template void attention_prefill<bf16>(const DeviceTensor<bf16>&, const DeviceTensor<bf16>&, const DeviceTensor<bf16>&, int64_t, const DeviceTensor<int64_t>&, DeviceTensor<bf16>&);
template void attention_prefill<fp16>(const DeviceTensor<fp16>&, const DeviceTensor<fp16>&, const DeviceTensor<fp16>&, int64_t, const DeviceTensor<int64_t>&, DeviceTensor<fp16>&);

}  // namespace hyoracle::cuda
