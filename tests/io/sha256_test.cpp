// io/sha256: the FIPS 180-2 test vectors, and incremental updates equal to the one-shot digest.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "io/sha256.h"

namespace hyoracle {
namespace {

TEST(Sha256, KnownVectors) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex(std::string(1000000, 'a')), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

// The incremental hasher gives the one-shot digest whatever the split points (odd chunk sizes
// straddle the 64-byte blocks and the 56-byte padding boundary).
TEST(Sha256, IncrementalUpdatesAgreeWithOneShot) {
  std::string msg;
  for (int i = 0; i < 1000; ++i) msg.push_back(char((i * 131 + 7) & 0xff));
  for (size_t len : {size_t(0), size_t(1), size_t(55), size_t(56), size_t(63), size_t(64), size_t(65), size_t(1000)})
    for (size_t chunk : {size_t(1), size_t(7), size_t(33), size_t(64), size_t(100)}) {
      Sha256 h;
      for (size_t off = 0; off < len; off += chunk) h.update(msg.data() + off, std::min(chunk, len - off));
      EXPECT_EQ(h.hex(), sha256_hex(msg.substr(0, len))) << "len " << len << " chunk " << chunk;
    }
  Sha256 abc;
  abc.update("a");
  abc.update("bc");
  EXPECT_EQ(abc.hex(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

}  // namespace
}  // namespace hyoracle
