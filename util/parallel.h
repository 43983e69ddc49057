// parallel.h: deterministic parallel loops.
//
// parallel_for(n, threads, fn) runs fn(0..n-1) on up to `threads` std::threads. Callers give
// each index disjoint outputs and a computation that does not depend on which thread runs it,
// so results are bit-identical for every thread count: determinism by construction, not by luck.
#pragma once
#include <cstdint>
#include <functional>

namespace hyoracle {
void parallel_for(int64_t n, int threads, const std::function<void(int64_t)>& fn);

// As parallel_for, and also passes the worker's number w in [0, min(threads, n)) so a task can
// use per-worker scratch. Which worker runs an index varies; results must not depend on it.
void parallel_for_workers(int64_t n, int threads, const std::function<void(int64_t index, int worker)>& fn);
}  // namespace hyoracle
