// embedding.h: token embedding on the GPU, a plain row gather (MODEL_SPEC.md §4.1).
//
//   x[t, :] = table[ids[t], :]      table [V, H], ids [T] -> x [T, H]   (a copy: no arithmetic)
// Ids are checked on the host first: an id outside [0, V) is an Error, as in the reference.
#pragma once
#include <vector>

#include "device.h"

namespace hyoracle::cuda {
template <class T>
void embedding(const DeviceTensor<T>& table, const std::vector<int64_t>& ids, DeviceTensor<T>& x);
}  // namespace hyoracle::cuda
