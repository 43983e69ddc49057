// stream.h: chunked, single-pass comparison of two tensors, each held in a dump (mapped,
// decoded to double a chunk at a time) or in memory (e.g. a reference step replayed on the
// target's inputs). Comparing a tensor pair costs two chunk buffers plus the metrics' per-row
// sums, whatever the tensor's size:
//
//   Metrics m = stream_compare(TensorSource(baseline, name), TensorSource(target, name), shape);
//
// Behind the reader the mapped pages are dropped from the process (Dump::Pages::dont_need, every
// kReleaseBytes); ahead of it the kernel is asked to read the file ahead (Dump::read_ahead,
// kReadaheadBytes, across tensor boundaries), so RSS does not grow with the size of the dumps and
// an uncached dump is read from disk while the previous chunks are compared.
// The Metrics do not depend on the chunk size (MetricsAccumulator).
#pragma once
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "io/dump.h"
#include "compare/metrics.h"

namespace hyoracle::compare {

constexpr int64_t kStreamChunk = 16384;             // elements per chunk and side (128 KiB as double)
constexpr int64_t kReleaseBytes = int64_t(2) << 20;  // mapped bytes consumed between two releases
constexpr int64_t kReadaheadBytes = int64_t(64) << 20;  // file bytes requested ahead of the reader

// One tensor to stream: `name` in `dump`, or a tensor in memory (not owned; must outlive it).
// `prefix` >= 0 streams only the first `prefix` elements of a dump tensor (e.g. the first rows of
// generate.logits), in their stored order.
struct TensorSource {
  TensorSource(const Dump& d, std::string n, int64_t prefix_ = -1) : dump(&d), name(std::move(n)), prefix(prefix_) {}
  explicit TensorSource(const Tensor<double>& t) : memory(&t) {}
  int64_t numel() const;

  const Dump* dump = nullptr;
  std::string name;
  const Tensor<double>* memory = nullptr;
  int64_t prefix = -1;
};

// The first NaN of elements [from, numel) of a dump tensor, streamed: its flat index, or -1; *count
// gets how many there are. For the part of a tensor that is not compared (still refused if NaN).
int64_t first_nan_after(const Dump& d, const std::string& name, int64_t from, int64_t* count);

// Reads one source front to back. next() returns the next `count` elements: a pointer into the
// in-memory tensor, or `buffer` filled by decoding the dump's bytes.
class ChunkReader {
 public:
  explicit ChunkReader(const TensorSource& s);
  ~ChunkReader();  // releases the pages read since the last release
  ChunkReader(const ChunkReader&) = delete;
  ChunkReader& operator=(const ChunkReader&) = delete;
  const double* next(int64_t count, double* buffer);

 private:
  TensorSource s_;
  int64_t numel_ = 0, pos_ = 0, released_ = 0, elem_bytes_ = 8;
};

struct StreamOptions {
  double atol = kDefaultAtol, rtol = kDefaultRtol;
  int64_t chunk = kStreamChunk;
  // Rows of the leading dimension whose target values are replaced by the reference's (tokens
  // left out of a judged total: they then add no error, but still count in n and the norms).
  const std::set<int64_t>* reference_rows = nullptr;
};

// Metrics of y against ref, both of `shape` (compare_tensors, streamed).
Metrics stream_compare(const TensorSource& ref, const TensorSource& y, const std::vector<int64_t>& shape,
                       const StreamOptions& o = {});

}  // namespace hyoracle::compare
