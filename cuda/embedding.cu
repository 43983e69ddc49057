#include "embedding.h"

namespace hyoracle::cuda {

namespace {
template <class T>
__global__ void gather_rows(const T* table, const int64_t* ids, T* x, int64_t H) {
  const int64_t t = blockIdx.x;
  const T* src = table + ids[t] * H;
  for (int64_t h = threadIdx.x; h < H; h += blockDim.x) x[t * H + h] = src[h];
}
}  // namespace

template <class T>
void embedding(const DeviceTensor<T>& table, const std::vector<int64_t>& ids, DeviceTensor<T>& x) {
  const int64_t V = table.dim(0), H = table.dim(1), T_ = int64_t(ids.size());
  if (x.numel() != T_ * H) fail("cuda embedding: output " + shape_str(x.shape) + " is not [T, H]");
  for (size_t t = 0; t < ids.size(); ++t)
    if (ids[t] < 0 || ids[t] >= V)
      fail("token id " + std::to_string(ids[t]) + " at position " + std::to_string(t) + " is outside the vocabulary [0, " +
           std::to_string(V) + ")");
  if (!T_) return;
  const DeviceTensor<int64_t> d_ids = upload_ints(ids);
  gather_rows<<<unsigned(T_), 256, 0, gpu().stream>>>(table.data(), d_ids.data(), x.data(), H);
  check_launch("embedding");
}

template void embedding<float>(const DeviceTensor<float>&, const std::vector<int64_t>&, DeviceTensor<float>&);
template void embedding<bf16>(const DeviceTensor<bf16>&, const std::vector<int64_t>&, DeviceTensor<bf16>&);
template void embedding<fp16>(const DeviceTensor<fp16>&, const std::vector<int64_t>&, DeviceTensor<fp16>&);

}  // namespace hyoracle::cuda
