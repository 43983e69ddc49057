// attention: picks the kernel for a call (cuda/attention.h), and decides when the tensor-core
// kernels apply. The kernels: attention_simt.cu (exact fp32), attention_prefill.cu,
// attention_decode.cu.
#include "cuda/attention.h"

#include <cstdint>
#include <type_traits>

#include "cuda/attention_common.cuh"

namespace hyoracle::cuda {

namespace {
// attention() takes the decode kernel up to this many (query, head) rows per KV head (four of its
// 16-row groups), the prefill kernel above.
constexpr int64_t kDecodeRowsMax = 64;
}  // namespace

template <class T>
bool attention_mma_supported(const DeviceTensor<T>& q, const DeviceTensor<T>& k_cache, const DeviceTensor<T>& v_cache,
                             const DeviceTensor<T>& context) {
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
    return false;
  } else {
    const int64_t d = q.shape.size() == 3 ? q.dim(2) : 0;
    return (d == 16 || d == 32 || d == 48 || d == 64 || d == 128) && aligned16(q.data()) && aligned16(k_cache.data()) &&
           aligned16(v_cache.data()) && reinterpret_cast<uintptr_t>(context.data()) % 4 == 0;
  }
}

template <class T>
void attention(const DeviceTensor<T>& q, const DeviceTensor<T>& k_cache, const DeviceTensor<T>& v_cache, int64_t Tc,
               const DeviceTensor<int64_t>& q_pos, DeviceTensor<T>& context) {
  attn::check_shapes(q.shape, k_cache.shape, v_cache.shape, Tc, q_pos.numel(), context.numel());
  if constexpr (std::is_same_v<T, double>) {
    attention_fp64(q, k_cache, v_cache, Tc, q_pos, context);
  } else {
    if (!attention_mma_supported(q, k_cache, v_cache, context)) return attention_simt(q, k_cache, v_cache, Tc, q_pos, context);
    const int64_t rows = q.dim(0) * (q.dim(1) / k_cache.dim(1));  // (query, head) rows per KV head
    if (rows <= kDecodeRowsMax) return attention_decode(q, k_cache, v_cache, Tc, q_pos, context);
    attention_prefill(q, k_cache, v_cache, Tc, q_pos, context);
  }
}

template void attention<float>(const DeviceTensor<float>&, const DeviceTensor<float>&, const DeviceTensor<float>&, int64_t, const DeviceTensor<int64_t>&, DeviceTensor<float>&);
template bool attention_mma_supported<float>(const DeviceTensor<float>&, const DeviceTensor<float>&, const DeviceTensor<float>&, const DeviceTensor<float>&);
template void attention<bf16>(const DeviceTensor<bf16>&, const DeviceTensor<bf16>&, const DeviceTensor<bf16>&, int64_t, const DeviceTensor<int64_t>&, DeviceTensor<bf16>&);
template bool attention_mma_supported<bf16>(const DeviceTensor<bf16>&, const DeviceTensor<bf16>&, const DeviceTensor<bf16>&, const DeviceTensor<bf16>&);
template void attention<double>(const DeviceTensor<double>&, const DeviceTensor<double>&, const DeviceTensor<double>&, int64_t, const DeviceTensor<int64_t>&, DeviceTensor<double>&);
template bool attention_mma_supported<double>(const DeviceTensor<double>&, const DeviceTensor<double>&, const DeviceTensor<double>&, const DeviceTensor<double>&);
template void attention<fp16>(const DeviceTensor<fp16>&, const DeviceTensor<fp16>&, const DeviceTensor<fp16>&, int64_t, const DeviceTensor<int64_t>&, DeviceTensor<fp16>&);
template bool attention_mma_supported<fp16>(const DeviceTensor<fp16>&, const DeviceTensor<fp16>&, const DeviceTensor<fp16>&, const DeviceTensor<fp16>&);

}  // namespace hyoracle::cuda
