// output.h: writing hyoracle's outputs (dumps, checkpoints, reports) so that a failed or
// concurrent write never leaves a partial or mixed output, and nothing outside the output is
// touched.
//
//   OutputFile   a file is written under a fresh temporary name next to its destination
//                (O_CREAT | O_EXCL | O_NOFOLLOW: no existing file or planted link is opened),
//                every write, the sync and the close are checked, and it is renamed into place
//                only when complete (rename replaces a link at the destination, never follows it).
//   OutputDir    a dump directory is written as a fresh temporary directory next to the
//                destination and then exchanged with it in one step (renameat2 RENAME_EXCHANGE);
//                the old contents are removed afterwards. Two runs writing the same directory
//                leave one complete dump, never a mix.
//   check_output_path   an output must not be a link, nor be, contain or lie inside an input.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace hyoracle {

// What a reader verifies of a written file: its size and CRC-32 (crc32.h).
struct FileCheck {
  uint64_t bytes = 0;
  uint32_t crc32 = 0;
};

class OutputFile {
 public:
  // Creates the temporary file next to `path`; Error naming `path` if it cannot.
  explicit OutputFile(const std::string& path);
  // Without commit(): closes and removes the temporary file (the destination is untouched).
  ~OutputFile();
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;

  // Appends bytes (buffered); Error naming the file on any failure (disk full, quota, ...).
  void write(const void* data, size_t n);
  void write(std::string_view s) { write(s.data(), s.size()); }
  // Flushes, syncs, closes (each checked) and renames the file onto the destination.
  FileCheck commit();

 private:
  void write_all(const char* p, size_t n);
  void flush();
  std::string path_, temp_;
  int fd_ = -1;
  std::string buffer_;
  FileCheck check_;
  bool committed_ = false;
};

// Writes `bytes` to `path` through an OutputFile.
FileCheck write_output_file(const std::string& path, std::string_view bytes);

class OutputDir {
 public:
  // Refuses `dir` (one line naming it) if it is a symbolic link, or exists and is not a directory
  // that is empty or holds a manifest.json (a dump to be replaced); creates its parents and the
  // temporary directory.
  explicit OutputDir(const std::string& dir);
  // Without commit(): removes the temporary directory and what was written into it.
  ~OutputDir();
  OutputDir(const OutputDir&) = delete;
  OutputDir& operator=(const OutputDir&) = delete;

  // Where to write the directory's files until commit().
  const std::string& path() const { return temp_; }
  // Puts the temporary directory in place of `dir` in one step and removes the old contents.
  void commit();

 private:
  std::string dir_, temp_;
  bool committed_ = false;
};

// Refuses, with one line naming `option` and the paths, an output that is a symbolic link, or is
// one of `inputs`, lies inside one, or contains one (writing it would replace the input). Inputs
// that do not exist, and empty strings, are skipped.
void check_output_path(const std::string& output, const std::string& option, const std::vector<std::string>& inputs);

}  // namespace hyoracle
