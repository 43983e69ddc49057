// embedding.h: token embedding on the GPU, a plain row gather (docs/model.md §4.1).
//
//   x[t, :] = table[ids[t], :]      table [V, H], ids [T] -> x [T, H]   (a copy: no arithmetic)
// The table is held as weight_t<T> (T itself; bf16 for the fp64 path, widened exactly to double).
// Ids are checked on the host first: an id outside [0, V) is an Error, as in the reference.
#pragma once
#include <vector>

#include "cuda/device.h"

namespace hyoracle::cuda {
template <class T>
void embedding(const DeviceTensor<weight_t<T>>& table, const std::vector<int64_t>& ids, DeviceTensor<T>& x);

// The same gather with the ids already on the device (a captured decode step reads the token that
// the previous step's argmax wrote). Ids cannot be checked on the host here: a row whose id lies
// outside [0, V) is not read, its output row is filled with NaN and *bad_id (device, may be
// null) is set to 1, so the error shows instead of a wrong row being used.
template <class T>
void embedding(const DeviceTensor<T>& table, const DeviceTensor<int64_t>& ids, DeviceTensor<T>& x, int32_t* bad_id);
}  // namespace hyoracle::cuda
