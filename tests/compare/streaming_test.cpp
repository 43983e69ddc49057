// Streaming compare (compare/stream.h, MetricsAccumulator in compare/metrics.h): the same
// Metrics for every chunk size; sums equal to naive long-double loops; percentiles within their
// stated resolution of the exact order statistics (sorting); dump chunks decoded exactly as
// Dump::read decodes whole tensors; and the real binary's peak RSS (wait4 of a child process) on
// a dump pair of a few hundred MB stays far below the pair's size.
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include "tests/compare/compare_helpers.h"
#include "reference/names.h"
#include "compare/stream.h"

using namespace hyoracle;
using namespace hyoracle::compare;
using hyoracle::testing::temp_dir;

namespace {

// Every field of a Metrics, floats in hex, so two results compare bit for bit.
std::string fingerprint(const Metrics& m) {
  std::string s = metrics_json(m).dump();
  char b[64];
  for (double x : {m.max_abs, m.mean_abs, m.p50, m.p99, m.p999, m.nmse, m.rel_l2, m.sqnr_db, m.cosine, m.norm_ratio,
                   m.diff, m.ref_norm, m.target_norm, m.err_norm, m.frac_outside, m.max_abs_ref, m.max_abs_target}) {
    std::snprintf(b, sizeof b, " %a", x);
    s += b;
  }
  for (double x : m.token_rel_l2) std::snprintf(b, sizeof b, " %a", x), s += b;
  for (const auto* v : {&m.max_abs_at, &m.first_nan_ref_at, &m.first_nan_target_at, &m.first_inf_mismatch_at}) {
    s += " [";
    for (int64_t c : *v) s += std::to_string(c) + ",";
    s += "]";
  }
  return s;
}

// Seeded values over many magnitudes, with exact zeros, equal pairs and (optionally) specials.
void fill_pair(Tensor<double>& r, Tensor<double>& y, uint64_t seed, bool specials) {
  Rng rng(seed);
  for (int64_t i = 0; i < r.numel(); ++i) {
    const double mag = std::pow(10.0, 6 * rng.uniform() - 3);
    r.data[i] = rng.normal() * mag;
    const double u = rng.uniform();
    y.data[i] = u < 0.1 ? r.data[i] : u < 0.15 ? 0.0 : r.data[i] * (1 + 0.01 * rng.normal()) + 1e-4 * rng.normal();
  }
  if (specials && r.numel() > 20) {
    r.data[3] = NAN;
    y.data[5] = NAN;
    r.data[7] = y.data[7] = INFINITY;                 // matched
    r.data[11] = -INFINITY, y.data[11] = INFINITY;   // mismatched in sign
    y.data[13] = INFINITY;                            // mismatched
  }
}

Metrics in_chunks(const Tensor<double>& r, const Tensor<double>& y, int64_t chunk) {
  MetricsAccumulator acc(r.shape);
  for (int64_t b = 0; b < r.numel(); b += chunk) acc.add(r.data.data() + b, y.data.data() + b, std::min(chunk, r.numel() - b));
  return acc.finish();
}

const std::vector<std::vector<int64_t>> kShapes = {{}, {1}, {7}, {1, 1}, {7, 33}, {33, 5, 3}, {3, 1, 1000}, {2, 4099}};

}  // namespace

TEST(Streaming, EveryChunkSizeGivesBitIdenticalMetrics) {
  for (const auto& shape : kShapes)
    for (bool specials : {false, true}) {
      Tensor<double> r(shape), y(shape);
      fill_pair(r, y, 17 + uint64_t(r.numel()), specials);
      const std::string whole = fingerprint(compare_tensors(r, y));
      for (int64_t chunk : {int64_t(1), int64_t(2), int64_t(3), int64_t(5), int64_t(7), int64_t(33), int64_t(4096)})
        EXPECT_EQ(fingerprint(in_chunks(r, y, chunk)), whole) << shape_str(shape) << " chunk " << chunk;
    }
}

// The sums against a second implementation: plain loops in long double over the finite pairs.
TEST(Streaming, SumsAgreeWithNaiveLongDoubleLoops) {
  for (const auto& shape : kShapes) {
    Tensor<double> r(shape), y(shape);
    fill_pair(r, y, 99 + uint64_t(r.numel()), true);
    const Metrics m = in_chunks(r, y, 7);
    const int64_t N = r.numel(), rows = shape.empty() ? 1 : shape[0], per_row = N / rows;
    long double ee = 0, rr = 0, yy = 0, ry = 0, sa = 0;
    std::vector<long double> tee(size_t(rows), 0), trr(size_t(rows), 0);
    int64_t n = 0, outside = 0, nan_r = 0, nan_t = 0, inf_ok = 0, inf_bad = 0, max_i = -1;
    double max_abs = 0;
    for (int64_t i = 0; i < N; ++i) {
      const double a = r.data[i], b = y.data[i];
      if (std::isnan(a) || std::isnan(b)) {
        nan_r += std::isnan(a), nan_t += std::isnan(b);
        continue;
      }
      if (std::isinf(a) || std::isinf(b)) {
        (a == b ? inf_ok : inf_bad) += 1;
        continue;
      }
      const long double e = (long double)b - a;
      ++n;
      ee += e * e, rr += (long double)a * a, yy += (long double)b * b, ry += (long double)a * b, sa += std::fabs(b - a);
      tee[size_t(i / per_row)] += e * e, trr[size_t(i / per_row)] += (long double)a * a;
      outside += std::fabs(b - a) > kDefaultAtol + kDefaultRtol * std::fabs(a);
      if (max_i < 0 || std::fabs(b - a) > max_abs) max_abs = std::fabs(b - a), max_i = i;
    }
    const std::string where = shape_str(shape);
    EXPECT_EQ(m.n, n) << where;
    EXPECT_EQ(m.nan_ref, nan_r) << where;
    EXPECT_EQ(m.nan_target, nan_t) << where;
    EXPECT_EQ(m.inf_matched, inf_ok) << where;
    EXPECT_EQ(m.inf_mismatched, inf_bad) << where;
    EXPECT_EQ(m.max_abs, max_abs) << where;
    if (max_i >= 0) {
      EXPECT_EQ(m.max_abs_at, unravel(max_i, shape)) << where;
    }
    EXPECT_DOUBLE_EQ(m.frac_outside, n ? double(outside) / double(n) : 0.0) << where;
    auto rel = [](double got, long double want) { return want == 0 ? std::fabs(got) : std::fabs(got - double(want)) / std::fabs(double(want)); };
    if (rr > 0) {
      EXPECT_LT(rel(m.rel_l2, std::sqrt(ee / rr)), 1e-13) << where;
      EXPECT_LT(rel(m.norm_ratio, std::sqrt(yy / rr)), 1e-13) << where;
      if (yy > 0) {
        EXPECT_LT(rel(m.cosine, ry / std::sqrt(rr * yy)), 1e-13) << where;
      }
    }
    if (n) {
      EXPECT_LT(rel(m.mean_abs, sa / n), 1e-13) << where;
    }
    for (int64_t t = 0; t < rows; ++t) {
      if (trr[size_t(t)] > 0) {
        EXPECT_LT(rel(m.token_rel_l2[size_t(t)], std::sqrt(tee[size_t(t)] / trr[size_t(t)])), 1e-13) << where;
      }
    }
  }
}

// p ∈ [exact, exact·(1 + 1/64)], exact = the ⌈q·n⌉-th smallest |e| (by sorting).
TEST(Streaming, PercentilesWithinTheirStatedResolutionOfTheExactOrderStatistics) {
  for (int64_t n : {1, 7, 33, 1000, 33333}) {
    Tensor<double> r({n}), y({n});
    Rng rng(5 + uint64_t(n));
    for (int64_t i = 0; i < n; ++i) {
      r.data[i] = rng.normal();
      const double u = rng.uniform();
      y.data[i] = u < 0.05 ? r.data[i] : r.data[i] + std::pow(10.0, 15 * rng.uniform() - 12) * (u < 0.5 ? -1 : 1);
    }
    const Metrics m = in_chunks(r, y, 33);
    std::vector<double> a(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) a[size_t(i)] = std::fabs(y.data[i] - r.data[i]);
    std::sort(a.begin(), a.end());
    for (auto [q, p] : {std::pair{0.5, m.p50}, std::pair{0.99, m.p99}, std::pair{0.999, m.p999}}) {
      const int64_t k = std::max<int64_t>(1, int64_t(std::ceil(q * double(n) - 1e-9)));
      const double exact = a[size_t(k - 1)];
      EXPECT_GE(p, exact) << "n " << n << " q " << q;
      EXPECT_LE(p, exact * (1 + kPercentileResolution)) << "n " << n << " q " << q;
    }
  }
}

// read_range decodes any slice exactly as Dump::read decodes the whole tensor, in every float
// dtype the format stores (subnormals, ±0, Inf and NaN included).
TEST(Streaming, DumpRangesDecodeBitForBitAsWholeReads) {
  const std::string dir = temp_dir("streaming-decode");
  Tensor<double> x({7, 33});
  Rng rng(3);
  for (double& v : x.data) v = rng.normal() * std::pow(2.0, 40 * rng.uniform() - 20);
  x.data[1] = 1e-310, x.data[2] = -0.0, x.data[3] = INFINITY, x.data[4] = -INFINITY, x.data[5] = NAN, x.data[6] = 6e-8;
  for (DType d : {DType::F64, DType::F32, DType::F16, DType::BF16}) {
    const std::string sub = dir + "/" + dtype_name(d);
    DumpWriter w(d);
    w.put("layers.0.out", x);
    w.write(sub, make_manifest(DumpProducer{}, ModelConfig{}, "none", {1, 2, 3, 4, 5, 6, 7}));
    const Dump dump(sub);
    const Tensor<double> whole = dump.read("layers.0.out");
    for (int64_t begin : {0, 1, 5, 32, 200})
      for (int64_t count : {0, 1, 7, 31}) {
        if (begin + count > x.numel()) continue;
        std::vector<double> part(static_cast<size_t>(count));
        dump.read_range("layers.0.out", begin, count, part.data());  // count 0: part.data() may be null
        if (count > 0) {
          EXPECT_EQ(std::memcmp(part.data(), whole.data.data() + begin, size_t(count) * 8), 0)
              << dtype_name(d) << " [" << begin << ", " << begin + count << ")";
        }
      }
    std::vector<double> buf(8);
    try {
      dump.read_range("layers.0.out", 230, 2, buf.data());
      ADD_FAILURE() << "a range past the end was read";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("layers.0.out"), std::string::npos) << e.what();
    }
  }
}

// Streaming two dumps (mixed stored dtypes, any chunk size) gives the Metrics of the whole-tensor
// comparison of the same decoded values; reference_rows equals copying those rows beforehand.
TEST(Streaming, DumpStreamsEqualWholeTensorComparison) {
  const std::string dir = temp_dir("streaming-dumps");
  const std::vector<int64_t> shape = {33, 7, 5};
  Tensor<double> r(shape), y(shape);
  fill_pair(r, y, 41, false);
  DumpWriter wb(DType::F64), wt(DType::BF16);
  wb.put("layers.0.mlp.out", r);
  wt.put("layers.0.mlp.out", y);
  wb.write(dir + "/b", make_manifest(DumpProducer{}, ModelConfig{}, "none", {1}));
  wt.write(dir + "/t", make_manifest(DumpProducer{}, ModelConfig{}, "none", {1}));
  const Dump b(dir + "/b"), t(dir + "/t");
  const Tensor<double> rb = b.read("layers.0.mlp.out"), yt = t.read("layers.0.mlp.out");
  const std::string whole = fingerprint(compare_tensors(rb, yt));
  const std::set<int64_t> rows = {0, 2, 32};
  Tensor<double> y_sub = yt;
  for (int64_t row : rows) std::copy_n(rb.data.begin() + row * 35, 35, y_sub.data.begin() + row * 35);
  const std::string substituted = fingerprint(compare_tensors(rb, y_sub));
  for (int64_t chunk : {int64_t(1), int64_t(6), int64_t(35), int64_t(36), kStreamChunk}) {
    StreamOptions o;
    o.chunk = chunk;
    EXPECT_EQ(fingerprint(stream_compare(TensorSource(b, "layers.0.mlp.out"), TensorSource(t, "layers.0.mlp.out"), shape, o)),
              whole) << "chunk " << chunk;
    EXPECT_EQ(fingerprint(stream_compare(TensorSource(b, "layers.0.mlp.out"), TensorSource(yt), shape, o)), whole)
        << "memory target, chunk " << chunk;
    o.reference_rows = &rows;
    EXPECT_EQ(fingerprint(stream_compare(TensorSource(b, "layers.0.mlp.out"), TensorSource(t, "layers.0.mlp.out"), shape, o)),
              substituted) << "reference rows, chunk " << chunk;
  }
}

namespace {

struct Measured {
  int status = -1;
  double max_rss_mb = 0;
};

// fork + exec of argv with output to `log`; the child's peak RSS from wait4. The parent is small
// when it forks (the dumps were written by another child), so the child starts small too.
Measured run_measured(const std::vector<std::string>& argv, const std::string& log) {
  std::vector<char*> a;
  for (const auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
  a.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) ::dup2(fd, 1), ::dup2(fd, 2);
    ::execv(a[0], a.data());
    _exit(127);
  }
  int st = 0;
  struct rusage ru {};
  ::wait4(pid, &st, 0, &ru);
  Measured m;
  m.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  m.max_rss_mb = double(ru.ru_maxrss) / 1024.0;
  return m;
}

// Writes baseline and target dumps of `layers` × 5 tensors [T, W] F32 plus logits [T, V] in a
// child process (DumpWriter holds a whole dump in memory). Returns the pair's size in bytes.
double write_pair(const std::string& dir, int64_t layers, int64_t T, int64_t W, int64_t V) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    try {
      for (int side = 0; side < 2; ++side) {
        DumpWriter w(DType::F32);
        ModelConfig c;
        c.num_hidden_layers = layers;
        Rng rng(7);
        Rng noise(8);
        auto put = [&](const std::string& name, int64_t cols, double scale) {
          Tensor<float> x({T, cols});
          for (float& v : x.data) {
            const double base = scale * (2 * rng.uniform() - 1);
            v = float(side == 0 ? base : base * (1 + 0x1p-24 * (2 * noise.uniform() - 1)));
          }
          w.put(name, x);
        };
        put("embed", W, 1);
        for (int64_t L = 0; L < layers; ++L)
          for (const char* s : {"attn.out", "resid_mid", "mlp.out", "out", "input_norm"}) put(names::layer(L, s), W, 1);
        put("logits", V, 8);
        w.write(dir + (side == 0 ? "/baseline" : "/target"), make_manifest(DumpProducer{}, c, "synthetic", std::vector<int64_t>(size_t(T), 1)));
      }
    } catch (...) {
      _exit(1);
    }
    _exit(0);
  }
  int st = 0;
  ::waitpid(pid, &st, 0);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) return 0;
  return double(std::filesystem::file_size(dir + "/baseline/activations.safetensors") +
                std::filesystem::file_size(dir + "/target/activations.safetensors"));
}

// The binary's peak RSS on the pair minus its own floor (the same binary failing at once on two
// missing dumps: libraries, CUDA runtime), against a bound of a fraction of the pair's size.
void expect_rss_far_below(const std::string& dir, double pair_bytes, int64_t tensors, double fraction) {
  ASSERT_GT(pair_bytes, 0) << "writing the dumps failed";
  const std::string hy = HYORACLE_BINARY;
  const Measured floor = run_measured({hy, "compare", dir + "/none-a", dir + "/none-b", "-q"}, dir + "/floor.log");
  EXPECT_EQ(floor.status, 2);
  const Measured m = run_measured({hy, "compare", dir + "/baseline", dir + "/target", "--json", dir + "/r.json"}, dir + "/compare.log");
  EXPECT_EQ(m.status, 0) << "see " << dir << "/compare.log";
  const double added_mb = m.max_rss_mb - floor.max_rss_mb, bound_mb = fraction * pair_bytes / 1048576.0;
  std::printf("  dump pair %.0f MB: peak RSS %.1f MB, floor %.1f MB, added %.1f MB (bound %.1f MB)\n", pair_bytes / 1048576.0,
              m.max_rss_mb, floor.max_rss_mb, added_mb, bound_mb);
  EXPECT_LT(added_mb, bound_mb);
  const nlohmann::json r = nlohmann::json::parse(std::ifstream(dir + "/r.json"));
  EXPECT_EQ(r["tensors"].size(), size_t(tensors));
  EXPECT_GT(r["stats"]["bytes_read"].get<double>(), 0.99 * pair_bytes);  // every tensor byte, both sides
}

}  // namespace

// The AVX2 decoding and sums (used when the CPU has AVX2) give the same report, bit for bit, as
// the scalar code (HYORACLE_NO_SIMD=1), on dumps with NaN-free specials, odd shapes and bf16/f32.
TEST(Streaming, SimdAndScalarPathsGiveTheSameReport) {
  if (!__builtin_cpu_supports("avx2")) GTEST_SKIP() << "this CPU has no AVX2: both runs would take the scalar path";
  const std::string dir = temp_dir("streaming-simd");
  for (DType d : {DType::BF16, DType::F32, DType::F64}) {
    DumpWriter wb(DType::F64), wt(d);
    int64_t i = 0;
    for (const auto& shape : std::vector<std::vector<int64_t>>{{7, 33}, {33, 5, 3}, {3, 4099}, {1, 1}}) {
      Tensor<double> r(shape), y(shape);
      fill_pair(r, y, 300 + uint64_t(i), false);
      if (i == 1) r.data[9] = y.data[9] = INFINITY, y.data[40] = -INFINITY;  // matched and mismatched Inf
      wb.put(names::layer(i, "out"), r);
      wt.put(names::layer(i, "out"), y);
      ++i;
    }
    ModelConfig c;
    c.num_hidden_layers = i;
    const std::string b = dir + "/b-" + dtype_name(d), t = dir + "/t-" + dtype_name(d);
    wb.write(b, make_manifest(DumpProducer{}, c, "none", {1}));
    wt.write(t, make_manifest(DumpProducer{}, c, "none", {1}));
    std::string reports[2];
    for (int scalar = 0; scalar < 2; ++scalar) {
      const std::string json = dir + "/r" + std::to_string(scalar) + ".json";
      const std::string cmd = std::string(scalar ? "HYORACLE_NO_SIMD=1 " : "") + HYORACLE_BINARY + " compare " + b + " " + t +
                              " -q --require . --json " + json + " > /dev/null 2>&1";
      EXPECT_NE(std::system(cmd.c_str()), -1);
      nlohmann::json r = nlohmann::json::parse(std::ifstream(json));
      r.erase("stats");
      reports[scalar] = r.dump();
    }
    EXPECT_GT(reports[0].size(), 100u);
    EXPECT_EQ(reports[0], reports[1]) << dtype_name(d);
  }
}

// ~340 MB of dumps (2 × 41 tensors of 4 MB + logits): the compare adds less than 1/8 of that.
TEST(Streaming, BinaryPeakRssStaysFarBelowTheDumpPair) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "peak RSS means nothing under AddressSanitizer (shadow memory, freed-memory quarantine)";
#endif
  const std::string dir = temp_dir("streaming-rss");
  const double bytes = write_pair(dir, 8, 64, 16384, 32768);
  expect_rss_far_below(dir, bytes, 8 * 5 + 2, 1.0 / 8);
  std::filesystem::remove_all(dir);
}

// Long (HYORACLE_LONG=1; `ctest -L long` sets it): ~4.1 GB of dumps (2 × 252 tensors), the same bound.
TEST(Streaming, LongMultiGigabyteDumpPairStaysFarBelowItsSize) {
  if (!std::getenv("HYORACLE_LONG")) GTEST_SKIP() << "long test: set HYORACLE_LONG=1 (ctest -L long does)";
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "peak RSS means nothing under AddressSanitizer (shadow memory, freed-memory quarantine)";
#endif
  const std::string dir = temp_dir("streaming-rss-long");
  const double bytes = write_pair(dir, 50, 128, 16384, 120832);
  expect_rss_far_below(dir, bytes, 50 * 5 + 2, 1.0 / 8);
  std::filesystem::remove_all(dir);
}
