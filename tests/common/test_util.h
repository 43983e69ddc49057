// test_util.h: small helpers shared by the test suites (temp dirs, relative errors, running the
// hyoracle binary). Nothing here computes an expected value.
#pragma once
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

namespace hyoracle::test {

// A fresh directory under the system temp dir, removed when the object dies.
class TempDir {
 public:
  explicit TempDir(const std::string& tag = "hyoracle") {
    std::string tmpl = (std::filesystem::temp_directory_path() / (tag + "-XXXXXX")).string();
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    path_ = ::mkdtemp(buf.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// ‖a − b‖ / ‖b‖ in long double (b is the reference); 0 when both are zero.
template <class A, class B>
double rel_l2(const std::vector<A>& a, const std::vector<B>& b) {
  long double num = 0, den = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    const long double d = (long double)a[i] - (long double)b[i];
    num += d * d;
    den += (long double)b[i] * (long double)b[i];
  }
  if (den == 0) return num == 0 ? 0.0 : INFINITY;
  return double(std::sqrt(num / den));
}

struct CommandResult {
  int status = -1;
  std::string out;  // stdout and stderr together
};

// Runs a shell command, capturing stdout+stderr; status is the exit code (or 128+signal).
inline CommandResult run_command(const std::string& cmd) {
  CommandResult r;
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  const int st = ::pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return r;
}

// Seeded random values in [-1, 1).
template <class S>
std::vector<S> random_values(size_t n, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  std::vector<S> v(n);
  for (auto& x : v) x = S(u(g));
  return v;
}

}  // namespace hyoracle::test
