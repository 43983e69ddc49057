// Fuzzes the safetensors header and offset parser on arbitrary bytes. Beyond "no crash, no
// leak": every tensor it accepts must lie inside the buffer and hold exactly numel x dtype size
// bytes, and no two accepted tensors may overlap. Touching each tensor's first and last byte
// lets ASan catch an offset that escapes the buffer.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "io/safetensors.h"

namespace {

// Aborts (a libFuzzer crash) when an invariant of an accepted header does not hold.
void require(bool ok) {
  if (!ok) std::abort();
}

void check_accepted(const hyoracle::SafetensorsHeader& h, const uint8_t* data, size_t size) {
  require(h.data_start >= 8 && h.data_start <= size);
  volatile uint8_t sink = 0;
  for (const auto& t : h.tensors) {
    require(t.begin <= t.end && t.end <= size - h.data_start);
    require(uint64_t(t.numel()) * uint64_t(hyoracle::dtype_size(t.dtype)) == t.end - t.begin);
    if (t.end > t.begin) sink = sink + data[h.data_start + t.begin] + data[h.data_start + t.end - 1];
  }
  for (size_t i = 0; i < h.tensors.size(); ++i)
    for (size_t j = i + 1; j < h.tensors.size() && j < i + 64; ++j) {
      const auto &a = h.tensors[i], &b = h.tensors[j];
      if (a.end > a.begin && b.end > b.begin) require(a.end <= b.begin || b.end <= a.begin);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    check_accepted(hyoracle::parse_safetensors_header(data, size, "fuzz.safetensors"), data, size);
  } catch (const hyoracle::Error&) {
    // A refusal is the expected outcome for most inputs; anything else escapes and crashes.
  }
  return 0;
}
