#include "io/output.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "io/crc32.h"
#include "util/error.h"

namespace hyoracle {

namespace fs = std::filesystem;

namespace {

constexpr size_t kBufferBytes = 1 << 20;

// The directory holding `path` ("." for a bare name) and its last component, with any trailing
// '/' ignored.
std::pair<std::string, std::string> split_path(const std::string& path) {
  fs::path p = fs::path(path).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  const std::string parent = p.parent_path().string();
  return {parent.empty() ? "." : parent, p.filename().string()};
}

std::string errno_text(int e) { return std::strerror(e); }

// The permissions an ordinary create would give (0666 / 0777 less the umask): mkstemp and mkdtemp
// make 0600 / 0700, which would hide dumps from other users.
mode_t created_mode(mode_t full) {
  static const mode_t mask = [] {
    const mode_t m = ::umask(0);
    ::umask(m);
    return m;
  }();
  return full & ~mask;
}

}  // namespace

OutputFile::OutputFile(const std::string& path) : path_(path) {
  const auto [parent, name] = split_path(path);
  if (name.empty() || name == "." || name == "..") fail(path + ": not a file name to write");
  // mkstemp opens with O_CREAT | O_EXCL: a fresh file, never an existing one or a link.
  temp_ = parent + "/." + name + ".tmp-XXXXXX";
  fd_ = ::mkostemp(temp_.data(), O_CLOEXEC);
  if (fd_ < 0) fail(path + ": cannot create: " + errno_text(errno));
  if (::fchmod(fd_, created_mode(0666)) != 0) fail(path + ": cannot set permissions: " + errno_text(errno));
  buffer_.reserve(kBufferBytes);
}

OutputFile::~OutputFile() {
  if (committed_) return;
  if (fd_ >= 0) ::close(fd_);
  ::unlink(temp_.c_str());
}

void OutputFile::write_all(const char* p, size_t left) {
  while (left > 0) {
    const ssize_t got = ::write(fd_, p, left);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) fail(path_ + ": write failed: " + errno_text(got < 0 ? errno : ENOSPC));
    p += got;
    left -= size_t(got);
  }
}

void OutputFile::flush() {
  write_all(buffer_.data(), buffer_.size());
  buffer_.clear();
}

void OutputFile::write(const void* data, size_t n) {
  check_.crc32 = crc32_update(check_.crc32, data, n);
  check_.bytes += n;
  if (buffer_.size() + n > kBufferBytes) flush();
  if (n >= kBufferBytes) {  // large blocks go straight to the file
    write_all(static_cast<const char*>(data), n);
    return;
  }
  buffer_.append(static_cast<const char*>(data), n);
}

FileCheck OutputFile::commit() {
  flush();
  // A full disk or a quota can surface only at sync or close; both are checked.
  if (::fsync(fd_) != 0) fail(path_ + ": write failed at sync: " + errno_text(errno));
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) fail(path_ + ": write failed at close: " + errno_text(errno));
  if (::rename(temp_.c_str(), path_.c_str()) != 0) fail(path_ + ": cannot move the written file into place: " + errno_text(errno));
  committed_ = true;
  return check_;
}

FileCheck write_output_file(const std::string& path, std::string_view bytes) {
  OutputFile f(path);
  f.write(bytes);
  return f.commit();
}

OutputDir::OutputDir(const std::string& dir) : dir_(dir) {
  struct stat st {};
  if (::lstat(dir.c_str(), &st) == 0) {
    if (S_ISLNK(st.st_mode)) fail(dir + ": is a symbolic link; refusing to write a dump through it");
    if (!S_ISDIR(st.st_mode)) fail(dir + ": exists and is not a directory");
    std::error_code ec;
    const bool empty = fs::is_empty(dir, ec);
    struct stat m {};
    const bool dump = ::lstat((dir + "/manifest.json").c_str(), &m) == 0 && S_ISREG(m.st_mode);
    if (!empty && !dump)
      fail(dir + ": exists and is neither empty nor a hyoracle dump (no manifest.json); refusing to replace it");
  }
  const auto [parent, name] = split_path(dir);
  if (name.empty() || name == "." || name == "..") fail(dir + ": not a directory name to write a dump to");
  std::error_code ec;
  fs::create_directories(parent, ec);
  if (ec) fail(dir + ": cannot create its parent directory: " + ec.message());
  temp_ = parent + "/." + name + ".tmp-XXXXXX";
  if (!::mkdtemp(temp_.data())) fail(dir + ": cannot create a temporary directory next to it: " + errno_text(errno));
  if (::chmod(temp_.c_str(), created_mode(0777)) != 0) fail(dir + ": cannot set permissions: " + errno_text(errno));
}

OutputDir::~OutputDir() {
  if (committed_) return;
  std::error_code ec;
  fs::remove_all(temp_, ec);  // removes links themselves, never what they point to
}

void OutputDir::commit() {
  // A missing or empty destination: a plain rename puts the new directory there.
  if (::rename(temp_.c_str(), dir_.c_str()) == 0) {
    committed_ = true;
    return;
  }
  if (errno != ENOTEMPTY && errno != EEXIST) fail(dir_ + ": cannot move the written dump into place: " + errno_text(errno));
  struct stat st {};
  if (::lstat(dir_.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    fail(dir_ + ": was replaced by something other than a directory while the dump was written");
  // An existing dump: exchange the two directories in one step, then remove the old one (now at
  // the temporary name). A reader sees the old dump or the new one, never a mix of files.
  if (::renameat2(AT_FDCWD, temp_.c_str(), AT_FDCWD, dir_.c_str(), RENAME_EXCHANGE) != 0) {
    if (errno != EINVAL && errno != ENOSYS) fail(dir_ + ": cannot replace the old dump: " + errno_text(errno));
    // A file system without exchange: move the old dump aside first (a short window without one).
    std::string old = temp_ + ".old";
    if (::rename(dir_.c_str(), old.c_str()) != 0) fail(dir_ + ": cannot move the old dump aside: " + errno_text(errno));
    if (::rename(temp_.c_str(), dir_.c_str()) != 0) fail(dir_ + ": cannot move the written dump into place: " + errno_text(errno));
    temp_ = old;
  }
  committed_ = true;
  std::error_code ec;
  fs::remove_all(temp_, ec);  // the old dump; a leftover is harmless
}

namespace {

// `inner` equals `outer` or lies below it (both absolute and normal).
bool within(const fs::path& inner, const fs::path& outer) {
  auto i = inner.begin(), o = outer.begin();
  for (; o != outer.end(); ++i, ++o) {
    if (o->empty()) continue;  // a trailing separator
    if (i == inner.end() || *i != *o) return false;
  }
  return true;
}

}  // namespace

void check_output_path(const std::string& output, const std::string& option, const std::vector<std::string>& inputs) {
  if (output.empty()) return;
  struct stat st {};
  if (::lstat(output.c_str(), &st) == 0 && S_ISLNK(st.st_mode))
    fail(option + " " + output + ": is a symbolic link; refusing to write through it");
  std::error_code ec;
  // weakly_canonical resolves the links of the existing part of the path, so another spelling of
  // an input (a/../b, a link to it) is still recognised.
  const fs::path out = fs::weakly_canonical(fs::absolute(output, ec), ec);
  if (ec) fail(option + " " + output + ": cannot resolve the path: " + ec.message());
  for (const std::string& in : inputs) {
    if (in.empty() || !fs::exists(in, ec)) continue;
    const fs::path p = fs::canonical(in, ec);
    if (ec) continue;
    if (within(out, p) || within(p, out))
      fail(option + " " + output + ": is, contains or lies inside the input " + in + "; refusing to overwrite an input");
  }
}

}  // namespace hyoracle
