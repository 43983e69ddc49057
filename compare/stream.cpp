#include "compare/stream.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace hyoracle::compare {

int64_t TensorSource::numel() const {
  if (memory) return memory->numel();
  const int64_t n = dump->info(name).numel();
  if (prefix > n) fail("TensorSource: a prefix of " + std::to_string(prefix) + " elements of \"" + name + "\" (" + std::to_string(n) + ")");
  return prefix >= 0 ? prefix : n;
}

int64_t first_nan_after(const Dump& d, const std::string& name, int64_t from, int64_t* count) {
  const int64_t n = d.info(name).numel();
  std::vector<double> buf(static_cast<size_t>(kStreamChunk));
  int64_t first = -1;
  *count = 0;
  for (int64_t at = from; at < n; at += kStreamChunk) {
    const int64_t m = std::min(kStreamChunk, n - at);
    d.read_range(name, at, m, buf.data());
    for (int64_t i = 0; i < m; ++i)
      if (std::isnan(buf[size_t(i)])) {
        if (first < 0) first = at + i;
        ++*count;
      }
  }
  if (n > from) d.advise(name, from, n - from, Dump::Pages::dont_need);
  return first;
}

ChunkReader::ChunkReader(const TensorSource& s) : s_(s), numel_(s.numel()) {
  if (s_.dump) elem_bytes_ = dtype_size(s_.dump->info(s_.name).dtype);
}

ChunkReader::~ChunkReader() {
  if (!s_.dump || pos_ == released_) return;
  try {
    s_.dump->advise(s_.name, released_, pos_ - released_, Dump::Pages::dont_need);
  } catch (...) {  // a hint only
  }
}

const double* ChunkReader::next(int64_t count, double* buffer) {
  if (count < 0 || count > numel_ - pos_) fail("ChunkReader: read past the end of a tensor");
  if (s_.memory) {
    const double* p = s_.memory->data.data() + pos_;
    pos_ += count;
    return p;
  }
  const Dump& d = *s_.dump;
  // Keep the file read ahead of the reader by kReadaheadBytes, across tensor boundaries.
  d.read_ahead(s_.name, pos_, uint64_t(kReadaheadBytes));
  d.read_range(s_.name, pos_, count, buffer);
  pos_ += count;
  if ((pos_ - released_) * elem_bytes_ >= kReleaseBytes) {
    d.advise(s_.name, released_, pos_ - released_, Dump::Pages::dont_need);
    released_ = pos_;
  }
  return buffer;
}

Metrics stream_compare(const TensorSource& ref, const TensorSource& y, const std::vector<int64_t>& shape,
                       const StreamOptions& o) {
  const int64_t N = numel_of(shape);
  if (ref.numel() != N || y.numel() != N)
    fail("stream_compare: " + std::to_string(ref.numel()) + " and " + std::to_string(y.numel()) +
         " elements for shape " + shape_str(shape));
  const int64_t chunk = std::max<int64_t>(1, std::min(o.chunk, std::max<int64_t>(N, 1)));
  const int64_t rows = shape.empty() ? 1 : shape[0];
  const int64_t per_row = rows == 0 ? 0 : N / rows;
  MetricsAccumulator acc(shape, o.atol, o.rtol);
  ChunkReader a(ref), b(y);
  std::vector<double> buf_ref(static_cast<size_t>(chunk)), buf_y(static_cast<size_t>(chunk));
  const bool substitute = o.reference_rows && !o.reference_rows->empty() && per_row > 0;
  for (int64_t begin = 0; begin < N; begin += chunk) {
    const int64_t c = std::min(chunk, N - begin);
    const double* pr = a.next(c, buf_ref.data());
    const double* py = b.next(c, buf_y.data());
    if (substitute) {
      if (py != buf_y.data()) std::copy_n(py, c, buf_y.data());
      for (int64_t row = begin / per_row; row * per_row < begin + c; ++row) {
        if (!o.reference_rows->count(row)) continue;
        const int64_t lo = std::max(begin, row * per_row), hi = std::min(begin + c, (row + 1) * per_row);
        std::copy(pr + (lo - begin), pr + (hi - begin), buf_y.data() + (lo - begin));
      }
      py = buf_y.data();
    }
    acc.add(pr, py, c);
  }
  return acc.finish();
}

}  // namespace hyoracle::compare
