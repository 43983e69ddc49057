// sha256.h: SHA-256 (FIPS 180-4), as lowercase hex. Used for the dump manifest's config_sha256,
// the checkpoint weights fingerprint (fingerprint.h) and fixture determinism checks.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace hyoracle {

// Incremental SHA-256: update() any number of times, then hex() once.
class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t n);
  void update(const std::string& s) { update(s.data(), s.size()); }
  // Pads, finishes and returns the digest; the object must not be updated afterwards.
  std::string hex();

 private:
  void block(const uint8_t* p);
  uint32_t h_[8];
  uint8_t buf_[64];
  size_t used_ = 0;
  uint64_t total_ = 0;
};

std::string sha256_hex(const std::string& bytes);
std::string sha256_file(const std::string& path);

}  // namespace hyoracle
