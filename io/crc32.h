// crc32.h: CRC-32 (IEEE 802.3, the polynomial of zlib's crc32 and Python's zlib.crc32) of a byte
// range. Dump manifests record it per file so that readers detect torn or mixed dumps; it runs at
// about a byte per cycle (slicing by 8), cheap next to reading a multi-GB dump once.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace hyoracle {

// Continues `crc` (0 to start) over [data, data + n).
uint32_t crc32_update(uint32_t crc, const void* data, size_t n);
// Eight lowercase hex digits, as manifests store it.
std::string crc32_hex(uint32_t crc);

}  // namespace hyoracle
