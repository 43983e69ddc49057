// sha256.h: SHA-256 (FIPS 180-4) of a byte string, as lowercase hex. Used for the dump
// manifest's config_sha256 and for fixture determinism checks.
#pragma once
#include <string>

namespace hyoracle {
std::string sha256_hex(const std::string& bytes);
std::string sha256_file(const std::string& path);
}  // namespace hyoracle
