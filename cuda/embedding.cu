#include "cuda/embedding.h"

namespace hyoracle::cuda {

namespace {
// x = T(table value): a copy when W = T, an exact widening (bf16 -> double) for the fp64 path.
template <class W, class T>
__global__ void gather_rows(const W* table, const int64_t* ids, T* x, int64_t H) {
  const int64_t t = blockIdx.x;
  const W* src = table + ids[t] * H;
  for (int64_t h = threadIdx.x; h < H; h += blockDim.x) x[t * H + h] = T(widen(src[h]));
}

template <class T>
__global__ void gather_rows_checked(const T* table, const int64_t* ids, int64_t V, T* x, int64_t H, int32_t* bad_id) {
  const int64_t t = blockIdx.x, id = ids[t];
  if (id < 0 || id >= V) {
    for (int64_t h = threadIdx.x; h < H; h += blockDim.x) x[t * H + h] = from_f32<T>(__int_as_float(0x7fc00000));
    if (threadIdx.x == 0 && bad_id) *bad_id = 1;
    return;
  }
  for (int64_t h = threadIdx.x; h < H; h += blockDim.x) x[t * H + h] = table[id * H + h];
}
}  // namespace

template <class T>
void embedding(const DeviceTensor<weight_t<T>>& table, const std::vector<int64_t>& ids, DeviceTensor<T>& x) {
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

template <class T>
void embedding(const DeviceTensor<T>& table, const DeviceTensor<int64_t>& ids, DeviceTensor<T>& x, int32_t* bad_id) {
  const int64_t V = table.dim(0), H = table.dim(1), T_ = ids.numel();
  if (x.numel() != T_ * H) fail("cuda embedding: output " + shape_str(x.shape) + " is not [T, H]");
  if (!T_) return;
  gather_rows_checked<<<unsigned(T_), 256, 0, gpu().stream>>>(table.data(), ids.data(), V, x.data(), H, bad_id);
  check_launch("embedding (device ids)");
}

template void embedding<float>(const DeviceTensor<float>&, const std::vector<int64_t>&, DeviceTensor<float>&);
template void embedding<bf16>(const DeviceTensor<bf16>&, const std::vector<int64_t>&, DeviceTensor<bf16>&);
template void embedding<fp16>(const DeviceTensor<fp16>&, const std::vector<int64_t>&, DeviceTensor<fp16>&);
template void embedding<double>(const DeviceTensor<bf16>&, const std::vector<int64_t>&, DeviceTensor<double>&);
template void embedding<float>(const DeviceTensor<float>&, const DeviceTensor<int64_t>&, DeviceTensor<float>&, int32_t*);
template void embedding<bf16>(const DeviceTensor<bf16>&, const DeviceTensor<int64_t>&, DeviceTensor<bf16>&, int32_t*);
template void embedding<fp16>(const DeviceTensor<fp16>&, const DeviceTensor<int64_t>&, DeviceTensor<fp16>&, int32_t*);

}  // namespace hyoracle::cuda
