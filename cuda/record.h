// record.h: reports a device tensor to the reference's Recorder (sink.h) under its canonical
// name, as float. Costs a device -> host copy only when someone listens.
#pragma once
#include "cuda/device.h"
#include "io/sink.h"
#include "reference/dataflow.h"

namespace hyoracle::cuda {

template <class T>
void record(const Recorder& rec, const std::string& name, const DeviceTensor<T>& t, std::vector<int64_t> shape = {}) {
  if (!rec.active()) return;
  rec(name, download(t), std::move(shape));
}
inline void record_ints(const Recorder& rec, const std::string& name, const DeviceTensor<int32_t>& t) {
  if (!rec.active()) return;
  rec.ints(name, t.shape, download_ints(t), dataflow::int_dtype_of(name));
}

}  // namespace hyoracle::cuda
